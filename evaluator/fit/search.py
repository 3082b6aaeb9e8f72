"""The search's pieces: Levenberg–Marquardt runs, start points and row subsamples."""

from __future__ import annotations

import numpy as np

from eqforge.evaluator.fit.options import FitOptions
from eqforge.evaluator.fit.projection import _Projected
from eqforge.evaluator.fit.scipy_lean import least_squares


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
