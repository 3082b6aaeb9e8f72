"""Built-in problems whose data the package makes itself (no download).

* ``oscillator1`` / ``oscillator2`` — LLM-SR's two nonlinear oscillators, integrated here
  with scipy's ``solve_ivp`` from LLM-SR's initial state x = v = 0.5 over 0 <= t <= 50. As
  in LLM-SR's data, the in-domain region (train and test_id, split at random) is the late
  part of the trajectory, 30 <= t <= 50, and the out-of-domain region is the early,
  larger-amplitude transient, 0 <= t <= 20. The acceleration column is the law evaluated at
  the integrated states, so the ground truth fits exactly. Given ``--data DIR`` (or
  ``$EQFORGE_DATA``), LLM-SR's own files are used instead (see ``registry.load_problem``).
* ``feynman-<id>`` — eqforge's own Feynman suite (``problems.feynman``), sampled on
  physically realistic ranges; test_ood samples every input on an extended range.
* ``aifeynman-<id>`` / ``srsd-<id>`` — the same equations as AI Feynman and SRSD sample them
  (``problems.feynman_suites``), for numbers comparable with those papers.

Generation is deterministic for a seed and cached in-process (``functools.lru_cache``);
arrays are read-only so a cached problem can be shared.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from eqforge.problems.builtin import builtin_spec, register_generator
from eqforge.problems.feynman import BY_NAME, EQUATIONS, Equation
from eqforge.problems.feynman_suites import DESCRIPTIONS, INT, LOG, LOGPM, OVERRIDES, SUITE_TITLES, SUITES, PubEquation
from eqforge.problems.spec import Problem, ProblemSpec, Split, Variable

FEYNMAN_ROWS = {"train": 1000, "test_id": 250, "test_ood": 250}

# numpy functions under their sympy names, for evaluating ground-truth expressions
NAMESPACE: dict[str, object] = {
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
    "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "tanh": np.tanh, "Abs": np.abs, "pi": np.pi,
}


def evaluate_expression(expr: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Evaluate a trusted ground-truth expression (this package's own) on named columns."""
    with np.errstate(all="ignore"):
        return np.asarray(eval(expr, {"__builtins__": {}, **NAMESPACE}, dict(columns)), dtype=float)  # noqa: S307


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.flags.writeable = False
    return a


def _rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])


# ---------------------------------------------------------------------------------------
# LLM-SR's oscillators, simulated
# ---------------------------------------------------------------------------------------

# ``m`` is numpy for arrays or math for the scalar right-hand side (several times faster).
def _osc1(t, x, v, m=np):  # type: ignore[no-untyped-def]
    return 0.8 * m.sin(x) - x * m.cos(x) - 0.2 * x**3 - 0.5 * v**3 - 0.5 * x * v


def _osc2(t, x, v, m=np):  # type: ignore[no-untyped-def]
    return 0.3 * m.sin(t) - 0.5 * v**3 - x * v - 5 * x * m.exp(0.5 * x)


OSCILLATORS: dict[str, dict] = {
    "oscillator1": {"accel": _osc1, "inputs": ("x", "v")},
    "oscillator2": {"accel": _osc2, "inputs": ("t", "x", "v")},
}
OSC_T_END = 50.0
OSC_ID = (30.0, 50.0)
OSC_OOD = (0.0, 20.0)
OSC_ROWS = {"id": 4000, "ood": 1000}
OSC_TEST_FRACTION = 0.25
OSC_STATE0 = (0.5, 0.5)


@lru_cache(maxsize=8)
def _trajectory(name: str) -> tuple[np.ndarray, ...]:
    """(t, x, v) on the in-domain and OOD time grids; independent of the seed."""
    from scipy.integrate import solve_ivp

    accel = OSCILLATORS[name]["accel"]
    def rhs(t: float, s: np.ndarray) -> tuple[float, float]:
        x, v = float(s[0]), float(s[1])
        return v, accel(t, x, v, math)

    sol = solve_ivp(rhs, (0.0, OSC_T_END), list(OSC_STATE0),
                    method="DOP853", rtol=1e-10, atol=1e-12, dense_output=True)
    t_id = np.linspace(*OSC_ID, OSC_ROWS["id"], endpoint=False)
    t_ood = np.linspace(*OSC_OOD, OSC_ROWS["ood"], endpoint=False)
    x_id, v_id = sol.sol(t_id)
    x_ood, v_ood = sol.sol(t_ood)
    return t_id, x_id, v_id, t_ood, x_ood, v_ood


@lru_cache(maxsize=64)
def make_oscillator(name: str, seed: int = 0) -> Problem:
    info = OSCILLATORS[name]
    accel, inputs = info["accel"], info["inputs"]
    t_id, x_id, v_id, t_ood, x_ood, v_ood = _trajectory(name)

    def table(t: np.ndarray, x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols = {"t": t, "x": x, "v": v}
        return np.column_stack([cols[k] for k in inputs]), accel(t, x, v)

    X_id, y_id = table(t_id, x_id, v_id)
    X_ood, y_ood = table(t_ood, x_ood, v_ood)
    perm = _rng(name, seed).permutation(len(y_id))
    n_test = int(round(OSC_TEST_FRACTION * len(y_id)))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    base = builtin_spec(name)
    assert base is not None, f"built-in definition {name}.toml is missing"
    spec = base.model_copy(update={"split": {
        "method": "simulated trajectory", "seed": int(seed), "solver": "scipy solve_ivp DOP853",
        "x0": OSC_STATE0[0], "v0": OSC_STATE0[1], "id_t": f"{OSC_ID[0]:g}..{OSC_ID[1]:g}",
        "ood_t": f"{OSC_OOD[0]:g}..{OSC_OOD[1]:g}", "test_fraction": OSC_TEST_FRACTION,
    }})
    src = f"<simulated {name}, seed {seed}>"
    splits = {
        "train": Split(_readonly(X_id[train]), _readonly(y_id[train]), origin=f"{src} [train]"),
        "test_id": Split(_readonly(X_id[test]), _readonly(y_id[test]), origin=f"{src} [test_id]"),
        "test_ood": Split(_readonly(X_ood), _readonly(y_ood), origin=f"{src} [test_ood]"),
    }
    return Problem(spec, splits, source=src)


# ---------------------------------------------------------------------------------------
# Feynman equations
# ---------------------------------------------------------------------------------------

def feynman_spec(eq: Equation, seed: int = 0) -> ProblemSpec:
    return ProblemSpec(
        name=eq.name,
        description=eq.description,
        inputs=[Variable(name=v.name, description=v.description, unit=v.unit) for v in eq.inputs],
        output=Variable(name=eq.output.name, description=eq.output.description, unit=eq.output.unit),
        ground_truth=eq.expr,
        split={"method": "sampled", "suite": "eqforge (physically realistic ranges)", "seed": int(seed),
               "sampling": "uniform per input",
               "ood": "every input on its extended range",
               **{f"range_{v.name}": f"{v.lo:g}..{v.hi:g} (ood {v.ood_range[0]:g}..{v.ood_range[1]:g})"
                  for v in eq.inputs}},
    )


@lru_cache(maxsize=256)
def make_feynman(name: str, seed: int = 0) -> Problem:
    eq = BY_NAME[name]
    rng = _rng(name, seed)
    src = f"<sampled {name}, seed {seed}>"
    splits = {}
    for split, n in FEYNMAN_ROWS.items():
        cols = {}
        for v in eq.inputs:
            lo, hi = v.ood_range if split == "test_ood" else (v.lo, v.hi)
            cols[v.name] = rng.uniform(lo, hi, n)
        y = evaluate_expression(eq.expr, cols)
        X = np.column_stack([cols[v.name] for v in eq.inputs])
        splits[split] = Split(_readonly(X), _readonly(np.broadcast_to(y, (n,))), origin=f"{src} [{split}]")
    return Problem(feynman_spec(eq, seed), splits, source=src)


# ---------------------------------------------------------------------------------------
# Published samplings (AI Feynman, SRSD)
# ---------------------------------------------------------------------------------------

EQ_BY_ID = {eq.id: eq for eq in EQUATIONS}
PUBLISHED: dict[str, tuple[str, PubEquation]] = {
    f"{suite}-{eq.id}": (suite, eq) for suite, eqs in SUITES.items() for eq in eqs
}


def _key(name: str) -> str:
    return name.replace("_", "").lower()


def _describe(suite: str, pub: PubEquation, name: str, own: Equation | None, *, output: bool = False) -> str:
    override = OVERRIDES.get((suite, pub.id), {}).get(name)
    if override:
        return override
    if output and own is not None:
        return own.output.description
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    if own is not None:
        for v in own.inputs:
            if _key(v.name) == _key(name):
                return v.description
    return f"the variable {name}"


def _draw(v, rng: np.random.Generator, n: int, ood: bool) -> np.ndarray:  # noqa: ANN001
    lo, hi = v.ood if ood else (v.lo, v.hi)
    if v.kind in (LOG, LOGPM):
        out = 10.0 ** rng.uniform(math.log10(lo), math.log10(hi), n)
        return out * rng.choice([-1.0, 1.0], n) if v.kind == LOGPM else out
    if v.kind == INT:
        return rng.integers(int(lo), max(int(lo) + 1, int(hi)), n).astype(float)
    return rng.uniform(lo, hi, n)


def _sample_rows(pub: PubEquation, rng: np.random.Generator, n: int, ood: bool) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows where the law is defined (finite), drawn in batches."""
    xs, ys, have = [], [], 0
    for _ in range(50):
        cols = {v.name: _draw(v, rng, 2 * n, ood) for v in pub.inputs}
        y = np.broadcast_to(evaluate_expression(pub.expr, cols), (2 * n,))
        keep = np.isfinite(y) & np.all([np.isfinite(c) for c in cols.values()], axis=0)
        xs.append(np.column_stack([cols[v.name] for v in pub.inputs])[keep])
        ys.append(y[keep])
        have += int(keep.sum())
        if have >= n:
            break
    X, y = np.concatenate(xs)[:n], np.concatenate(ys)[:n]
    if len(y) < n:
        raise ValueError(f"{pub.id}: the law is undefined on most of the sampled range")
    return X, y


def published_spec(suite: str, pub: PubEquation, seed: int = 0) -> ProblemSpec:
    own = EQ_BY_ID.get(pub.id)
    inputs = [Variable(name=v.name, description=_describe(suite, pub, v.name, own)) for v in pub.inputs]
    out_desc = _describe(suite, pub, pub.output, own, output=True)
    names = [v.description for v in inputs]
    given = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f", and {names[-1]}"
    context = (own.context + " ") if own is not None else ""
    kinds = {LOG: "log-uniform", LOGPM: "log-uniform, random sign", INT: "integers", "u": "uniform"}
    return ProblemSpec(
        name=f"{suite}-{pub.id}",
        description=(f"{context}Find the mathematical function skeleton that represents {out_desc}, "
                     f"given data on {given}."),
        inputs=inputs,
        output=Variable(name=pub.output, description=out_desc),
        ground_truth=pub.expr,
        split={"method": "sampled", "suite": SUITE_TITLES[suite], "table_id": pub.cite(), "seed": int(seed),
               "ood": "every input just beyond its published range (eqforge's addition)",
               **{f"range_{v.name}": f"{v.lo:g}..{v.hi:g} {kinds[v.kind]} (ood {v.ood[0]:g}..{v.ood[1]:g})"
                  for v in pub.inputs}},
    )


@lru_cache(maxsize=256)
def make_published(name: str, seed: int = 0) -> Problem:
    suite, pub = PUBLISHED[name]
    rng = _rng(name, seed)
    src = f"<sampled {name}, seed {seed}>"
    splits = {}
    for split, n in FEYNMAN_ROWS.items():
        X, y = _sample_rows(pub, rng, n, split == "test_ood")
        splits[split] = Split(_readonly(X), _readonly(y), origin=f"{src} [{split}]")
    return Problem(published_spec(suite, pub, seed), splits, source=src)


# ---------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------

def _bind(make: Callable[[str, int], Problem], name: str) -> Callable[[int], Problem]:
    def generate(seed: int = 0) -> Problem:
        return make(name, int(seed))

    generate.__name__ = f"make_{name}"
    return generate


def library_names() -> list[str]:
    return [*OSCILLATORS, *(eq.name for eq in EQUATIONS), *PUBLISHED]


def ranges(name: str) -> dict[str, tuple[tuple[float, float], tuple[float, float]]] | None:
    """Input -> (in-domain range, OOD range) for a Feynman problem; ``None`` otherwise
    (for a published suite: of the magnitude, where the suite samples a random sign)."""
    if name in PUBLISHED:
        return {v.name: ((v.lo, v.hi), v.ood) for v in PUBLISHED[name][1].inputs}
    eq = BY_NAME.get(name)
    if eq is None:
        return None
    return {v.name: ((v.lo, v.hi), v.ood_range) for v in eq.inputs}


for _name in OSCILLATORS:
    register_generator(
        _name, _bind(make_oscillator, _name),
        f"LLM-SR {_name}, simulated with solve_ivp (or LLM-SR's data with --data DIR)",
    )
for _eq in EQUATIONS:
    register_generator(_eq.name, _bind(make_feynman, _eq.name),
                       f"Feynman {_eq.id} (eqforge suite): {_eq.output.description} [{_eq.output.unit}]")
for _name, (_suite, _pub) in PUBLISHED.items():
    register_generator(_name, _bind(make_published, _name),
                       f"Feynman {_pub.id} ({_suite} sampling): {_pub.expr}")
