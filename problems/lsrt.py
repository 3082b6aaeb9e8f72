"""LSR-Transform-style problems: each built-in Feynman equation solved for another variable.

A model may recite ``F = m*a`` from memory; fewer have seen ``m = F/a`` posed as the task.
LLM-SRBench's LSR-Transform builds such problems by solving a Feynman equation for one of
its inputs; this module does the same, offline, from eqforge's own suite
(``problems.feynman``): for equation ``o = f(x1..xn)`` and input ``xk`` it solves
``o = f`` for ``xk`` with sympy and keeps a solution when it is

* found within the budget (``SOLVE_TIMEOUT`` seconds in a helper process, at most
  ``MAX_OPS`` operations in the solution),
* single-valued on the sampled range: a branch that reproduces ``xk`` (relative error 1e-6)
  on every row drawn from the original ranges (the shortest such, when several agree); a
  variable whose sign changes within its range (two branches, each right on half the rows)
  gives no problem. The branch must also reproduce at least half of the out-of-domain rows
  (the OOD split is drawn from those) — ``asin`` branches of an angle beyond pi/2 fail here —
  and
* written with functions the ground-truth reader knows.

The problem ``lsrt-<id>-<xk>`` has inputs ``x1..xn`` without ``xk`` plus ``o``, target
``xk``, and ground truth the kept branch. Its data are drawn as the original's — every
original input uniform on its range (the OOD split on its extended range) — and then
``o`` computed, so the inputs keep the original's physical meaning; OOD rows where the
branch is undefined are redrawn.

The derivation runs once, offline (``python -m eqforge.problems.lsrt``), and its result is
committed as ``problems/lsrt_table.py``; importing the problems reads that table, so listing
and loading take no sympy solve. A test re-derives the table and compares.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import sys
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from eqforge.problems.builtin import GENERATOR_INFO, register_generator
from eqforge.problems.feynman import BY_NAME, EQUATIONS, Equation, Var
from eqforge.problems.library import NAMESPACE, evaluate_expression
from eqforge.problems.spec import Problem, ProblemSpec, Split, Variable

log = logging.getLogger(__name__)

SOLVE_TIMEOUT = 10.0
MAX_OPS = 60
CHECK_ROWS = 400
RTOL = 1e-6
PREFIX = "lsrt-"


def _symbols(eq: Equation) -> dict[str, object]:
    import sympy as sp

    out: dict[str, object] = {v.name: sp.Symbol(v.name, positive=True) if v.lo > 0 else sp.Symbol(v.name, real=True)
                              for v in eq.inputs}
    out[eq.output.name] = sp.Symbol(eq.output.name, real=True)
    return out


def _solve(eq_id: str, var: str) -> list[str]:
    """Every solution of the equation for ``var`` (runs in a helper process)."""
    import sympy as sp

    eq = next(e for e in EQUATIONS if e.id == eq_id)
    syms = _symbols(eq)
    expr = sp.sympify(eq.expr, locals=syms)
    sols = sp.solve(sp.Eq(syms[eq.output.name], expr), syms[var], dict=False)
    return [sp.sstr(s) for s in sols if sp.count_ops(s) <= MAX_OPS and not s.has(sp.I)]


def _evaluate(expr: str, cols: dict[str, np.ndarray]) -> np.ndarray | None:
    try:
        with np.errstate(all="ignore"):
            out = eval(expr, {"__builtins__": {}, **NAMESPACE}, dict(cols))  # noqa: S307 - sympy's own output
        return np.broadcast_to(np.asarray(out, dtype=float), next(iter(cols.values())).shape)
    except (NameError, TypeError, ValueError, ZeroDivisionError, SyntaxError):
        return None


def _draw(eq: Equation, rng: np.random.Generator, n: int, ood: bool) -> dict[str, np.ndarray]:
    cols = {}
    for v in eq.inputs:
        lo, hi = v.ood_range if ood else (v.lo, v.hi)
        cols[v.name] = rng.uniform(lo, hi, n)
    cols[eq.output.name] = np.broadcast_to(evaluate_expression(eq.expr, cols), (n,))
    return cols


def choose_branch(eq: Equation, var: str, solutions: list[str]) -> str | None:
    """The one branch that reproduces ``var`` on every in-range row, else None."""
    cols = _draw(eq, np.random.default_rng(12345), CHECK_ROWS, ood=False)
    if not np.all(np.isfinite(cols[eq.output.name])):
        return None
    given = {k: c for k, c in cols.items() if k != var}
    good = []
    for s in solutions:
        pred = _evaluate(s, given)
        if pred is None:
            continue
        ok = np.isfinite(pred) & (np.abs(pred - cols[var]) <= RTOL * np.maximum(np.abs(cols[var]), 1e-12))
        if ok.all() and _ood_share(eq, var, s) >= 0.5:
            good.append(s)
    return min(good, key=len) if good else None


def _ood_share(eq: Equation, var: str, solution: str) -> float:
    """Share of out-of-domain rows the branch reproduces (the OOD split is drawn from them)."""
    cols = _draw(eq, np.random.default_rng(54321), CHECK_ROWS, ood=True)
    pred = _evaluate(solution, {k: c for k, c in cols.items() if k != var})
    if pred is None:
        return 0.0
    ok = np.isfinite(pred) & (np.abs(pred - cols[var]) <= RTOL * np.maximum(np.abs(cols[var]), 1e-12))
    return float(np.mean(ok))


def derive(timeout: float = SOLVE_TIMEOUT) -> dict[str, dict[str, str]]:
    """``{eq_id: {var: ground truth}}`` for every kept problem (deterministic)."""
    table: dict[str, dict[str, str]] = {}
    ctx = mp.get_context("fork")
    for eq in EQUATIONS:
        if len(eq.inputs) < 1:
            continue
        for v in eq.inputs:
            with ctx.Pool(1) as pool:
                job = pool.apply_async(_solve, (eq.id, v.name))
                try:
                    sols = job.get(timeout=timeout)
                except mp.TimeoutError:
                    log.info("%s for %s: no solution within %.0f s", eq.id, v.name, timeout)
                    continue
                except Exception as exc:  # noqa: BLE001 - sympy raises NotImplementedError and others
                    log.info("%s for %s: %s", eq.id, v.name, exc)
                    continue
            branch = choose_branch(eq, v.name, sols)
            if branch is not None:
                table.setdefault(eq.id, {})[v.name] = branch
    return table


# -- problems ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transformed:
    eq: Equation
    var: str
    truth: str

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.eq.id}-{self.var}"

    @property
    def target(self) -> Var:
        return next(v for v in self.eq.inputs if v.name == self.var)

    @property
    def inputs(self) -> list[Var]:
        return [v for v in self.eq.inputs if v.name != self.var] + [self.eq.output]


@lru_cache(maxsize=1)
def transformed() -> dict[str, Transformed]:
    from eqforge.problems.lsrt_table import TABLE

    out = {}
    for eq_id, solved in TABLE.items():
        eq = BY_NAME[f"feynman-{eq_id}"]
        for var, truth in solved.items():
            t = Transformed(eq, var, truth)
            out[t.name] = t
    return out


def sample(t: Transformed, rng: np.random.Generator, n: int, ood: bool) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of (inputs, target) drawn from the original equation's ranges."""
    names = [v.name for v in t.inputs]
    xs, ys, have = [], [], 0
    for _ in range(50):
        cols = _draw(t.eq, rng, 2 * n, ood)
        pred = _evaluate(t.truth, {k: c for k, c in cols.items() if k != t.var})
        keep = np.all([np.isfinite(cols[k]) for k in names], axis=0) & np.isfinite(cols[t.var])
        if pred is not None:
            keep &= np.isfinite(pred) & (np.abs(pred - cols[t.var]) <= 1e-6 * np.maximum(np.abs(cols[t.var]), 1e-12))
        xs.append(np.column_stack([cols[k] for k in names])[keep])
        ys.append(cols[t.var][keep])
        have += int(keep.sum())
        if have >= n:
            break
    X, y = np.concatenate(xs)[:n], np.concatenate(ys)[:n]
    if len(y) < n:
        raise ValueError(f"{t.name}: the solved law is undefined on most of the sampled range")
    return X, y


def spec(t: Transformed, seed: int = 0) -> ProblemSpec:
    target = t.target
    names = [v.description for v in t.inputs]
    given = ", ".join(names[:-1]) + f", and {names[-1]}" if len(names) > 1 else names[0]
    return ProblemSpec(
        name=t.name,
        description=(f"{t.eq.context} Find the mathematical function skeleton that represents "
                     f"{target.description}, given data on {given}."),
        inputs=[Variable(name=v.name, description=v.description, unit=v.unit) for v in t.inputs],
        output=Variable(name=target.name, description=target.description, unit=target.unit),
        ground_truth=t.truth,
        split={"method": "sampled", "suite": "LSR-Transform style (eqforge Feynman suite solved for an input)",
               "from": t.eq.name, "solved_for": t.var, "seed": int(seed),
               "ood": "every original input on its extended range",
               **{f"range_{v.name}": f"{v.lo:g}..{v.hi:g} (ood {v.ood_range[0]:g}..{v.ood_range[1]:g})"
                  for v in t.eq.inputs}},
    )


ROWS = {"train": 1000, "test_id": 250, "test_ood": 250}


@lru_cache(maxsize=256)
def make_lsrt(name: str, seed: int = 0) -> Problem:
    t = transformed()[name]
    rng = np.random.default_rng([zlib.crc32(name.encode()), int(seed)])
    src = f"<sampled {name}, seed {seed}>"
    splits = {}
    for split, n in ROWS.items():
        X, y = sample(t, rng, n, split == "test_ood")
        X.setflags(write=False)
        y.setflags(write=False)
        splits[split] = Split(X, y, origin=f"{src} [{split}]")
    return Problem(spec(t, seed), splits, source=src)


def register() -> None:
    """Add every ``lsrt-`` problem to the built-in generators (once)."""
    if any(n.startswith(PREFIX) for n in GENERATOR_INFO):
        return
    for name, t in transformed().items():
        def generate(seed: int = 0, _name: str = name) -> Problem:
            return make_lsrt(_name, int(seed))

        register_generator(name, generate, f"Feynman {t.eq.id} solved for {t.var} (LSR-Transform style): "
                                           f"{t.var} = {t.truth}")


def write_table(path: str) -> dict[str, dict[str, str]]:
    table = derive()
    lines = ['"""Derived by ``python -m eqforge.problems.lsrt`` (problems/lsrt.py); do not edit."""', "",
             "TABLE: dict[str, dict[str, str]] = {"]
    for eq_id, solved in table.items():
        lines.append(f"    {eq_id!r}: {{")
        lines += [f"        {var!r}: {truth!r}," for var, truth in solved.items()]
        lines.append("    },")
    lines.append("}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return table


if __name__ == "__main__":  # pragma: no cover - the offline derivation
    logging.basicConfig(level=logging.INFO)
    target = sys.argv[1] if len(sys.argv) > 1 else __file__.replace("lsrt.py", "lsrt_table.py")
    result = write_table(target)
    print(f"{sum(len(v) for v in result.values())} problems from {len(result)} of {len(EQUATIONS)} equations")
