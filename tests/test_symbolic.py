"""Programs to closed forms, complexity, the Pareto front and symbolic recovery (issue #6)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import sympy as sp

from eqforge.evaluator import analysis as symbolic
from eqforge.evaluator.analysis import (
    SymbolicWorker,
    analyse_run,
    closed_form,
    complexity,
    recovery,
    to_sympy,
)
from eqforge.evaluator.analysis import worker as symbolic_worker
from eqforge.evaluator.analysis.pareto import pareto_front

XV = ["x", "v"]
TRUTH = "0.8*sin(x) - x*cos(x) - 0.2*x**3 - 0.5*v**3 - 0.5*x*v"
LAW = ("def equation(x, v, params):\n    return params[0]*np.sin(x) + params[1]*x*np.cos(x) "
       "+ params[2]*x**3 + params[3]*v**3 + params[4]*x*v\n")
FIT = [0.8000000000000267, -1.0000000000000266, -0.20000000000000856, -0.4999999999999998,
       -0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
x, v = sp.symbols("x v", real=True)
c = sp.symbols("c0:10", real=True)


def body(src: str) -> str:
    lines = "\n".join("    " + ln for ln in src.strip("\n").splitlines())
    return f"def equation(x, v, params):\n{lines}\n"


# -- conversion -----------------------------------------------------------------------------


def test_the_oscillator_law() -> None:
    cf = closed_form(LAW, XV, FIT)
    assert cf.ok
    assert cf.skeleton_text == "c0*sin(x) + c1*x*cos(x) + c2*x**3 + c3*v**3 + c4*v*x"
    assert cf.text == "-0.5*v**3 - 0.5*v*x - 0.2*x**3 - x*cos(x) + 0.8*sin(x)"
    assert cf.latex == ("- 0.5 v^{3} - 0.5 v x - 0.2 x^{3} - x \\cos{\\left(x \\right)} "
                        "+ 0.8 \\sin{\\left(x \\right)}")
    assert cf.complexity == 29
    assert cf.constants == {f"c{i}": FIT[i] for i in range(5)}  # only the params used
    data = cf.to_json()
    assert data["convertible"] and data["skeleton_latex"].startswith("c_{0} \\sin")


@pytest.mark.parametrize("src, expected", [
    # intermediate variables, augmented assignment, annotations
    ("a = params[0] * x\nb: float = params[1]\na += b * v\nreturn a", c[0] * x + c[1] * v),
    # unpacking params
    ("k, m = params[0], params[1]\nreturn k * x + m", c[0] * x + c[1]),
    ("k, m, *rest = params\nreturn k * np.exp(-m * x)", c[0] * sp.exp(-c[1] * x)),
    ("p = params[2:4]\nreturn p[0] * x + p[1]", c[2] * x + c[3]),
    ("return params[-1] * v", c[9] * v),
    ("p = np.asarray(params)\nw = np.array([x, v])\nreturn p[0] * w[1]", c[0] * v),
    # helpers, lambdas, nested defs, defaults, keywords
    ("def sq(z, k=2):\n    return z**k\nreturn params[0] * sq(x) + sq(v, k=3)",
     c[0] * x**2 + v**3),
    ("f = lambda z: params[0] * np.sin(z)\nreturn f(x) + f(v)",
     c[0] * sp.sin(x) + c[0] * sp.sin(v)),
    # imports inside, aliases, math module, constants
    ("import numpy as jnp\nfrom numpy import exp as e\nreturn jnp.sqrt(x) * e(v) * np.pi",
     sp.pi * sp.sqrt(x) * sp.exp(v)),
    ("import math\nreturn math.cos(x) + math.e", sp.cos(x) + sp.E),
    ("from scipy.special import erf\nreturn erf(x)", sp.erf(x)),
    # numpy functions
    ("return np.power(x, 3) + np.square(v) + np.abs(x)", x**3 + v**2 + sp.Abs(x)),
    ("return np.arctan2(v, x) + np.log1p(x) + np.tanh(v)",
     sp.atan2(v, x) + sp.log(1 + x) + sp.tanh(v)),
    ("return np.maximum(x, 0) + np.clip(v, -1, 1)",
     sp.Max(x, 0) + sp.Min(sp.Max(v, -1), 1)),
    ("return np.where(x > 0, params[0] * x, params[1] * x)",
     sp.Piecewise((c[0] * x, x > 0), (c[1] * x, True))),
    ("return np.asarray(x * 0.5, dtype=float) + np.ones_like(v)", x / 2 + 1),
    # a branch decided without the data is fine
    ("if 2 > 1:\n    y = x\nelse:\n    y = v\nreturn y", x),
    ("return params[0]", c[0]),
    ('"""docstring"""\npass\nreturn x / v', x / v),
])
def test_converts(src: str, expected: sp.Expr) -> None:
    got = to_sympy(body(src), XV, n_params=10)
    assert sp.simplify(got - expected) == 0, (got, expected)


def test_module_level_helpers_and_typed_signature() -> None:
    code = ("import numpy as np\nG = 9.81\n\ndef damp(v, k):\n    return -k * v\n\n"
            "def equation(x: np.ndarray, v: np.ndarray, params: np.ndarray) -> np.ndarray:\n"
            "    return G * params[0] * x + damp(v, params[1])\n")
    assert to_sympy(code, XV) == sp.Float(9.81) * c[0] * x - c[1] * v


@pytest.mark.parametrize("src, reason", [
    ("out = 0\nfor i in range(3):\n    out = out + params[i] * x\nreturn out", "loop"),
    ("while True:\n    pass", "loop"),
    ("return sum([params[i] * x for i in range(2)])", "loop"),
    ("if x > 0:\n    return x\nreturn v", "branch"),
    ("if params[0] > 0:\n    return x\nreturn v", "branch"),
    ("return x if v > 0 else -x", "branch"),
    ("return params[0] * x[0]", "indexing"),
    ("return np.sum(x) * params[0]", "unknown-call"),
    ("return mystery(x)", "unknown-name"),
    ("import os\nos.system('touch /tmp/x')\nreturn x", "side-effect"),
    ("return np.exp(x, out=x)", "unsupported"),
    ("try:\n    return x\nexcept Exception:\n    return v", "unsupported"),
    ("return 10**10**10 * x", "numeric"),
    ("return x / 0", "numeric"),
    ("i = x\nreturn params[i] * x", "params"),
    ("return params * x", "params"),
    ("return 'text'", "unsupported"),
    ("return x > 0", "unsupported"),
    ("def f(n):\n    return f(n)\nreturn f(x)", "recursion"),
])
def test_not_convertible(src: str, reason: str) -> None:
    cf = closed_form(body(src), XV, [1.0] * 10)
    assert not cf.ok
    assert cf.reason == reason, (cf.reason, cf.detail)
    assert cf.to_json() == {"convertible": False, "reason": reason, "detail": cf.detail}


def test_bounded_on_blowups() -> None:
    """Inlining can grow a tree exponentially: stopped by the node cap, quickly."""
    src = "t = x + params[0]\n" + "t = t * t + t * v + 1\n" * 40 + "return t"
    start = time.monotonic()
    cf = closed_form(body(src), XV, [1.0] * 10)
    assert not cf.ok and cf.reason == "too-large"
    assert time.monotonic() - start < 5
    assert closed_form("x" * 0 + "def equation(x, v, params):\n    return " + "+".join(
        ["x"] * 2000) + "\n", XV).reason == "too-large"


def test_never_executes_the_candidate(tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    code = (f"import os\nos.system('touch {marker}')\nopen('{marker}', 'w')\n"
            f"__import__('os').system('touch {marker}')\n\n"
            f"def equation(x, v, params):\n    open('{marker}', 'w').write('x')\n"
            f"    return __import__('os').system('touch {marker}') + params[0] * x\n")
    cf = closed_form(code, XV, [1.0])
    assert not cf.ok
    assert not marker.exists()


def test_hostile_corpus_is_only_parsed(hostile_programs: list[dict]) -> None:
    markers = {p["marker"] for p in hostile_programs
               if p.get("marker") and str(p["marker"]).startswith("/tmp/")
               and not os.path.exists(p["marker"])}
    start = time.monotonic()
    for p in hostile_programs:
        closed_form(p["code"], XV, [1.0] * 10)  # never raises, never runs anything
    assert time.monotonic() - start < 10
    assert not any(os.path.exists(m) for m in markers)


def test_corpus_programs_convert_except_loops(corpus_programs: list[dict]) -> None:
    names = {"oscillator1": ["x", "v"], "oscillator2": ["t", "x", "v"],
             "bactgrow": ["b", "s", "temp", "pH"], "stressstrain": ["strain", "temp"]}
    for p in corpus_programs:
        if p["kind"] not in ("valid", "slow"):
            continue
        cf = closed_form(p["code"], names[p["problem"]], [0.5] * 10)
        if p["kind"] == "slow":
            assert cf.reason == "loop", p["id"]
        else:
            assert cf.ok, (p["id"], cf.reason, cf.detail)
            assert cf.complexity and cf.complexity > 1


# -- complexity -----------------------------------------------------------------------------


@pytest.mark.parametrize("expr, n", [
    (x, 1), (x + v, 3), (x - v, 3), (x / v, 3), (-x, 2), (2 * x, 3), (1 / x, 3),
    (sp.sqrt(x), 2), (sp.sin(x), 2), (x**2, 3), (x**-2, 5), (x * v / 2, 5),
    (c[0] * sp.exp(-c[1] * x), 7), (sp.Max(x, v, 0), 5), (x + v - 2 * x * v, 9),
])
def test_complexity_counts_like_pysr(expr: sp.Expr, n: int) -> None:
    assert complexity(expr) == n


def test_complexity_cap() -> None:
    expr = sp.Add(*[sp.Symbol(f"z{i}") for i in range(200)])
    with pytest.raises(symbolic.NotConvertible):
        complexity(expr, cap=50)


# -- Pareto front ---------------------------------------------------------------------------


def test_pareto_front() -> None:
    items = [("a", 5, 0.5), ("b", 3, 0.9), ("c", 5, 0.4), ("d", 9, 0.45), ("e", 12, 0.01),
             ("f", 1, None), ("g", None, 0.0), ("h", 3, 0.9)]
    front = pareto_front(items, lambda t: t[1], lambda t: t[2])
    assert [t[0] for t in front] == ["b", "c", "e"]
    assert pareto_front([], lambda t: 0, lambda t: 0.0) == []


# -- recovery -------------------------------------------------------------------------------


def test_recovered_up_to_constants() -> None:
    rec = recovery(closed_form(LAW, XV, FIT), TRUTH, XV)
    assert rec.recovered, rec.detail
    assert rec.max_constant_error is not None and rec.max_constant_error < 1e-12


def test_recovered_with_other_skeleton_shapes() -> None:
    # constants inside functions, a product of constants, an extra term fitted to ~0
    code = body("k = params[5] * params[6]\n"
                "return k * np.sin(params[1] * x) - x * np.cos(x) + params[2] * x**3 "
                "+ params[3] * v**3 + params[4] * x * v + params[7] * v**2")
    params = [0.0, 1.0000001, -0.2, -0.5, -0.5, 2.0, 0.4, 1e-9, 0.0, 0.0]
    rec = recovery(closed_form(code, XV, params), TRUTH, XV)
    assert rec.recovered, rec.detail


def test_not_recovered() -> None:
    wrong = list(FIT)
    wrong[0] = 0.7
    rec = recovery(closed_form(LAW, XV, wrong), TRUTH, XV)
    assert not rec.recovered and "0.7" in rec.detail
    other = body("return params[0] * np.sin(x) + params[1] * v")
    assert not recovery(closed_form(other, XV, [0.8, -0.5]), TRUTH, XV).recovered
    loop = body("for i in range(2):\n    pass\nreturn x")
    assert "no closed form" in recovery(closed_form(loop, XV, [1.0]), TRUTH, XV).detail
    assert "not understood" in recovery(closed_form(LAW, XV, FIT), "foo(x)", XV).detail


def test_recovery_of_a_trig_identity() -> None:
    code = body("return params[0] * np.sin(x + np.pi / 2)")
    rec = recovery(closed_form(code, XV, [2.0]), "2*cos(x)", XV)
    assert rec.recovered, rec.detail


# -- bounded work in a helper process ----------------------------------------------------------


def _slow(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="the test injects an operation into a forked helper")
def test_worker_deadline_kills_and_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(symbolic_worker._OPS, "slow", _slow)
    with SymbolicWorker() as worker:
        start = time.monotonic()
        assert worker.call("slow", 30.0, timeout=0.5) is None
        assert time.monotonic() - start < 5
        assert worker.timeouts == 1
        cf = worker.call("convert", LAW, XV, FIT, timeout=10)
        assert cf.ok and cf.complexity == 29
        simpler = worker.call("simplify", closed_form(
            body("return params[0] * np.sin(x)**2 + params[0] * np.cos(x)**2"), XV, [3.0]),
            [3.0], timeout=30)
        assert simpler.simplified and simpler.text == "3"
        assert worker.call("slow", 0.0, timeout=0) is None


def test_analyse_run_budget_and_duplicates() -> None:
    rec = {"ok": True, "program": LAW, "params": FIT, "score": -1e-30, "id": "s1", "index": 1,
           "program_key": "k1", "nmse": {"train": 1e-30}, "metrics": {}}
    dup = {**rec, "id": "s2", "index": 2, "duplicate_of": "s1"}
    bad = {**rec, "id": "s3", "index": 3, "ok": False, "program_key": "k3"}
    res = analyse_run([rec, dup, bad], XV, ground_truth=TRUTH, budget=30)
    assert [e.id for e in res.entries] == ["s1"] and res.pareto[0].id == "s1"
    assert res.best is not None and res.best.recovery.recovered
    skipped = analyse_run([rec], XV, budget=0)
    assert skipped.skipped == 1 and skipped.pareto == []
