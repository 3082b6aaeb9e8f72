"""The numbers in a report's header and the small formatting helpers both formats share."""

from __future__ import annotations

import base64
import datetime as _dt
import math
from dataclasses import dataclass

import sympy as sp

from eqforge.evaluator.analysis import Entry, RunAnalysis
from eqforge.evaluator.report.data import RunData
from eqforge.evaluator.rundir import RunStats

# -- formatting helpers ----------------------------------------------------------------------


def _g(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _lhs(output: str) -> str:
    return sp.latex(sp.Symbol(output))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _mathml(entry: Entry | None) -> str:
    cf = entry.closed_form if entry is not None else None
    if cf is None or not cf.ok:
        return ""
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML">{cf.mathml()}</math>'


@dataclass
class Facts:
    """Numbers about the run shown in the header of both formats."""

    rows: list[tuple[str, str]]


def _facts(data: RunData, analysis: RunAnalysis) -> Facts:
    llm = data.llm_samples
    counted = RunStats.from_records(data.records)
    valid, dup = counted.valid, counted.duplicates
    tokens_p, tokens_c, cost = counted.prompt_tokens, counted.completion_tokens, counted.cost
    elapsed = max((s.get("elapsed") or 0.0 for s in data.samples), default=0.0)
    if data.summary and data.summary.get("elapsed_seconds") is not None:
        elapsed = max(elapsed, float(data.summary["elapsed_seconds"]))
    run = data.config.get("run", {})
    configured = ((data.config.get("config") or {}).get("llm") or {}).get("backends") or []
    models = sorted({str(s.get("model")) for s in llm if s.get("model")}) or [b.get("spec") for b in configured]
    started = min((float(s["time"]) for s in data.samples if s.get("time")), default=None)
    stats = analysis.stats()
    rows = [
        ("problem", str(run.get("problem", "?"))),
        ("data", str(run.get("data") or "built-in")),
        ("strategy", str((data.config.get("config", {}).get("sampler") or {}).get("strategy")
                         or "llmsr")),
        ("model", ", ".join(map(str, models)) or "n/a"),
        ("started", _dt.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S")
         if started else "n/a"),
        ("samples", f"{len(llm)}" + (f" of {data.run_config.run.samples}"
                                     if data.run_config is not None else "")),
        ("valid", f"{valid} ({_pct(valid, len(llm))}), of which {dup} duplicates"),
        ("distinct valid programs", f"{stats['programs']}; {stats['converted']} with a closed "
         "form" + (f", {stats['skipped']} not analysed (time budget)" if stats["skipped"]
                   else "")),
        ("stopped", str((data.summary or {}).get("stopped") or "still running or killed")),
        ("wall time", _duration(elapsed)),
        ("tokens", f"{tokens_p + tokens_c:,} ({tokens_p:,} prompt, {tokens_c:,} completion)"),
        ("cost", f"${cost:.4f}"),
    ]
    if (data.problem is not None and not data.problem.spec.pointwise) or \
            (data.config.get("problem") or {}).get("pointwise") is False:
        rows.append(("pointwise contract", "OFF for this problem (pointwise = false): programs may use whole "
                     "columns, so scores are not laws of one row"))
    return Facts(rows)
