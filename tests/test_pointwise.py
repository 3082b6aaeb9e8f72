"""The pointwise contract: a score means "this law, row by row" (issue #20, requirement 1).

Programs that read neighbouring rows, ranks, cumulative sums, column means or the number of
rows are refused with ``policy:row-coupling`` and never scored; honest programs keep their
scores; a problem that opts out (``pointwise = false``) says so in the fit record.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from eqforge.config import EvaluatorConfig
from eqforge.evaluator import pointwise
from eqforge.evaluator.evaluate import Evaluator
from eqforge.problems import load_problem
from eqforge.problems.library import make_oscillator
from eqforge.problems.spec import Problem

OSC1 = "def equation(x: np.ndarray, v: np.ndarray, params: np.ndarray) -> np.ndarray:\n"
OSC2 = "def equation(t: np.ndarray, x: np.ndarray, v: np.ndarray, params: np.ndarray) -> np.ndarray:\n"
HONEST1 = OSC1 + ("    return params[0] * np.sin(x) + params[1] * x * np.cos(x) + params[2] * x ** 3"
                  " + params[3] * v ** 3 + params[4] * x * v\n")
HONEST2 = OSC2 + ("    return params[0] * np.sin(t) + params[1] * v ** 3 + params[2] * x * v"
                  " + params[3] * x * np.exp(params[4] * x)\n")

# Each reads other rows than its own; (name, body) for a program over (x, v) or (t, x, v).
ATTACKS = {
    "gradient": "    return params[0] * np.gradient(v) + params[1] * x\n",
    "shifted-slices": "    d = np.concatenate([v[1:] - v[:-1], v[-1:] - v[-2:-1]])\n    return params[0] * d\n",
    "step-from-inputs": "    h = np.abs(np.diff(x)).mean()\n    return params[0] * np.gradient(v) / h\n",
    "rank": "    r = np.argsort(np.argsort(x)).astype(float)\n    return params[0] * r + params[1] * v\n",
    "cumsum": "    return params[0] * np.cumsum(v) + params[1] * x\n",
    "mean-centring": "    return params[0] * (x - x.mean()) + params[1] * v ** 3\n",
    "len-dependent": "    return params[0] * x + params[1] * v * (len(x) > 60)\n",
    "first-row": "    return params[0] * (x - x[0]) + params[1] * v\n",
    "call-counter": "    _n = np.sctypeDict.setdefault('eqf-calls', [0])\n    _n[0] += 1\n"
                    "    return params[0] * x + params[1] * v + _n[0]\n",
}
OSC2_ATTACKS = {  # the simulated oscillator2 has time as an input: a step from it
    "step-from-time": "    dt = np.diff(t).mean()\n    return params[0] * np.gradient(v) / dt\n",
    "sorted-by-time": "    o = np.argsort(t)\n    g = np.empty_like(v)\n    g[o] = np.gradient(v[o], t[o])\n"
                      "    return params[0] * g\n",
    "gradient": "    return params[0] * np.gradient(v, t)\n",
}


def _config() -> EvaluatorConfig:
    return EvaluatorConfig(workers=1, timeout=20.0)


def _assert_refused(problem: Problem, sig: str, attacks: dict[str, str], honest: str) -> None:
    with Evaluator(problem, _config()) as ev:
        names = list(attacks)
        results = ev.evaluate_many([honest] + [sig + attacks[k] for k in names])
    assert results[0].ok, (results[0].error, results[0].detail)
    assert results[0].fit.get("pointwise") is True
    wrong = {k: (r.error, r.detail, r.nmse) for k, r in zip(names, results[1:], strict=True)
             if r.error != pointwise.REASON}
    assert wrong == {}, wrong
    for r in results[1:]:
        assert r.score is None and "\n" not in r.detail and r.detail


def test_attacks_on_llmsr_oscillator1_are_row_coupling(llmsr_data: Path) -> None:
    _assert_refused(load_problem("oscillator1", data=llmsr_data / "oscillator1"), OSC1, ATTACKS, HONEST1)


@pytest.mark.slow
def test_attacks_on_simulated_oscillator2_are_row_coupling() -> None:
    attacks = {**OSC2_ATTACKS, **{f"osc1-{k}": body for k, body in ATTACKS.items()}}
    _assert_refused(make_oscillator("oscillator2"), OSC2, attacks, HONEST2)


# Answers rows it has seen in a small call honestly, cheats (neighbouring rows) elsewhere:
# probes in one process pass; the two processes, with different probes, disagree.
MEMO = OSC1.replace("params: np.ndarray)", "params: np.ndarray, _seen=[])") + (
    "    honest = params[0] * np.sin(x) + params[1] * v\n"
    "    if len(x) < 64:\n"
    "        _seen.extend(x.tolist())\n"
    "        return honest\n"
    "    known = np.isin(x, np.array(_seen + [np.inf]))\n"
    "    return np.where(known, honest, params[2] * np.gradient(v))\n")


def test_a_program_that_remembers_probed_rows_is_caught_across_processes() -> None:
    with Evaluator(make_oscillator("oscillator1"), _config()) as ev:
        res = ev.evaluate_many([MEMO])[0]
    assert res.error == pointwise.REASON and "two processes" in res.detail, (res.error, res.detail)


def test_an_opted_out_problem_scores_column_models_and_says_so() -> None:
    base = make_oscillator("oscillator1")
    problem = Problem(base.spec.model_copy(update={"pointwise": False}), base.splits)
    with Evaluator(problem, _config()) as ev:
        res = ev.evaluate_many([OSC1 + ATTACKS["mean-centring"]])[0]
    assert res.ok and res.fit["pointwise"] is False
    assert problem.summary()["pointwise"] is False and "pointwise" not in base.summary()


def test_every_builtin_problem_is_pointwise() -> None:
    from eqforge.problems.builtin import builtin_spec, builtin_spec_names

    names = builtin_spec_names()
    assert names and all(builtin_spec(n).pointwise for n in names)  # type: ignore[union-attr]


def test_agree_tolerates_float_noise_only() -> None:
    a = np.array([1.0, -2.0, np.nan, np.inf, 0.0, 1e-20])
    assert pointwise.agree(a, a.copy())
    assert pointwise.agree(a, a * (1 + 1e-12))
    assert not pointwise.agree(a, a * (1 + 1e-6))
    assert not pointwise.agree(a, np.where(np.isnan(a), 0.0, a))  # NaN must stay NaN
    assert not pointwise.agree(a, np.where(np.isinf(a), -np.inf, a))  # +inf is not -inf
    assert not pointwise.agree(a[:3], a[:4])


def test_orders_are_fresh_and_mapped_back() -> None:
    rng = pointwise.entropy_rng()
    rows = np.arange(100)
    a, b = pointwise.show(rows, rng), pointwise.show(rows, rng)
    assert not np.array_equal(a.sent, b.sent) and not np.array_equal(a.sent, rows)
    values = rows[a.sent].astype(float) * 2  # a "program" answering in the shown order
    assert np.array_equal(a.back(values), rows * 2.0)
    same = pointwise.show(rows, rng, hidden=False)
    assert np.array_equal(same.sent, rows)
    probe = pointwise.probe_rows(1000, rng)
    assert pointwise.PROBE_MIN <= probe.size <= pointwise.PROBE_MAX and np.unique(probe).size == probe.size


@pytest.mark.slow
def test_honest_corpus_has_no_row_coupling(corpus_programs: list[dict], llmsr_data: Path) -> None:
    """0 false rejections: every valid program of the shared corpus, on its own problem."""
    valid = [p for p in corpus_programs if p["kind"] == "valid"]
    bad = {}
    for name in sorted({p["problem"] for p in valid}):
        items = [p for p in valid if p["problem"] == name]
        with Evaluator(load_problem(name, data=llmsr_data / name), EvaluatorConfig(workers=2)) as ev:
            results = ev.evaluate_many([p["code"] for p in items])
        bad.update({p["id"]: r.detail for p, r in zip(items, results, strict=True) if r.error == pointwise.REASON})
    assert bad == {}, bad


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="already an ordinary user: the other tests are the check")
def test_as_an_ordinary_user(shared_dir: Path) -> None:
    """The contract's attacks again as ``nobody``: the checks are trusted code, so they hold
    with the unprivileged walls too (no per-candidate uid, no cgroups)."""
    tests = Path(__file__).resolve().parent
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    env["EQFORGE_SHARED"] = str(shared_dir)
    cmd = [sys.executable, str(tests / "asuser.py"), sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-m", "not slow", str(tests / "test_pointwise.py")]
    proc = subprocess.run(cmd, cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True, timeout=900)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail.split("passed")[-1][:40], tail
