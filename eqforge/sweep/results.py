"""Reading a sweep's run directories, and the results tables built from them.

Every run of a sweep is an ordinary run directory (``eqforge run``'s records, or a classical
searcher's: ``sindy:``, ``operon:``, ``gplearn:``) plus the ``plan.json`` the sweep wrote
when it started it. This module only reads them — a finished run is never touched — and
turns them into one row per (problem, strategy, llm) cell, aggregated over the seeds that
finished:

* accuracy: ``best_nmse_test_id_median``, ``best_nmse_test_ood_median``,
  ``best_nmse_test_ood_iqr``, ``acc01_test_ood_median`` (share of OOD points within 10 %,
  median over seeds) and Acc_0.1 both ways, as the share of seeds whose best program meets
  it: ``acc01_all_*`` (every point within 10 % relative error: LLM-SRBench's paper) and
  ``acc01_95_*`` (at least 95 % of the points: SR-Scientist), on test_id and test_ood;
* symbolic accuracy (``evaluator.analysis.symbolic_accuracy``): ``sa`` (share of the seeds
  with a known status that recover the ground truth; empty without a ground truth) and the
  counts ``sa_recovered`` / ``sa_not_recovered`` / ``sa_unknown`` (unknown is no failure);
* ``valid_rate`` (valid samples / samples) and the cost totals over seeds: ``samples``,
  ``tokens``, ``cost`` (USD), ``cpu_seconds`` (sandbox evaluation seconds, plus the
  searcher's own CPU for classical runs), ``wall_seconds``, ``cache_hits`` (responses served
  from the response cache, where the summary records it; empty otherwise).

A missing or non-finite test NMSE counts as ``inf``. The per-strategy summary ranks the cells
of each problem by their median OOD NMSE (1 is best, ties share the mean rank) and gives each
(strategy, llm) its median rank over problems with a bootstrap 95 % interval (``stats``),
SA over problems, Acc_0.1 both ways over problems, and the cost per solved problem (totals
over all its runs divided by the (problem, seed) runs that recover the ground truth). It says
where a strategy does not beat each baseline (``terms:`` and the classical searchers) of the
same problem: beating means recovering on more seeds, or on as many with a lower median OOD
NMSE. ``comparisons`` pairs strategies run by run (``stats``).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eqforge.evaluator.analysis.symbolic_accuracy import run_status, tally
from eqforge.evaluator.rundir import RunDir
from eqforge.sweep import stats as S

COLUMNS = ("problem", "strategy", "llm", "seeds", "best_nmse_test_id_median",
           "best_nmse_test_ood_median", "best_nmse_test_ood_iqr", "acc01_test_ood_median",
           "acc01_all_id", "acc01_95_id", "acc01_all_ood", "acc01_95_ood",
           "sa", "sa_recovered", "sa_not_recovered", "sa_unknown",
           "valid_rate", "samples", "tokens", "cost", "cpu_seconds", "wall_seconds", "cache_hits", "pending")
SUMMARY_COLUMNS = ("strategy", "llm", "problems", "median_rank", "rank_ci_low", "rank_ci_high",
                   "sa", "sa_recovered", "sa_not_recovered", "sa_unknown",
                   "acc01_all_id", "acc01_95_id", "tokens_per_solved", "cost_per_solved",
                   "cpu_per_solved", "wall_per_solved", "beats_baselines")
#: stop reasons of a run that ended on its own; anything else is resumed
FINISHED = ("budget", "time budget", "cost budget", "target score", "search finished")
#: model specs that are baselines: random term sums and the classical searchers
BASELINE_PREFIXES = ("terms:", "sindy:", "operon:", "gplearn:")
BASELINE_PREFIX = BASELINE_PREFIXES[0]  # what earlier readers imported
#: sample sources that are proposals (a model's answer, a classical searcher's model)
SEARCH_SOURCES = ("llm", "sindy", "operon", "gplearn")


def is_baseline(llm: str) -> bool:
    return llm.startswith(BASELINE_PREFIXES)


def baseline_kind(llm: str) -> str:
    return llm.partition(":")[0] + ":"


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
    eval_seconds: float = 0.0  # sandbox evaluation seconds over the run's samples

    def best_nmse(self, split: str) -> float:
        best = (self.summary or {}).get("best") or {}
        value = (best.get("nmse") or {}).get(split)
        return float(value) if isinstance(value, int | float) else math.inf

    def best_acc01(self, split: str) -> float | None:
        best = (self.summary or {}).get("best") or {}
        value = ((best.get("metrics") or {}).get(split) or {}).get("acc_0.1")
        return float(value) if isinstance(value, int | float) else None

    @property
    def status(self) -> str | None:
        """Recovery status of the best law (None: no ground truth)."""
        return run_status(self.summary)

    @property
    def cpu_seconds(self) -> float:
        value = (self.summary or {}).get("cpu_seconds")
        return float(value) if isinstance(value, int | float) else self.eval_seconds

    @property
    def cache_hits(self) -> int | None:
        value = ((self.summary or {}).get("llm") or {}).get("cache_hits")
        return int(value) if isinstance(value, int | float) else None


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


def best_so_far(directory: Path) -> tuple[list[float], float]:
    """Train NMSE of the best-scoring program after each proposed sample (seed included),
    and the run's total sandbox evaluation seconds."""
    best_score, best_nmse, out, seconds = -math.inf, math.inf, [], 0.0
    for r in sorted(RunDir(directory).read_samples(strict=False), key=lambda r: r.index):
        seconds += float(r.result.seconds or 0.0)
        if r.ok and r.score is not None and r.score > best_score:
            best_score = r.score
            nmse = r.nmse.get("train")
            best_nmse = float(nmse) if nmse is not None else math.inf
        if r.source in SEARCH_SOURCES:
            out.append(best_nmse)
    return out, seconds


def read_run(plan: dict[str, Any], directory: Path, *, curve: bool = True) -> RunResult:
    budget = (plan.get("config") or {}).get("run", {}).get("samples")
    state = run_state(directory, budget)
    res = RunResult(plan["problem"], plan["strategy"], plan["llm"], int(plan["seed"]), directory, state)
    if state == "done":
        res.summary = RunDir(directory).read_summary()
        if curve:
            res.curve, res.eval_seconds = best_so_far(directory)
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
        sa = tally(r.status for r in done)
        samples = sum(int(s.get("samples", 0)) for s in sums)
        valid = sum(int(s.get("valid", 0)) for s in sums)
        acc = [a for r in done if (a := r.best_acc01("test_ood")) is not None]
        hits = [h for r in done if (h := r.cache_hits) is not None]
        rows.append({
            "problem": problem, "strategy": strategy, "llm": llm, "seeds": len(done),
            "best_nmse_test_id_median": _median([r.best_nmse("test_id") for r in done]),
            "best_nmse_test_ood_median": _median([r.best_nmse("test_ood") for r in done]),
            "best_nmse_test_ood_iqr": _iqr([r.best_nmse("test_ood") for r in done]),
            "acc01_test_ood_median": _median(acc),
            **{f"acc01_{way}_{short}": _acc_share(done, split, need)
               for short, split in (("id", "test_id"), ("ood", "test_ood"))
               for way, need in (("all", 1.0), ("95", 0.95))},
            "sa": sa.sa, "sa_recovered": sa.recovered if sa.known or sa.unknown else None,
            "sa_not_recovered": sa.not_recovered if sa.known or sa.unknown else None,
            "sa_unknown": sa.unknown if sa.known or sa.unknown else None,
            "status_counts": sa,
            "valid_rate": valid / samples if samples else None,
            "samples": samples,
            "tokens": sum(int((s.get("tokens") or {}).get("prompt", 0) or 0)
                          + int((s.get("tokens") or {}).get("completion", 0) or 0) for s in sums),
            "cost": sum(float(s.get("cost", 0.0) or 0.0) for s in sums),
            "cpu_seconds": sum(r.cpu_seconds for r in done),
            "wall_seconds": sum(float(s.get("elapsed_seconds", 0.0) or 0.0) for s in sums),
            "cache_hits": sum(hits) if hits else None,
            "pending": len(runs) - len(done),
            "recovered_runs": sa.recovered,
            "nmse_by_seed": {r.seed: r.best_nmse("test_ood") for r in done},
        })
    return rows


def _acc_share(done: list[RunResult], split: str, need: float) -> float | None:
    """Share of seeds whose best program has at least ``need`` of its points within 10 %."""
    values = [a for r in done if (a := r.best_acc01(split)) is not None]
    return sum(v >= need - 1e-12 for v in values) / len(values) if values else None


def _ranks(values: list[float]) -> list[float]:
    from scipy.stats import rankdata

    return [float(x) for x in rankdata(values, method="average")]


def _beats(row: dict[str, Any], base: dict[str, Any]) -> bool:
    mine, theirs = row["sa"] or 0.0, base["sa"] or 0.0
    if mine != theirs:
        return mine > theirs
    a, b = row["best_nmse_test_ood_median"], base["best_nmse_test_ood_median"]
    return a is not None and (b is None or a < b)


def _per(total: float, solved: int) -> float | None:
    return total / solved if solved else None


def strategy_summary(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Per (strategy, llm) rows, and sentences about the baselines."""
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["seeds"]:
            by_problem.setdefault(row["problem"], []).append(row)
    ranks: dict[tuple[str, str], list[float]] = {}
    status: dict[tuple[str, str], list[str | None]] = {}
    acc: dict[tuple[str, str], dict[str, list[float]]] = {}
    not_beaten: dict[tuple[tuple[str, str], str], list[str]] = {}
    compared: dict[tuple[tuple[str, str], str], int] = {}
    for problem, cells in by_problem.items():
        values = [c["best_nmse_test_ood_median"] for c in cells]
        for c, rank in zip(cells, _ranks([math.inf if v is None else v for v in values]), strict=True):
            key = (c["strategy"], c["llm"])
            ranks.setdefault(key, []).append(rank)
            status.setdefault(key, []).append(c["status_counts"].majority)
            for col in ("acc01_all_id", "acc01_95_id"):
                if c[col] is not None:
                    acc.setdefault(key, {}).setdefault(col, []).append(float(c[col] >= 0.5))
        kinds: dict[str, list[dict[str, Any]]] = {}
        for c in cells:
            if is_baseline(c["llm"]):
                kinds.setdefault(baseline_kind(c["llm"]), []).append(c)
        for kind, baselines in kinds.items():
            best_base = max(baselines, key=lambda c: (c["sa"] or 0.0, -(c["best_nmse_test_ood_median"] or math.inf)))
            for c in cells:
                if is_baseline(c["llm"]):
                    continue
                key = (c["strategy"], c["llm"])
                compared[(key, kind)] = compared.get((key, kind), 0) + 1
                if not _beats(c, best_base):
                    not_beaten.setdefault((key, kind), []).append(problem)
    totals: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        t = totals.setdefault((row["strategy"], row["llm"]),
                              dict.fromkeys(("tokens", "cost", "cpu", "wall", "solved"), 0.0))
        t["tokens"] += row["tokens"]
        t["cost"] += row["cost"]
        t["cpu"] += row["cpu_seconds"]
        t["wall"] += row["wall_seconds"]
        t["solved"] += row["recovered_runs"]
    out = []
    for key, rk in ranks.items():
        sa = tally(status[key])
        lo, hi = S.bootstrap_median_ci(rk)
        t = totals[key]
        solved = int(t["solved"])
        beats = [f"{kind} {compared[(key, kind)] - len(not_beaten.get((key, kind), []))}/{compared[(key, kind)]}"
                 for kind in BASELINE_PREFIXES if (key, kind) in compared]
        out.append({
            "strategy": key[0], "llm": key[1], "problems": len(rk),
            "median_rank": float(np.median(rk)), "rank_ci_low": lo, "rank_ci_high": hi,
            "sa": sa.sa, "sa_recovered": sa.recovered, "sa_not_recovered": sa.not_recovered,
            "sa_unknown": sa.unknown,
            **{col: float(np.mean(v)) if (v := acc.get(key, {}).get(col)) else None
               for col in ("acc01_all_id", "acc01_95_id")},
            "tokens_per_solved": _per(t["tokens"], solved), "cost_per_solved": _per(t["cost"], solved),
            "cpu_per_solved": _per(t["cpu"], solved), "wall_per_solved": _per(t["wall"], solved),
            "beats_baselines": "baseline" if is_baseline(key[1]) else ("; ".join(beats) or None),
        })
    out.sort(key=lambda r: (r["median_rank"], r["strategy"], r["llm"]))
    notes = []
    if not any(is_baseline(k[1]) for k in ranks):
        notes.append("This sweep has no baseline; add \"terms:\", \"sindy:\" or \"operon:\" to `llms` to see "
                     "whether a strategy beats methods that use no language model.")
    for (key, kind), problems in sorted(not_beaten.items()):
        notes.append(f"{key[0]} with {key[1]} does not beat the {kind} baseline on "
                     f"{len(problems)} of {compared[(key, kind)]} problems ({', '.join(problems)}): "
                     "no discovery beyond that baseline shown there.")
    return out, notes


def comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Paired tests between strategies over (problem, seed) runs (``stats.comparisons``)."""
    runs: dict[tuple[str, str], dict[tuple[str, int], float | None]] = {}
    for row in rows:
        for seed, value in row["nmse_by_seed"].items():
            runs.setdefault((row["strategy"], row["llm"]), {})[(row["problem"], seed)] = value
    return S.comparisons(runs)


# -- writing -----------------------------------------------------------------------------


def fmt(value: Any, column: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if column in ("sa", "valid_rate", "acc01_test_ood_median") or column.startswith("acc01_"):
            return f"{value:.2f}"
        if column in ("cost", "cost_per_solved"):
            return f"{value:.4f}"
        if column in ("wall_seconds", "cpu_seconds", "median_rank", "rank_ci_low", "rank_ci_high",
                      "cpu_per_solved", "wall_per_solved", "tokens_per_solved"):
            return f"{value:.1f}"
        if column == "p_value":
            return f"{value:.3g}"
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


#: per-strategy statistics joined onto every cell row of ``results.csv`` (one file holds all)
JOINED = ("median_rank", "rank_ci_low", "rank_ci_high", "tokens_per_solved", "cost_per_solved",
          "cpu_per_solved", "wall_per_solved")
CSV_COLUMNS = COLUMNS + tuple(f"strategy_{c}" for c in JOINED)


def joined(rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cell rows with their strategy's statistics (``strategy_*``)."""
    by_key = {(s["strategy"], s["llm"]): s for s in summary}
    out = []
    for r in rows:
        s = by_key.get((r["strategy"], r["llm"]), {})
        out.append({**r, **{f"strategy_{c}": s.get(c) for c in JOINED}})
    return out


def results_markdown(rows: list[dict[str, Any]], summary: list[dict[str, Any]], notes: list[str],
                     tests: list[dict[str, Any]] | None = None, *, title: str = "Sweep results") -> str:
    parts = [f"# {title}\n\n", "One row per (problem, strategy, llm), aggregated over the seeds "
             "that finished (NMSE of each seed's best program; totals over seeds; SA counts "
             "recovered / not recovered / unknown seeds; Acc_0.1 `all` = every point within 10 %, "
             "`95` = at least 95 % of the points, as the share of seeds).\n\n",
             to_markdown(rows), "\n## Strategies\n\n",
             "Median rank over problems (cells of a problem ranked by median OOD NMSE, 1 = best) with "
             "a bootstrap 95 % interval; SA over problems (a problem counts as recovered when at least "
             "half of its known seeds are; unknown is not a failure); Acc_0.1 both ways over problems; "
             "cost per solved (problem, seed) run.\n\n",
             to_markdown(summary, SUMMARY_COLUMNS)]
    if notes:
        parts += ["\n", *(f"- {n}\n" for n in notes)]
    if tests:
        parts += ["\n## Paired comparisons\n\n", "Wilcoxon signed-rank test on log10 OOD NMSE over the "
                  "(problem, seed) runs two strategies share.\n\n",
                  to_markdown(tests, S.COMPARISON_COLUMNS[:-1]), "\n", *(f"- {t['sentence']}\n" for t in tests)]
    return "".join(parts)
