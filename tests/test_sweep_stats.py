"""The statistics of a sweep table: symbolic accuracy rules, Acc_tau both ways, median rank
with a bootstrap interval, paired Wilcoxon tests and their sentences, cost per solved run.

Built from synthetic run results (no runs), so each rule is checked on numbers chosen to
make it fail if the rule changes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eqforge.evaluator.analysis.symbolic_accuracy import run_status, tally
from eqforge.sweep import results as R
from eqforge.sweep import stats as S


def run(problem: str, llm: str, seed: int, *, nmse: float, status: str | None = "not recovered",
        acc: float = 0.5, tokens: int = 0, cost: float = 0.0, cpu: float | None = None,
        hits: int | None = None) -> R.RunResult:
    summary: dict[str, Any] = {
        "samples": 4, "valid": 4, "tokens": {"prompt": tokens, "completion": 0}, "cost": cost,
        "elapsed_seconds": 10.0, "llm": {"backend": llm, **({"cache_hits": hits} if hits is not None else {})},
        "best": {"nmse": {"train": nmse, "test_id": nmse, "test_ood": nmse},
                 "metrics": {"test_id": {"acc_0.1": acc}, "test_ood": {"acc_0.1": acc}}}}
    if status is not None:
        summary["recovery_status"] = status
        summary["ground_truth"] = "x"
    if cpu is not None:
        summary["cpu_seconds"] = cpu
    r = R.RunResult(problem, "llmsr", llm, seed, Path("."), "done", summary)
    r.eval_seconds = 2.0
    return r


def test_status_rules_unknown_is_not_failure() -> None:
    assert run_status({"recovered": None, "ground_truth": "x"}) == "unknown"
    assert run_status({"recovered": True}) == "recovered"
    assert run_status({"samples": 3}) is None  # no ground truth: no status
    t = tally(["recovered", "unknown", "unknown", None])
    assert (t.recovered, t.not_recovered, t.unknown, t.sa) == (1, 0, 2, 1.0)
    assert tally(["unknown"]).sa is None and tally(["unknown"]).majority == "unknown"
    assert tally(["recovered", "not recovered"]).majority == "recovered"


def test_cell_rows_sa_acc_both_ways_cost() -> None:
    results = [run("p", "openai:m", 0, nmse=1e-3, status="recovered", acc=1.0, tokens=100, cost=0.5, hits=3),
               run("p", "openai:m", 1, nmse=1e-2, status="unknown", acc=0.96, tokens=100, cost=0.5, hits=1),
               run("p", "sindy:", 0, nmse=1e-1, acc=0.2, cpu=7.0),
               run("p", "sindy:", 1, nmse=1e-1, acc=0.2, cpu=7.0)]
    rows = {r["llm"]: r for r in R.cell_rows(results)}
    m, s = rows["openai:m"], rows["sindy:"]
    assert (m["sa"], m["sa_recovered"], m["sa_unknown"]) == (1.0, 1, 1)
    assert m["acc01_all_id"] == 0.5 and m["acc01_95_id"] == 1.0  # 0.96: within 95 %, not all
    assert m["cache_hits"] == 4 and s["cache_hits"] is None
    assert m["cpu_seconds"] == 4.0 and s["cpu_seconds"] == 14.0  # eval seconds vs the searcher's own
    assert s["sa"] == 0.0
    summary, notes = R.strategy_summary(list(rows.values()))
    by = {x["llm"]: x for x in summary}
    assert by["openai:m"]["tokens_per_solved"] == 200 and by["openai:m"]["cost_per_solved"] == 1.0
    assert by["sindy:"]["cpu_per_solved"] is None  # nothing solved: no cost per solved
    assert by["openai:m"]["beats_baselines"] == "sindy: 1/1" and by["sindy:"]["beats_baselines"] == "baseline"
    assert not any("does not beat" in n for n in notes)


def test_bootstrap_interval_is_seeded_and_contains_the_median() -> None:
    values = [1.0, 2.0, 2.0, 3.0, 5.0, 1.0, 2.0]
    lo, hi = S.bootstrap_median_ci(values)
    assert lo <= float(np.median(values)) <= hi and (lo, hi) == S.bootstrap_median_ci(values)
    assert S.bootstrap_median_ci([4.0]) == (4.0, 4.0)


def test_wilcoxon_sentences_say_what_is_and_is_not_supported() -> None:
    rng = np.random.default_rng(0)
    a = {(f"p{i}", s): 10 ** rng.uniform(-8, -6) for i in range(8) for s in (0, 1)}
    b = {k: v * 100 for k, v in a.items()}
    tests = S.comparisons({("llmsr", "A"): a, ("llmsr", "B"): b})
    [t] = tests
    assert (t["pairs"], t["a_better"], t["b_better"]) == (16, 16, 0) and t["p_value"] < 0.01
    assert "support" in t["sentence"] and "16 of 16" in t["sentence"]
    same = S.comparisons({("llmsr", "A"): a, ("llmsr", "C"): dict(a)})[0]
    assert same["p_value"] == 1.0 and "do not show a difference" in same["sentence"]
    few = S.comparisons({("x", "A"): {("p", 0): 1e-3, ("q", 0): 1e-4}, ("x", "B"): {("p", 0): 1e-2, ("q", 0): 1e-3}})
    assert "so few pairs" in few[0]["sentence"]
    assert S.log_nmse(math.inf) == S.log_nmse(None) == 12.0 and S.log_nmse(0.0) == -12.0


@pytest.mark.parametrize("column", ["sa", "acc01_all_id", "acc01_95_ood", "cpu_seconds", "cache_hits"])
def test_csv_has_the_columns(column: str) -> None:
    assert column in R.CSV_COLUMNS
