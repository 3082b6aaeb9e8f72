"""Reading a sweep's run directories, and the results tables built from them.

Every run of a sweep is an ordinary run directory (``eqforge run``'s records) plus the
``plan.json`` the sweep wrote when it started it. This module only reads them — a finished
run is never touched — and turns them into one row per (problem, strategy, llm) cell,
aggregated over the seeds that finished:

``best_nmse_test_id_median``, ``best_nmse_test_ood_median``, ``best_nmse_test_ood_iqr``,
``acc01_test_ood_median`` (of each seed's best program, i.e. best training score),
``recovered`` (share of seeds whose best program recovers the declared ground truth; empty
when the problem declares none), ``valid_rate`` (valid samples / samples), and the totals
over seeds ``samples``, ``tokens``, ``cost`` and ``wall_seconds``. A missing or non-finite
test NMSE counts as ``inf``.

The per-strategy summary ranks the cells of each problem by their median OOD NMSE (1 is
best, ties share the mean rank) and gives each (strategy, llm) its median rank over
problems and the share of problems it recovers (at least half of the seeds). It also says
where a strategy does not beat the ``terms:`` baseline of the same problem: beating means
recovering on more seeds, or on as many with a lower median OOD NMSE.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eqforge.evaluator.rundir import RunDir

COLUMNS = ("problem", "strategy", "llm", "seeds", "best_nmse_test_id_median",
           "best_nmse_test_ood_median", "best_nmse_test_ood_iqr", "acc01_test_ood_median",
           "recovered", "valid_rate", "samples", "tokens", "cost", "wall_seconds", "pending")
SUMMARY_COLUMNS = ("strategy", "llm", "problems", "median_rank", "share_recovered",
                   "beats_terms")
#: stop reasons of a run that ended on its own; anything else is resumed
FINISHED = ("budget", "time budget", "cost budget", "target score")
BASELINE_PREFIX = "terms:"


@dataclass
class RunResult:
    """What the table needs from one run directory."""

    problem: str
    strategy: str
    llm: str
    seed: int
    directory: Path
    state: str  # "new", "partial" or "done"
    summary: dict[str, Any] | None = None
    curve: list[float] = field(default_factory=list)  # best-so-far train NMSE after each sample

    def best_nmse(self, split: str) -> float:
        best = (self.summary or {}).get("best") or {}
        value = (best.get("nmse") or {}).get(split)
        return float(value) if isinstance(value, int | float) else math.inf

    def best_acc01(self, split: str) -> float | None:
        best = (self.summary or {}).get("best") or {}
        value = ((best.get("metrics") or {}).get(split) or {}).get("acc_0.1")
        return float(value) if isinstance(value, int | float) else None


def run_state(directory: Path, budget: int | None = None) -> str:
    """``new`` (nothing on disk), ``done`` (ended on its own) or ``partial`` (resume it)."""
    run = RunDir(directory)
    if not run.has_samples() and not run.exists():
        return "new"
    summary = run.read_summary()
    if summary is None or summary.get("stopped") not in FINISHED:
        return "partial"
    if summary.get("stopped") == "budget" and budget is not None and int(summary.get("samples", 0)) < budget:
        return "partial"  # the loop died of something that was not a stop condition
    return "done"


def best_so_far(directory: Path) -> list[float]:
    """Train NMSE of the best-scoring program after each model sample (seed included)."""
    best_score, best_nmse, out = -math.inf, math.inf, []
    for r in sorted(RunDir(directory).read_samples(strict=False), key=lambda r: r.index):
        if r.ok and r.score is not None and r.score > best_score:
            best_score = r.score
            nmse = r.nmse.get("train")
            best_nmse = float(nmse) if nmse is not None else math.inf
        if r.source == "llm":
            out.append(best_nmse)
    return out


def read_run(plan: dict[str, Any], directory: Path, *, curve: bool = True) -> RunResult:
    budget = (plan.get("config") or {}).get("run", {}).get("samples")
    state = run_state(directory, budget)
    res = RunResult(plan["problem"], plan["strategy"], plan["llm"], int(plan["seed"]), directory, state)
    if state == "done":
        res.summary = RunDir(directory).read_summary()
        if curve:
            res.curve = best_so_far(directory)
    return res


# -- aggregation -------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _iqr(values: list[float]) -> float | None:
    if not values:
        return None
    arr = np.asarray(values, float)
    if np.isinf(arr).any():
        q75, q25 = np.percentile(np.where(np.isinf(arr), np.finfo(float).max, arr), [75, 25])
        return math.inf if q75 >= np.finfo(float).max else float(q75 - q25)
    q75, q25 = np.percentile(arr, [75, 25])
    return float(q75 - q25)


def cell_rows(results: list[RunResult]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, str, str], list[RunResult]] = {}
    for r in results:
        cells.setdefault((r.problem, r.strategy, r.llm), []).append(r)
    rows = []
    for (problem, strategy, llm), runs in cells.items():
        done = [r for r in runs if r.state == "done" and r.summary is not None]
        sums = [r.summary or {} for r in done]
        recovered = [bool(s["recovered"]) for s in sums if "recovered" in s]
        samples = sum(int(s.get("samples", 0)) for s in sums)
        valid = sum(int(s.get("valid", 0)) for s in sums)
        acc = [a for r in done if (a := r.best_acc01("test_ood")) is not None]
        rows.append({
            "problem": problem, "strategy": strategy, "llm": llm, "seeds": len(done),
            "best_nmse_test_id_median": _median([r.best_nmse("test_id") for r in done]),
            "best_nmse_test_ood_median": _median([r.best_nmse("test_ood") for r in done]),
            "best_nmse_test_ood_iqr": _iqr([r.best_nmse("test_ood") for r in done]),
            "acc01_test_ood_median": _median(acc),
            "recovered": (sum(recovered) / len(recovered)) if recovered else None,
            "valid_rate": valid / samples if samples else None,
            "samples": samples,
            "tokens": sum(int((s.get("tokens") or {}).get("prompt", 0) or 0)
                          + int((s.get("tokens") or {}).get("completion", 0) or 0) for s in sums),
            "cost": sum(float(s.get("cost", 0.0) or 0.0) for s in sums),
            "wall_seconds": sum(float(s.get("elapsed_seconds", 0.0) or 0.0) for s in sums),
            "pending": len(runs) - len(done),
        })
    return rows


def _ranks(values: list[float]) -> list[float]:
    from scipy.stats import rankdata

    return [float(x) for x in rankdata(values, method="average")]


def _beats(row: dict[str, Any], base: dict[str, Any]) -> bool:
    mine, theirs = row["recovered"] or 0.0, base["recovered"] or 0.0
    if mine != theirs:
        return mine > theirs
    a, b = row["best_nmse_test_ood_median"], base["best_nmse_test_ood_median"]
    return a is not None and (b is None or a < b)


def strategy_summary(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Per (strategy, llm) rows, and sentences about the ``terms:`` baseline."""
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["seeds"]:
            by_problem.setdefault(row["problem"], []).append(row)
    ranks: dict[tuple[str, str], list[float]] = {}
    recovered: dict[tuple[str, str], list[bool]] = {}
    not_beaten: dict[tuple[str, str], list[str]] = {}
    compared: dict[tuple[str, str], int] = {}
    for problem, cells in by_problem.items():
        values = [c["best_nmse_test_ood_median"] for c in cells]
        for c, rank in zip(cells, _ranks([math.inf if v is None else v for v in values]), strict=True):
            key = (c["strategy"], c["llm"])
            ranks.setdefault(key, []).append(rank)
            if c["recovered"] is not None:
                recovered.setdefault(key, []).append(c["recovered"] >= 0.5)
        baselines = [c for c in cells if c["llm"].startswith(BASELINE_PREFIX)]
        if not baselines:
            continue
        best_base = max(baselines, key=lambda c: (c["recovered"] or 0.0,
                                                  -(c["best_nmse_test_ood_median"] or math.inf)))
        for c in cells:
            if c["llm"].startswith(BASELINE_PREFIX):
                continue
            key = (c["strategy"], c["llm"])
            compared[key] = compared.get(key, 0) + 1
            if not _beats(c, best_base):
                not_beaten.setdefault(key, []).append(problem)
    out = []
    for key, rk in ranks.items():
        rec = recovered.get(key)
        is_base = key[1].startswith(BASELINE_PREFIX)
        out.append({
            "strategy": key[0], "llm": key[1], "problems": len(rk),
            "median_rank": float(np.median(rk)),
            "share_recovered": (sum(rec) / len(rec)) if rec else None,
            "beats_terms": ("baseline" if is_base else
                            f"{compared[key] - len(not_beaten.get(key, []))}/{compared[key]}"
                            if key in compared else None),
        })
    out.sort(key=lambda r: (r["median_rank"], r["strategy"], r["llm"]))
    notes = []
    if not any(k[1].startswith(BASELINE_PREFIX) for k in ranks):
        notes.append("This sweep has no `terms:` baseline; add \"terms:\" to `llms` to see whether "
                     "a strategy beats random sums of library terms.")
    for key, problems in sorted(not_beaten.items()):
        notes.append(f"{key[0]} with {key[1]} does not beat the terms: baseline on "
                     f"{len(problems)} of {compared[key]} problems ({', '.join(problems)}): "
                     "no discovery shown there.")
    return out, notes


# -- writing -----------------------------------------------------------------------------


def fmt(value: Any, column: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if column in ("recovered", "valid_rate", "share_recovered", "acc01_test_ood_median"):
            return f"{value:.2f}"
        if column in ("cost",):
            return f"{value:.4f}"
        if column in ("wall_seconds", "median_rank"):
            return f"{value:.1f}"
        return f"{value:.3g}"
    return str(value)


def to_csv(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else ("inf" if isinstance(row[c], float) and math.isinf(row[c])
                                                     else repr(row[c]) if isinstance(row[c], float) else row[c])
                         for c in columns])
    return buf.getvalue()


def to_markdown(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(esc(fmt(r[c], c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def results_markdown(rows: list[dict[str, Any]], summary: list[dict[str, Any]], notes: list[str],
                     *, title: str = "Sweep results") -> str:
    parts = [f"# {title}\n\n", "One row per (problem, strategy, llm), aggregated over the seeds "
             "that finished (NMSE of each seed's best program; totals over seeds).\n\n",
             to_markdown(rows), "\n## Strategies\n\n",
             "Median rank over problems (cells of a problem ranked by median OOD NMSE, 1 = best) "
             "and share of problems recovered (at least half of the seeds).\n\n",
             to_markdown(summary, SUMMARY_COLUMNS)]
    if notes:
        parts += ["\n", *(f"- {n}\n" for n in notes)]
    return "".join(parts)
