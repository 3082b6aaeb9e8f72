"""Fitting: which params a program uses, the default and LLM-SR fitters, and the evaluator."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from local_host import local_fit
from scipy.optimize import minimize

from eqforge.config import EvaluatorConfig
from eqforge.evaluator.fitting import FitOptions, fit_default
from eqforge.evaluator.params import param_usage
from eqforge.problems.spec import Problem, ProblemSpec, Split, Variable

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
N = 3000


def _fn(code: str):
    namespace = {"np": np}
    exec(code, namespace)  # noqa: S102 - trusted test programs
    return namespace["equation"]


def _run(code: str, X: np.ndarray, y: np.ndarray, **options):
    """The sandbox's fitting driver, candidate called locally; returns (output, full-train MSE)."""
    usage = param_usage(code)
    opts = {"n_params": 10, "indices": list(usage.fit_indices(10)), "subsample": 300, **options}
    out = local_fit(_fn(code), {"train": X}, y, opts)
    return out, float(np.mean((out["predictions"]["train"] - y) ** 2))


def _llmsr_bfgs(code: str, X: np.ndarray, y: np.ndarray):
    f = _fn(code)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return minimize(lambda p: np.mean((f(*X.T, p) - y) ** 2), [1.0] * 10, method="BFGS")


# -- which params a program uses -----------------------------------------------------------

@pytest.mark.parametrize(("code", "indices", "exact"), [
    ("def equation(x, params):\n    return params[0] * x + params[3]\n", (0, 3), True),
    ("def equation(x, params):\n    a, b, c = params[:3]\n    return a * x + b + c\n", (0, 1, 2), True),
    ("def equation(x, params):\n    return params[2:6:2].sum() * x\n", (2, 4), True),
    ("def equation(x, p):\n    return p[1] * x\n", (1,), True),  # whatever the last argument is called
    ("def equation(x, params):\n    return sum(params[i] * x**i for i in range(3))\n", (), False),
    ("def equation(x, params):\n    return params[-1] * x\n", (), False),
    ("def equation(x, params):\n    return np.polyval(params[:2], x) + np.dot(params, x)\n", (0, 1), False),
    ("def equation(x, params):\n    return (params[0] *\n", (), False),  # does not parse
])
def test_param_usage(code: str, indices: tuple[int, ...], exact: bool) -> None:
    usage = param_usage(code)
    assert usage.indices == indices and usage.exact is exact
    if not exact:
        assert usage.fit_indices(10) == tuple(range(10))  # fall back to every declared param


def test_too_many_params_is_rejected_with_a_reason() -> None:
    from eqforge.evaluator.evaluate import Evaluator

    ev = Evaluator(_problem(), EvaluatorConfig(max_params=4, workers=1))
    res = ev.submit("def equation(b, temp, params):\n    return params[7] * b\n").result()
    ev.close()
    assert not res.ok and res.error == "params:too-many" and "params[7]" in res.detail


# -- the default fitter --------------------------------------------------------------------

def _growth() -> tuple[np.ndarray, np.ndarray]:
    b, temp = RNG.uniform(1, 5, N), RNG.uniform(10, 40, N)
    return np.c_[b, temp], 0.02 * b * np.exp(0.08 * temp) + 0.1 * temp


GROWTH = "def equation(b, temp, params):\n    return params[0] * b * np.exp(params[1] * temp) + params[2] * temp\n"
DRIVEN = ("def equation(t, x, params):\n"
          "    return params[0] * np.sin(params[1] * t) + params[2] * x * np.exp(params[3] * x)\n")


def _driven(freq: float) -> tuple[np.ndarray, np.ndarray]:
    t, x = np.linspace(30, 50, N), RNG.uniform(-0.2, 0.2, N)
    return np.c_[t, x], 0.3 * np.sin(freq * t) - 5 * x * np.exp(0.5 * x)


@pytest.mark.parametrize(("code", "data", "true"), [
    (GROWTH, _growth, [0.02, 0.08, 0.1]),  # exp(temp) at ones overflows BFGS's path
    (DRIVEN, lambda: _driven(1.3), [0.3, 1.3, -5.0, 0.5]),  # a frequency basin a few % wide
])
def test_default_finds_constants_bfgs_from_ones_misses(code, data, true) -> None:
    X, y = data()
    bfgs = _llmsr_bfgs(code, X, y)
    out, loss = _run(code, X, y)
    assert bfgs.fun > 1e-3 * np.var(y)  # LLM-SR's procedure lands in a poor minimum
    assert loss < 1e-20 * np.var(y)
    np.testing.assert_allclose(out["params"][: len(true)], true, rtol=1e-6)
    assert out["fit"]["loss"] == pytest.approx(loss, rel=1e-12, abs=1e-30)


def test_overflow_nan_and_odd_programs_do_not_crash() -> None:
    x, v = RNG.uniform(-2, 2, N), RNG.uniform(-1, 1, N)
    X, y = np.c_[x, v], 2.5 * np.exp(-0.7 * x) + 0.3 * v
    codes = {
        "overflow": "    return params[0] * np.exp(params[1] * x * 300) + params[2]\n",
        "power of negatives": "    return params[0] * x ** params[1] + params[2] * v\n",
        "branch (no batching)": "    if params[0] > 0:\n        return params[0] * x\n    return params[1] * v\n",
        "reduction (no batching)": "    return params[0] * x - np.mean(params[1:3]) * v + params[2]\n",
        "product of params": "    return params[0] * params[1] * np.exp(-x) + params[2] * v\n",
        "scalar": "    return params[0]\n",
        "python loop": "    out = np.empty_like(x)\n    for i in range(len(x)):\n"
                       "        out[i] = params[0] * x[i] + params[1]\n    return out\n",
    }
    for name, body in codes.items():
        code = "def equation(x, v, params):\n" + body
        out, loss = _run(code, X, y)
        at_ones = float(np.mean((_fn(code)(x, v, np.ones(10)) - y) ** 2))
        assert np.isfinite(loss) and loss <= at_ones, name
        assert np.all(np.isfinite(out["params"])), name


def test_power_of_negative_rows_the_subsample_missed() -> None:
    """NaN on a few rows only: the polished fit must be finite on every training row."""
    x = RNG.uniform(0.1, 2, N)
    x[RNG.choice(N, 5, replace=False)] = -0.01
    y = 1.5 * np.abs(x) ** 1.7 + 0.2
    f = _fn("def equation(x, params):\n    return params[0] * x ** params[1] + params[2]\n")
    res = fit_default(lambda p, rows: f(x if rows is None else x[rows], p), y,
                      FitOptions(indices=(0, 1, 2), subsample=100, screen_rows=50))
    assert np.isfinite(res.loss)
    assert np.all(np.isfinite(f(x, res.params)))


def test_subsample_and_polish_give_the_full_data_fit() -> None:
    X, y = _growth()
    y = y + RNG.normal(0, 0.05, N)
    _, on_subsample = _run(GROWTH, X, y, subsample=200)
    _, on_all = _run(GROWTH, X, y, subsample=None)
    assert on_subsample == pytest.approx(on_all, rel=1e-6)


def test_parent_start_is_used() -> None:
    X, y = _driven(3.7)  # outside every sweep; no random start either
    lean = {"fit_options": {"screen": 0, "sweep": 0}}
    _, alone = _run(DRIVEN, X, y, **lean)
    _, with_parent = _run(DRIVEN, X, y, parent={"0": 0.29, "1": 3.7004, "2": -5.1, "3": 0.4}, **lean)
    assert alone > 1e-3 and with_parent < 1e-20


def test_time_budget_is_respected() -> None:
    x = RNG.uniform(-2, 2, 20_000)
    y = np.sin(1.3 * x) + 0.3 * x ** 2
    code = ("def equation(x, params):\n    out = np.empty_like(x)\n    for i in range(len(x)):\n"
            "        out[i] = params[0] * np.sin(params[1] * x[i]) + params[2] * np.tanh(params[3] * x[i])\n"
            "    return out\n")
    start = time.perf_counter()
    out, loss = _run(code, x[:, None], y, time_budget=0.5, fit_options={"llmsr_start": False})
    assert time.perf_counter() - start < 5.0 and np.isfinite(loss)  # unbounded: ~8 s
    assert any("time budget" in note for note in out["fit"]["notes"])
    # LLM-SR's own start is not bound by the search's budget, only by LLM-SR's limit and the job's
    start = time.perf_counter()
    usage = param_usage(code)
    out = local_fit(_fn(code), {"train": x[:, None]}, y, {"indices": list(usage.fit_indices(10)),
                                                          "time_budget": 0.5}, timeout=3.0)
    assert time.perf_counter() - start < 6.0 and np.all(np.isfinite(out["predictions"]["train"]))


# -- LLM-SR's procedure --------------------------------------------------------------------

def test_llmsr_mode_is_scipy_bfgs_from_ones_over_all_params() -> None:
    X, y = _growth()
    code = "def equation(b, temp, params):\n    return params[0] * b + params[1] * np.sqrt(temp) + params[2]\n"
    out, loss = _run(code, X, y, fitter="llmsr")
    ref = _llmsr_bfgs(code, X, y)
    np.testing.assert_array_equal(out["params"], ref.x)
    assert out["fit"]["loss"] == ref.fun and loss == pytest.approx(ref.fun, rel=1e-12)
    assert len(out["params"]) == 10


# -- through the evaluator -----------------------------------------------------------------

def _problem() -> Problem:
    X, y = _growth()
    spec = ProblemSpec(name="growth", description="synthetic growth",
                       inputs=[Variable(name="b"), Variable(name="temp")], output=Variable(name="db"))
    return Problem(spec, {"train": Split(X[:2000], y[:2000]), "test_id": Split(X[2000:], y[2000:])})


def test_evaluator_reports_used_params_and_full_training_score() -> None:
    from eqforge.evaluator.evaluate import Evaluator

    problem = _problem()
    with Evaluator(problem, EvaluatorConfig(workers=1)) as ev:
        res = ev.evaluate_many([GROWTH.replace("params[2]", "params[7]")])[0]
    assert res.ok, res.detail
    assert res.n_params == 3 and res.fit["indices"] == [0, 1, 7]
    assert res.params[7] == pytest.approx(0.1) and res.params[2] == 1.0  # unused: left at 1
    assert -res.score == pytest.approx(res.metrics["train"]["mse"]) and -res.score < 1e-20


# -- the benchmark ---------------------------------------------------------------------------

def test_benchmark_runs_on_a_tiny_corpus(tmp_path: Path, llmsr_data: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_fitting", REPO / "benchmarks" / "fitting.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_fitting"] = bench
    spec.loader.exec_module(bench)
    corpus = tmp_path / "programs.jsonl"
    programs = [
        {"id": "a", "problem": "stressstrain", "kind": "valid",
         "code": "def equation(strain, temp, params):\n    return params[0] * strain + params[1] * temp\n"},
        {"id": "b", "problem": "stressstrain", "kind": "syntax_error",
         "code": "def equation(strain, temp, params):\n    return params[0] * (\n"},
    ]
    corpus.write_text("".join(json.dumps(p) + "\n" for p in programs))
    out = tmp_path / "fitting.json"
    assert bench.main(["--corpus", str(corpus), "--data", str(llmsr_data), "--workers", "1",
                       "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    cmp = report["loss_comparison"]
    assert cmp["compared"] == 1 and cmp["worse"] == 0
    assert report["failing_programs"]["001:b"]["eqforge"] == "syntax"
    assert report["summary"]["ratio_1"] > 0


# -- never worse than LLM-SR's path on non-convex growth models -----------------------------

_GSIG = "def equation(B, S, T, pH, params):\n"
GROWTH_MODELS = {
    "ratkowsky-monod-gauss": _GSIG
    + "    r = (params[0] * (T - params[1] * 0.2)) ** 2 * (1 - np.exp(params[2] * (T - params[3] * 2.2)))\n"
    + "    return params[4] * B * r * S / (params[5] + S) * np.exp(-params[6] * (pH - params[7]) ** 2)\n",
    "sqrt-ratkowsky": _GSIG
    + "    sq = np.sqrt(np.abs(T - 0.2 * params[1])) * (1 - np.exp(params[2] * (T - 2.2 * params[3])))\n"
    + "    return params[0] * B * sq ** 2 * S / (params[4] + S) * np.exp(-params[5] * (pH - params[6]) ** 2)\n",
    "log-linear-in-exp": _GSIG
    + "    return B * np.exp(params[0] * np.log(S) + params[1] * T + params[2] * pH - params[3] * pH ** 2"
    + " + params[4] * np.log(T))\n",
    "monod-gauss-gauss": _GSIG
    + "    return params[0] * B * S / (params[1] + S) * np.exp(-params[2] * (T - params[3]) ** 2)"
    + " * np.exp(-params[4] * (pH - params[5]) ** 2)\n",
}
# A search crippled on purpose (few starts, a tiny misleading subsample, short polish): what
# keeps it never worse is LLM-SR's own start polished to convergence on all rows.
CRIPPLED = {"screen": 3, "sweep": 0, "starts": 1, "screen_rows": 12, "polish_rows": None, "polish_iters": 1,
            "polish_min": 2, "explore_iters": 1}


def _growth_data(code: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 3000
    X = np.c_[rng.uniform(0.1, 2, n), rng.uniform(0.1, 3, n), rng.uniform(0.5, 2.0, n), rng.uniform(0.3, 2.0, n)]
    true = np.array([1.05, 0.95, 1.1, 0.9, 1.02, 0.97, 1.08, 0.93, 1.0, 1.0])
    with np.errstate(all="ignore"):
        y = _fn(code)(*X.T, true) + rng.normal(0, 0.02, n)
    return X, y


@pytest.mark.parametrize("name", sorted(GROWTH_MODELS))
@pytest.mark.parametrize("search", ["default", "crippled"])
def test_never_worse_than_bfgs_from_ones_on_growth_models(name: str, search: str) -> None:
    code = GROWTH_MODELS[name]
    X, y = _growth_data(code)
    ref = _llmsr_bfgs(code, X, y)
    extra = {"subsample": 25, "fit_options": CRIPPLED} if search == "crippled" else {}
    _, loss = _run(code, X, y, **extra)
    assert loss <= ref.fun * (1 + 1e-6), (loss, ref.fun)


def test_never_worse_on_the_real_bactgrow_data(llmsr_data: Path) -> None:
    d = np.loadtxt(llmsr_data / "bactgrow" / "train.csv", delimiter=",", skiprows=1)
    X, y = d[:, :4], d[:, 4]
    for name, code in GROWTH_MODELS.items():
        ref = _llmsr_bfgs(code, X, y)
        _, loss = _run(code, X, y)
        if np.isfinite(ref.fun):
            assert loss <= ref.fun * (1 + 1e-6), (name, loss, ref.fun)
