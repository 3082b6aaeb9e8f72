"""``operon:`` and ``gplearn:``: genetic-programming symbolic regression.

Operon (``pyoperon``) topped SRBench's black-box track; it runs here as a two-objective
search (R² and model length), and its final non-dominated set is the front recorded.
gplearn keeps no front: its one best program is recorded. Both read the run's seed; Operon
stops at the run's time budget (``max_time``), gplearn at its generation count (it has no
clock; the runner says so when it overruns). Their model strings are parsed with sympy over
the searchers' own input names (``X0``..), which the program writer maps back.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import sympy as sp

from eqforge.agents.classical.expr import input_symbols
from eqforge.agents.classical.spec import GplearnOptions, OperonOptions

log = logging.getLogger(__name__)


def _names(n: int) -> dict[str, sp.Symbol]:
    return {str(s): s for s in input_symbols(n)}


def fit_operon(X: np.ndarray, y: np.ndarray, opts: OperonOptions, *, seed: int, max_seconds: float | None,
               max_models: int) -> list[dict[str, Any]]:
    from pyoperon.sklearn import SymbolicRegressor

    reg = SymbolicRegressor(
        allowed_symbols=opts.symbols, objectives=["r2", "length"], population_size=opts.population,
        generations=opts.generations, max_evaluations=opts.max_evaluations, max_length=opts.max_length,
        n_threads=opts.threads, random_state=seed, optimizer="lm",
        max_time=None if max_seconds is None else max(1, math.floor(max_seconds)))
    reg.fit(X, y)
    names = _names(X.shape[1])
    out = []
    for d in sorted(reg.pareto_front_, key=lambda d: (d["complexity"], d["mean_squared_error"])):
        text = reg.get_model_string(d["tree"], 12, list(names))
        try:
            expr = sp.sympify(text, locals=names)
        except (sp.SympifyError, TypeError, ValueError) as exc:
            log.warning("operon: could not read model %r: %s", text[:200], exc)
            continue
        out.append({"expr": expr, "text": text, "complexity": int(d["complexity"]),
                    "train_mse": float(d["mean_squared_error"])})
    return _front(out)[:max_models]


_GPLEARN = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "neg": lambda a: -a, "inv": lambda a: 1 / a, "abs": sp.Abs,
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "sqrt": lambda a: sp.sqrt(sp.Abs(a)),
    "log": lambda a: sp.log(sp.Abs(a)), "max": sp.Max, "min": sp.Min,
}


def fit_gplearn(X: np.ndarray, y: np.ndarray, opts: GplearnOptions, *, seed: int, max_seconds: float | None,
                max_models: int) -> list[dict[str, Any]]:
    """gplearn's protected operators (division by ~0 gives 1, log/sqrt of |x|) are written as
    their plain forms (log and sqrt of |x|): the sandbox scores what the program computes."""
    from gplearn.genetic import SymbolicRegressor

    del max_seconds, max_models  # gplearn has no clock and one final program
    reg = SymbolicRegressor(population_size=opts.population, generations=opts.generations,
                            function_set=tuple(opts.functions.split(",")), parsimony_coefficient=opts.parsimony,
                            metric="mse", n_jobs=opts.jobs, random_state=seed)
    reg.fit(X, y)
    text = str(reg._program)
    expr = sp.sympify(text, locals={**_names(X.shape[1]), **_GPLEARN})
    mse = float(np.mean((reg.predict(X) - y) ** 2))
    return [{"expr": expr, "text": text, "complexity": int(reg._program.length_), "train_mse": mse}]


def _front(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the models no simpler one beats (sorted by complexity)."""
    out, best = [], math.inf
    for m in sorted(models, key=lambda m: (m["complexity"], m["train_mse"])):
        if m["train_mse"] < best:
            best = m["train_mse"]
            out.append(m)
    return out
