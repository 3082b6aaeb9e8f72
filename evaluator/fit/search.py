"""The search on a subsample: Levenberg–Marquardt runs, start points, row subsamples, and
``explore``, which runs them (steps 0 and 1 of ``fit.default``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from eqforge.evaluator.fit.options import FitOptions, OutOfTime
from eqforge.evaluator.fit.projection import _affine_params, _Projected
from eqforge.evaluator.fit.scipy_lean import least_squares

if TYPE_CHECKING:
    from eqforge.evaluator.fit.context import FitContext


def _lm(obj: _Projected, theta0: np.ndarray, *, tol: float, max_nfev: int) -> tuple[np.ndarray, float, bool]:
    """Levenberg–Marquardt over the free params from ``theta0``: (theta, loss, converged)."""
    if theta0.size == 0:
        return theta0, obj.loss(theta0), True
    r0 = obj.residuals(theta0)
    # MINPACK's LM needs at least as many rows as params; trust-region reflective does not.
    method = "lm" if r0.size >= theta0.size else "trf"
    res = least_squares(obj.residuals, theta0, jac=obj.jacobian, method=method, x_scale="jac",
                        ftol=tol, xtol=tol, gtol=tol, max_nfev=max_nfev)
    theta = np.asarray(res.x, float)
    return theta, obj.loss(theta), bool(res.status > 0)


def _candidates(opts: FitOptions, idx: np.ndarray, free: np.ndarray, rng: np.random.Generator,
                ) -> tuple[np.ndarray, int]:
    """Start points for the free params (rows), and how many lead (ones, the parent)."""
    f = free.size
    lead = [np.ones(f)]
    if opts.parent and f:
        used = [int(i) for i in idx[free]]
        if any(i in opts.parent for i in used):
            parent = np.array([opts.parent.get(i, 1.0) for i in used], float)
            if np.all(np.isfinite(parent)):
                lead.insert(0, parent)
    out = list(lead)
    if f == 0:
        return np.array(out), len(lead)
    out.append(np.zeros(f))
    scale = 10.0 ** rng.uniform(-2.5, 1.5, size=(opts.screen, f))
    out.extend(scale * rng.choice([-1.0, 1.0], size=(opts.screen, f)))
    if opts.sweep > 1:
        factors = np.linspace(0.5, 1.5, max(11, opts.sweep // f) | 1)
        factors = factors[np.abs(factors - 1.0) > 1e-9]
        for base in lead:
            for j in range(f):
                if base[j] != 0:
                    block = np.repeat(base[None, :], factors.size, axis=0)
                    block[:, j] *= factors
                    out.extend(block)
    return np.array(out), len(lead)


def _subsample(n: int, size: int, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``size`` sorted distinct rows of ``n``: the anchors (extreme rows), then random ones."""
    anchors = anchors[:size]
    keep = np.ones(n, bool)
    keep[anchors] = False
    extra = rng.choice(np.flatnonzero(keep), size=size - anchors.size, replace=False)
    return np.sort(np.concatenate([anchors, extra]).astype(int))


@dataclass
class Exploration:
    """What the search found on the subsample, for the polish."""

    lin: np.ndarray  # positions (into the used params) solved as affine
    sub: _Projected  # the projected objective on the search's subsample
    found: list[tuple[float, np.ndarray]]  # (loss on the subsample, theta) of each LM run
    best_loss: float
    best_theta: np.ndarray
    ones_seed: np.ndarray  # where LLM-SR's start (ones, all used params) got to
    runs: int

    @property
    def free(self) -> np.ndarray:
        return self.sub.free


def explore(ctx: FitContext) -> Exploration:
    """Find the affine params, screen the starts on a few rows, then run LM from the most
    promising few (and from ones over all used params) until two runs agree."""
    opts, rows, rng, anchors, notes = ctx.opts, ctx.rows, ctx.rng, ctx.anchors, ctx.notes
    n, k, idx, budget, start_time = ctx.n, ctx.k, ctx.idx, ctx.budget, ctx.start_time
    objective, agree = ctx.objective, ctx.agree
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
    return Exploration(lin, sub, found, float(best_loss), best_theta, ones_seed, runs)
