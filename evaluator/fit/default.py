"""Fitting a program's constants to the training data.

Two procedures:

* ``llmsr`` — LLM-SR's exact procedure, kept for fair comparisons and ablations:
  ``minimize(lambda p: np.mean((equation(*X.T, p) - y)**2), [1.0]*10, method='BFGS')``,
  i.e. BFGS with finite-difference gradients from ones over all declared params.
* ``default`` — only the params the program reads are fitted:

  0. *LLM-SR's own procedure first, to convergence* (``fit.llmsr.bfgs_from_ones``): the same
     scipy BFGS iterates from ones on all training rows, with LLM-SR's own time limit (30 s)
     and never the search's budget, its finite-difference points batched into one round
     trip per point. The final answer is the lower of it and the search below, so the fit
     is never worse than LLM-SR's by construction.
  1. *Affine params are found numerically.* The program is a black box, but most candidate
     equations are sums of terms ``params[j] * g(x, other params)``. Each used param is
     tested for affinity, and the affine set is checked jointly at two points. Affine
     params are then solved for exactly by linear least squares at any value of the others
     (variable projection), so the nonlinear search runs only over the remaining params and
     every point it visits has its affine constants at their best.
  2. *Multi-start on a subsample.* Many starts — ones (LLM-SR's start), the parent's fitted
     values for shared indices, zeros, log-uniform random scales with random signs, and
     one-coordinate sweeps of ±50% around ones and the parent (oscillation frequencies have
     basins a few percent wide) — are screened by their projected loss on a few hundred
     rows. Levenberg–Marquardt then runs from the most promising few and from ones over all
     used params at once (roughly LLM-SR's path, whose minimum is sometimes a different
     one), stopping early once two runs agree.
  3. *Polish on all rows.* The distinct minima are re-ranked on a larger subsample (a few
     thousand rows) and the best (both, on a near tie) is polished there, then on the full
     training split. If it is not finite on every row (the subsample can miss the rows
     where, say, a power of a negative input is NaN), the others and ones are tried until
     one is. Should the program turn out not to be affine where it seemed, a plain
     least-squares fit of all used params finishes the job; BFGS on the mean squared error
     is the last resort when least squares cannot run at all.

  Non-finite predictions (overflowing exponentials, logs of negatives, powers of negative
  bases) are penalised residuals rather than errors, and a finite difference that steps
  into a non-finite region gives a zero derivative, so a fit is never ended by them.

  When the runner supplies ``model_many``, many parameter vectors are evaluated in one
  call of the program (inputs as columns, ``params[i]`` as rows: plain numpy broadcasting),
  which removes most of the per-call overhead; programs that do not broadcast so, or give
  different values that way, are evaluated one vector at a time.

This runs in the trusted zygote (``evaluator.runner``), next to the targets; every program
evaluation is a round trip to a candidate process. The reported score is recomputed by
trusted code from a fresh scoring process's predictions on the full training split.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace

import numpy as np

from eqforge.evaluator.fit.context import FitContext
from eqforge.evaluator.fit.llmsr import bfgs_from_ones
from eqforge.evaluator.fit.options import FitOptions, FitResult, ManyModel, RowModel, mse
from eqforge.evaluator.fit.polish import polish
from eqforge.evaluator.fit.search import explore


def fit_default(model: RowModel, y: np.ndarray, opts: FitOptions,
                model_many: ManyModel | None = None, model_each: ManyModel | None = None) -> FitResult:
    """LLM-SR's procedure run to convergence, then variable-projected multi-start least
    squares on the used params polished on all rows; the lower of the two."""
    start = time.perf_counter()
    total = opts.total_seconds if opts.total_seconds is not None else np.inf
    idx = tuple(opts.indices if opts.indices is not None else range(opts.n_params))
    ref = None
    if opts.llmsr_start and idx:
        each = model_each or (lambda P, rows: np.stack([model(p, rows) for p in P]))
        ref = bfgs_from_ones(each, y, opts.n_params, idx, start + min(opts.llmsr_seconds, total))
    left = total - (time.perf_counter() - start)
    if left < opts.time_budget:
        opts = replace(opts, time_budget=max(0.05 * opts.time_budget, left))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = _fit_default(model, model_many, y, opts, model_each)
    if ref is None:
        return res
    res.nfev += ref.nfev
    res.starts += 1
    res.notes.extend(ref.notes)
    if ref.loss < res.loss:
        res.notes.append(f"LLM-SR's BFGS from ones is lower ({ref.loss:.6g} < {res.loss:.6g})")
        return FitResult(ref.params, ref.loss, res.nfev, res.starts, res.method + "+llmsr-bfgs", res.notes)
    return res


def _fit_default(model: RowModel, model_many: ManyModel | None, y: np.ndarray, opts: FitOptions,
                 model_each: ManyModel | None = None,
                 ) -> FitResult:
    ctx = FitContext.build(model, model_many, y, opts, model_each)
    full0 = ctx.full0
    if ctx.idx.size == 0:
        return FitResult(full0, mse(model(full0, None), y), 1, 0, "none")
    ex = explore(ctx)
    p, _, method = polish(ctx, ex)
    full = full0.copy()
    full[ctx.idx] = p
    loss = mse(model(full, None), y)
    if model_many is not None:
        ctx.notes.append("batched" if ex.sub.model_many is not None else "unbatched")
    ctx.notes.append(f"{ex.runs} runs, {time.perf_counter() - ctx.start_time:.3f} s")
    return FitResult(full, loss, sum(o.nfev for o in ctx.objectives) + 1, ex.runs, method, ctx.notes)
