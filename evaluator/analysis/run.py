"""What a run found, as science: closed forms, complexity, the Pareto front, recovery.

``analyse_run`` converts every distinct valid program of a run to a closed form (best
scores first, in a helper process with deadlines, within a total time budget), builds the
accuracy–complexity Pareto front, simplifies the equations that will be shown and checks
them against the problem's ground truth. ``enrich_summary`` adds the result to a run's
summary; the report builds on the same analysis.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from eqforge.evaluator.analysis.closed_form import ClosedForm
from eqforge.evaluator.analysis.pareto import pareto_front
from eqforge.evaluator.analysis.recovery import Recovery
from eqforge.evaluator.analysis.worker import SymbolicWorker

log = logging.getLogger(__name__)

CONVERT_TIMEOUT = 2.0
SIMPLIFY_TIMEOUT = 3.0
RECOVERY_TIMEOUT = 5.0


@dataclass
class Entry:
    """One distinct valid program of a run and its closed form."""

    id: str
    index: int
    program: str
    params: list[float] | None
    score: float
    nmse: dict[str, float | None]
    metrics: dict[str, dict[str, float | None]]
    closed_form: ClosedForm | None = None
    recovery: Recovery | None = None

    @property
    def complexity(self) -> int | None:
        cf = self.closed_form
        return cf.complexity if cf is not None and cf.ok else None

    @property
    def loss(self) -> float | None:
        """Train NMSE (monotone in the score, but comparable across problems)."""
        value = self.nmse.get("train")
        return float(value) if value is not None else -self.score

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "score": self.score, "complexity": self.complexity,
            "nmse": self.nmse, "metrics": self.metrics,
        }
        if self.closed_form is not None:
            cf = self.closed_form.to_json()
            out["closed_form"] = cf
            if cf.get("convertible"):
                out["equation"] = cf["equation"]
        if self.recovery is not None:
            out["recovery"] = self.recovery.to_json()
        return out


@dataclass
class RunAnalysis:
    entries: list[Entry] = field(default_factory=list)  # by score, best first
    pareto: list[Entry] = field(default_factory=list)
    not_convertible: Counter = field(default_factory=Counter)
    skipped: int = 0  # not converted: out of time budget
    ground_truth: str | None = None
    seconds: float = 0.0

    @property
    def best(self) -> Entry | None:
        return self.entries[0] if self.entries else None

    def top(self, k: int = 10) -> list[Entry]:
        return self.entries[:k]

    def stats(self) -> dict[str, Any]:
        converted = sum(1 for e in self.entries if e.closed_form is not None
                        and e.closed_form.ok)
        return {"programs": len(self.entries), "converted": converted,
                "not_convertible": dict(self.not_convertible.most_common()),
                "skipped": self.skipped, "seconds": round(self.seconds, 3)}


def _field(rec: Any, name: str, default: Any = None) -> Any:
    return rec.get(name, default) if isinstance(rec, dict) else getattr(rec, name, default)


def distinct_valid(records: list[Any]) -> list[Entry]:
    """Valid programs, each distinct program once, best score first."""
    seen: set[str] = set()
    out = []
    for r in records:
        if not _field(r, "ok") or _field(r, "duplicate_of") or not _field(r, "program"):
            continue
        score = _field(r, "score")
        if score is None:
            continue
        key = _field(r, "program_key") or _field(r, "program")
        if key in seen:
            continue
        seen.add(key)
        out.append(Entry(id=_field(r, "id"), index=_field(r, "index", 0),
                         program=_field(r, "program"), params=_field(r, "params"),
                         score=float(score), nmse=dict(_field(r, "nmse") or {}),
                         metrics=dict(_field(r, "metrics") or {})))
    out.sort(key=lambda e: (-e.score, e.index))
    return out


def analyse_run(records: list[Any], input_names: list[str], *, ground_truth: str | None = None,
                budget: float = 30.0, show: int = 10, worker: SymbolicWorker | None = None,
                ) -> RunAnalysis:
    """Closed forms, Pareto front and recovery for a run's records (see module doc).

    ``show``: how many of the best programs get simplified (besides the Pareto front).
    Everything stops at ``budget`` seconds; what was not reached is counted as skipped.
    """
    start = time.monotonic()
    deadline = start + budget
    result = RunAnalysis(entries=distinct_valid(records), ground_truth=ground_truth)
    own = worker is None
    worker = worker or SymbolicWorker()
    try:
        for e in result.entries:
            left = deadline - time.monotonic()
            if left <= 0:
                result.skipped += 1
                continue
            cf = worker.call("convert", e.program, input_names, e.params,
                             timeout=min(CONVERT_TIMEOUT, left))
            if cf is None:
                cf = ClosedForm(ok=False, reason="timeout",
                                detail=f"conversion took over {CONVERT_TIMEOUT:g} s")
            e.closed_form = cf
            if not cf.ok:
                result.not_convertible[cf.reason or "?"] += 1
        result.pareto = pareto_front(result.entries, lambda e: e.complexity, lambda e: e.loss)
        shown = list({e.id: e for e in [*result.entries[:show], *result.pareto]}.values())
        for e in shown:
            cf = e.closed_form
            left = deadline - time.monotonic()
            if cf is None or not cf.ok or left <= 0:
                continue
            better = worker.call("simplify", cf, e.params, timeout=min(SIMPLIFY_TIMEOUT, left))
            if better is not None:
                e.closed_form = better
        if ground_truth:
            for e in shown:
                cf = e.closed_form
                left = deadline - time.monotonic()
                if cf is None or left <= 0:
                    continue
                if not cf.ok:
                    e.recovery = Recovery(False, f"no closed form ({cf.reason})", ground_truth)
                    continue
                rec = worker.call("recover", cf, ground_truth, input_names, 1e-3, 1e-6,
                                  timeout=min(RECOVERY_TIMEOUT, left))
                e.recovery = rec or Recovery(False, "the check ran out of time", ground_truth)
    finally:
        if own:
            worker.close()
    result.seconds = time.monotonic() - start
    return result


def enrich_summary(summary: dict[str, Any], records: list[Any], problem: Any, *,
                   budget: float = 20.0) -> dict[str, Any]:
    """Add closed form, complexity and recovery of the best program, the Pareto front and
    conversion counts to a run summary (in place; also returned)."""
    spec = problem.spec
    analysis = analyse_run(records, spec.input_names, ground_truth=spec.ground_truth,
                           budget=budget, show=1)
    best = summary.get("best")
    entry = analysis.best
    if isinstance(best, dict) and entry is not None:
        match = next((e for e in analysis.entries if e.id == best.get("id")), entry)
        data = match.to_json()
        for key in ("closed_form", "complexity", "recovery", "equation"):
            if key in data:
                best[key] = data[key]
    summary["pareto"] = [e.to_json() for e in analysis.pareto]
    summary["closed_forms"] = analysis.stats()
    if spec.ground_truth:
        summary["ground_truth"] = spec.ground_truth
        rec = entry.recovery if entry is not None else None
        summary["recovered"] = bool(rec and rec.recovered)
        summary["recovered_on_front"] = any(e.recovery is not None and e.recovery.recovered
                                            for e in analysis.pareto)
    return summary
