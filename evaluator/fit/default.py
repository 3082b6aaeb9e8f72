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

from eqforge.evaluator.fit.llmsr import bfgs_from_ones
from eqforge.evaluator.fit.options import FitOptions, FitResult, ManyModel, OutOfTime, RowModel, mse
from eqforge.evaluator.fit.projection import _affine_params, _Projected
from eqforge.evaluator.fit.scipy_lean import minimize
from eqforge.evaluator.fit.search import _candidates, _lm, _subsample


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
    if ref.loss < res.loss:
        res.notes.append(f"LLM-SR's BFGS from ones is lower ({ref.loss:.6g} < {res.loss:.6g})")
        return FitResult(ref.params, ref.loss, res.nfev, res.starts, res.method + "+llmsr-bfgs", res.notes)
    return res


def _fit_default(model: RowModel, model_many: ManyModel | None, y: np.ndarray, opts: FitOptions,
                 model_each: ManyModel | None = None,
                 ) -> FitResult:
    start_time = time.perf_counter()
    budget = opts.time_budget
    idx = np.array(opts.indices if opts.indices is not None else range(opts.n_params), int)
    full0 = np.ones(opts.n_params)
    n = y.shape[0]
    if idx.size == 0:
        return FitResult(full0, mse(model(full0, None), y), 1, 0, "none")
    rng = np.random.default_rng(opts.seed)
    anchors = np.unique(np.array([a for a in opts.anchors if 0 <= a < n]
                                 + [int(np.argmin(y)), int(np.argmax(y))], int))
    rows = _subsample(n, opts.subsample, anchors, rng) if opts.subsample and n > opts.subsample else None
    spread = float(np.std(y)) + float(np.max(np.abs(y)))
    penalty = 1e3 * (spread if spread > 0 and np.isfinite(spread) else 1.0)
    var_y = float(np.var(y))
    atol = opts.agree_atol * (var_y if var_y > 0 else 1.0)
    notes: list[str] = []
    k = idx.size
    objectives: list[_Projected] = []

    def agree(a: float, b: float) -> bool:
        return abs(a - b) <= opts.agree_rtol * max(abs(a), abs(b)) + atol

    def objective(on_rows: np.ndarray | None, lin: np.ndarray, until: float, exact: bool = False) -> _Projected:
        # The exact objective checks results: it evaluates one vector at a time.
        obj = _Projected(model, None if exact else model_many, y, on_rows, full0, idx, lin, penalty,
                         start_time + until, exact)
        obj.speculate = opts.speculate and on_rows is not None and on_rows.size <= 2000
        obj.model_each = model_each
        objectives.append(obj)
        return obj

    # 0. which params are affine (solved exactly) and which are searched
    probe = objective(rows, np.empty(0, int), 0.6 * budget)
    try:
        lin = _affine_params(probe, np.ones(k), rng)
    except OutOfTime:
        lin = np.empty(0, int)
    sub = objective(rows, lin, 0.6 * budget)
    sub.model_many = probe.model_many  # None once the program has shown it cannot batch
    free = sub.free
    m = n if rows is None else rows.size
    screen = sub
    if opts.screen_rows and m > opts.screen_rows:
        pick = _subsample(m, opts.screen_rows, np.searchsorted(rows, anchors) if rows is not None else anchors, rng)
        screen = objective(pick if rows is None else rows[pick], lin, 0.6 * budget)
        screen.model_many = sub.model_many
    notes.append(f"affine {lin.size}/{k}")

    # 1. screen the starts, then LM from the most promising few (and from ones over all used
    #    params), until two runs agree on the minimum.
    found: list[tuple[float, np.ndarray]] = []  # (loss on the subsample, theta) of LM runs
    ones_seed = np.ones(k)  # where LLM-SR's own start (ones, all used params) has got to
    runs = 0
    best_loss, best_theta = np.inf, np.ones(free.size)
    try:
        cands, lead = _candidates(opts, idx, free, rng)
        if free.size == 0:
            order = [cands[0]]
        else:
            values = screen.losses(cands)
            ranked = [int(i) for i in np.argsort(values, kind="stable") if np.isfinite(values[i])]
            chosen = [i for i in range(lead) if np.isfinite(values[i])]
            chosen += [i for i in ranked if i >= lead][: max(1, opts.starts - lead)]
            chosen.sort(key=lambda i: (values[i], i))
            order = [cands[i] for i in chosen]
            if order:
                best_theta = order[0]
        if lin.size and free.size and opts.plain_start:
            # roughly LLM-SR's path: all used params descend together from ones
            plain = objective(rows, np.empty(0, int), 0.6 * budget)
            plain.model_many = sub.model_many
            try:
                q, _, _ = _lm(plain, np.ones(k), tol=opts.explore_tol, max_nfev=opts.explore_iters * (k + 1))
                runs += 1
                ones_seed = q
                found.append((sub.loss(q[free]), q[free]))
                best_loss, best_theta = found[-1]
            except (ValueError, np.linalg.LinAlgError):
                pass
        for theta0 in order:
            if runs > 1 and time.perf_counter() > start_time + 0.4 * budget:
                notes.append("time budget: fewer starts")
                break
            runs += 1
            try:
                theta, value, _ = _lm(sub, theta0, tol=opts.explore_tol,
                                      max_nfev=opts.explore_iters * (free.size + 1))
            except (ValueError, np.linalg.LinAlgError):
                theta, value = theta0, sub.loss(theta0)
            found.append((value, theta))
            if lin.size == 0 and np.array_equal(theta0, np.ones(free.size)):
                ones_seed = theta  # no affine params: the free params are all the used ones
            if value < best_loss:
                best_loss, best_theta = value, theta
            if runs >= 2 and sum(agree(v, best_loss) for v, _ in found) >= 2:
                break
    except OutOfTime:
        notes.append("time budget reached while exploring")

    # 2. polish on all rows. Subsample losses rank minima a few percent apart only roughly,
    #    so the distinct ones within ``runner_up`` of the best are re-ranked on more rows
    #    (``polish_rows``, or all) first. With many rows, most of the polishing happens on
    #    ``polish_rows`` of them and all rows see the last steps. A polished point that is
    #    not finite on every row gives way to the others.
    found.sort(key=lambda fv: fv[0])
    polish = [best_theta]
    for value, theta in found[1:]:
        if value > best_loss * opts.runner_up + atol:
            break
        if not any(agree(value, v) for v, t in found if any(t is q for q in polish)):
            polish.append(theta)
    spare = [theta for _, theta in found if not any(theta is t for t in polish)] + [np.ones(free.size)]
    full_obj = objective(None, lin, budget)
    full_obj.model_many = sub.model_many
    mid = None
    if opts.polish_rows and n > 2 * opts.polish_rows:
        mid = objective(_subsample(n, opts.polish_rows, anchors, rng), lin, budget)
        mid.model_many = sub.model_many
    final = objective(None, lin, np.inf, exact=True)  # never cut short: a few evaluations
    if len(polish) > 1 and rows is not None:
        try:
            values = (mid if mid is not None else full_obj).losses(np.array(polish))
            order_full = [int(i) for i in np.argsort(values, kind="stable")]
            # a near tie (within ``tie``) is decided by polishing both
            ties = [i for i in order_full[1:2] if values[i] <= values[order_full[0]] * (1 + opts.tie)]
            lead_ids = order_full[:1] + ties
            spare = [polish[i] for i in order_full if i not in lead_ids] + spare
            polish = [polish[i] for i in lead_ids]
        except OutOfTime:
            polish = polish[:1]
    best: tuple[float, np.ndarray] | None = None
    best_finite = False
    queue = list(polish)
    while queue:
        theta = queue.pop(0)
        # Most of the polishing happens on a larger subsample when there are many rows; all
        # rows then only see the last few steps.
        stages = [(mid, max(opts.polish_min, opts.polish_iters * (free.size + 1))),
                  (full_obj, opts.final_iters * (free.size + 1))] if mid is not None else \
                 [(full_obj, max(opts.polish_min, opts.polish_iters * (free.size + 1)))]
        for obj, evals in stages:
            try:
                theta, _, _ = _lm(obj, theta, tol=opts.polish_tol, max_nfev=evals)
            except (ValueError, np.linalg.LinAlgError):
                pass
            except OutOfTime:
                notes.append("time budget reached while polishing")
                break
        c, r, ok, _ = final._state(theta)
        value, finite = float(np.mean(r * r)), bool(ok.all())
        if best is None or (finite, -value) > (best_finite, -best[0]):
            best, best_finite = (value, final.expand(theta, c)), finite
        if not queue and not best_finite and spare and time.perf_counter() < start_time + budget:
            notes.append("non-finite on some rows: polishing another minimum")
            queue.append(spare.pop(0))
    assert best is not None
    p = best[1]

    # 3. the true loss at the expanded params; if the program was not affine where it
    #    seemed to be, finish with a plain least-squares fit of all used params.
    method = "varpro-lm" if lin.size else "lm"
    plain_full = objective(None, np.empty(0, int), budget)
    true_loss = objective(None, np.empty(0, int), np.inf, exact=True).plain_loss(p)
    try:
        if lin.size and not agree(true_loss, best[0]) and true_loss > best[0]:
            notes.append("projection mismatch: plain refit")
            q, value, _ = _lm(plain_full, p, tol=opts.polish_tol, max_nfev=opts.polish_iters * 4 * (k + 1))
            if value < true_loss:
                p, true_loss = q, value
                method += "+lm"
        if not found and free.size:
            # least squares could not run at all: BFGS on the mean squared error
            res = minimize(plain_full.plain_loss, p, method="BFGS", options={"maxiter": 100})
            if np.isfinite(res.fun) and res.fun < true_loss:
                p, true_loss = np.asarray(res.x, float), float(res.fun)
                method += "+bfgs"
    except (ValueError, np.linalg.LinAlgError):
        pass
    except OutOfTime:
        notes.append("time budget reached in the final refit")

    # 4. LLM-SR's own basin, always: descent from ones over all used params, polished to
    #    convergence on all rows (the subsample and the early agreement of other starts can
    #    hide that this basin is the better one on all rows). Kept when it is lower.
    if opts.ones_basin and free.size and true_loss > atol and time.perf_counter() < start_time + budget:
        try:
            q = ones_seed
            evals = max(opts.polish_min, opts.polish_iters * (k + 1))
            if mid is not None:
                plain_mid = objective(mid.rows, np.empty(0, int), budget)
                plain_mid.model_many = sub.model_many
                q, _, _ = _lm(plain_mid, q, tol=opts.polish_tol, max_nfev=evals)
            plain_full.model_many = sub.model_many
            q, _, _ = _lm(plain_full, q, tol=opts.polish_tol, max_nfev=evals)
            value = objective(None, np.empty(0, int), np.inf, exact=True).plain_loss(q)
            if value < true_loss:
                p, true_loss = q, value
                method += "+ones"
        except (ValueError, np.linalg.LinAlgError):
            pass
        except OutOfTime:
            notes.append("time budget reached polishing the start from ones")
    full = full0.copy()
    full[idx] = p
    loss = mse(model(full, None), y)
    if model_many is not None:
        notes.append("batched" if sub.model_many is not None else "unbatched")
    notes.append(f"{runs} runs, {time.perf_counter() - start_time:.3f} s")
    return FitResult(full, loss, sum(o.nfev for o in objectives) + 1, runs, method, notes)
