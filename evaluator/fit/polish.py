"""Polishing on all rows: the search's distinct minima re-ranked on more rows, the best
polished there and on the full training split, then checked against the plain (unprojected)
problem (steps 2 to 4 of ``fit.default``)."""

from __future__ import annotations

import time

import numpy as np

from eqforge.evaluator.fit.context import FitContext
from eqforge.evaluator.fit.options import OutOfTime
from eqforge.evaluator.fit.scipy_lean import minimize
from eqforge.evaluator.fit.search import Exploration, _lm, _subsample


def polish(ctx: FitContext, ex: Exploration) -> tuple[np.ndarray, float, str]:
    """The polished used-params vector, its true loss on all rows, and the method's name."""
    opts, rows, rng, anchors, notes = ctx.opts, ctx.rows, ctx.rng, ctx.anchors, ctx.notes
    n, k, budget, start_time, atol = ctx.n, ctx.k, ctx.budget, ctx.start_time, ctx.atol
    objective, agree = ctx.objective, ctx.agree
    lin, sub, free, found = ex.lin, ex.sub, ex.free, ex.found
    best_loss, best_theta, ones_seed = ex.best_loss, ex.best_theta, ex.ones_seed
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
    return p, true_loss, method
