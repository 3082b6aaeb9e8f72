"""Classical searchers (``sindy:``, ``operon:``, ``gplearn:``) as first-class runs.

Their models must become programs the sandbox accepts and scores to the value the method
itself computes; their runs must be ordinary run directories (source = the searcher) that
recover easy laws. Runs are short (seconds of search) and slow-marked; the libraries are the
``[baselines]`` extra, and a test that needs a missing one is skipped saying so.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from eqforge.agents.classical import parse_classical
from eqforge.agents.classical.expr import input_symbols, to_program
from eqforge.cli import main
from eqforge.errors import BackendError
from eqforge.sandbox.policy import check


def need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'eqforge[baselines]')")


def test_spec_options_are_checked() -> None:
    spec = parse_classical("sindy:degree=2,threshold_max=5", check_installed=False)
    assert spec.kind == "sindy" and spec.options.degree == 2 and spec.options.threshold_max == 5.0
    with pytest.raises(BackendError, match="unknown option; known: degree"):
        parse_classical("sindy:degre=2", check_installed=False)
    with pytest.raises(BackendError, match="key=value"):
        parse_classical("operon:fast", check_installed=False)
    with pytest.raises(BackendError, match="population"):
        parse_classical("gplearn:population=1", check_installed=False)


def test_missing_extra_is_one_line_naming_it(monkeypatch) -> None:  # noqa: ANN001
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyoperon" else real(name, *a))
    with pytest.raises(BackendError) as err:
        parse_classical("operon:")
    assert "pyoperon" in str(err.value) and "eqforge[baselines]" in str(err.value) and "\n" not in str(err.value)


def test_expression_becomes_a_program_the_policy_accepts() -> None:
    X = input_symbols(3)
    expr = 0.8 * sp.sin(X[0]) - 0.5 * X[1] ** 3 + sp.Float(2.5) * X[0] / X[2] + sp.sqrt(X[1]) + sp.pi * X[2]
    for max_params in (10, 2):  # beyond the limit, constants are written as literals
        t = to_program(expr, ["gamma", "E", "lam"], max_params=max_params)
        assert check(t.program) is None, t.program
        assert t.program.startswith("def equation(gamma, E, lam, params):")
        assert len(t.params) == min(3, max_params)
        ns: dict[str, object] = {"np": np}
        exec(t.program, ns)  # trusted: written by the test's own expression
        rng = np.random.default_rng(0)
        cols = rng.uniform(0.5, 2.0, (3, 50))
        got = ns["equation"](*cols, np.array(t.params))  # type: ignore[operator]
        want = sp.lambdify(X, expr, "numpy")(*cols)
        assert np.allclose(got, want, rtol=1e-9), t.program


def test_numpy_stlsq_matches_pysindy() -> None:
    need("pysindy")
    import pysindy as ps

    from eqforge.agents.classical.sindy import library, stlsq
    from eqforge.agents.classical.spec import SindyOptions

    rng = np.random.default_rng(2)
    X = rng.uniform(0.5, 2.0, (300, 2))
    y = 0.7 * np.sin(X[:, 0]) - 2.0 * X[:, 0] * X[:, 1] ** 2 + 0.01 * rng.normal(size=300)
    _, theta = library(X, SindyOptions())
    for thr in (0.01, 0.3, 3.0):
        ref = ps.STLSQ(threshold=thr, alpha=1e-6, normalize_columns=True, max_iter=20).fit(theta, y.reshape(-1, 1))
        assert np.array_equal(np.asarray(ref.coef_).ravel() != 0, stlsq(theta, y, thr, 1e-6) != 0), thr


def test_sindy_front_finds_a_sparse_law() -> None:
    from eqforge.agents.classical.sindy import fit
    from eqforge.agents.classical.spec import SindyOptions

    rng = np.random.default_rng(1)
    X = rng.uniform(0.5, 2.0, (300, 2))
    y = 1.5 * X[:, 0] * X[:, 1] - 0.25 / X[:, 1]
    front = fit(X, y, SindyOptions(degree=2), seed=0, max_seconds=60, max_models=20)
    assert front and [m["complexity"] for m in front] == sorted(m["complexity"] for m in front)
    best = front[-1]
    assert best["train_mse"] < 1e-20 and best["complexity"] == 2, best["text"]


def _run(tmp_path: Path, problem: str, llm: str, *extra: str) -> tuple[dict, list[dict]]:
    out = tmp_path / llm.partition(":")[0]
    assert main(["run", problem, "--llm", llm, "--samples", "20", "--out", str(out), "--workers", "1",
                 "--quiet", *extra]) == 0
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    return summary, records


@pytest.mark.slow
def test_sindy_run_recovers_and_is_an_ordinary_run(tmp_path: Path) -> None:
    need("pysindy")
    summary, records = _run(tmp_path, "lsrt-I.14.3-m", "sindy:degree=2")
    assert {r["source"] for r in records} == {"sindy"} and summary["samples"] == len(records) > 0
    assert summary["stopped"] == "search finished" and summary["llm"]["backend"] == "sindy"
    assert summary["recovered"] is True, summary["best"]
    fit_cpu = summary["classical"]["fit_cpu_seconds"]
    assert fit_cpu > 0 and summary["cpu_seconds"] >= fit_cpu
    assert all(r["ok"] for r in records)  # every front model passes the policy and scores


@pytest.mark.slow
def test_operon_run_scores_its_front(tmp_path: Path) -> None:
    need("pyoperon")
    summary, records = _run(tmp_path, "feynman-I.12.1", "operon:population=200,max_evaluations=20000",
                            "--max-seconds", "5")
    assert {r["source"] for r in records} == {"operon"} and len(records) >= 1
    assert all(r["ok"] for r in records)
    assert summary["best"]["nmse"]["test_id"] < 1e-3


@pytest.mark.slow
def test_gplearn_run_records_its_program(tmp_path: Path) -> None:
    need("gplearn")
    summary, records = _run(tmp_path, "feynman-I.12.1", "gplearn:population=200,generations=3")
    assert [r["source"] for r in records] == ["gplearn"] and records[0]["ok"], records[0]
    assert "gplearn:" in records[0]["response"]
