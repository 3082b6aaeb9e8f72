"""LLM-SR's fitting procedure: BFGS with finite differences from ones over every param.

``fit_llmsr`` is the procedure as LLM-SR runs it (``fitter = "llmsr"``, for comparisons and
ablations); ``bfgs_from_ones`` runs the same iterates as one start of the default fitter,
batched, so that eqforge's fit is never worse than LLM-SR's by construction.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from eqforge.evaluator.fit.options import FitResult, ManyModel, Model, OutOfTime
from eqforge.evaluator.fit.scipy_lean import minimize


def fit_llmsr(model: Model, y: np.ndarray, n_params: int) -> FitResult:
    """LLM-SR: ``minimize(lambda p: np.mean((equation(*X.T, p) - y)**2), [1.0]*10, method='BFGS')``."""
    count = [0]

    def loss(p: np.ndarray) -> float:
        count[0] += 1
        with np.errstate(all="ignore"):
            return float(np.mean((model(p) - y) ** 2))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = minimize(loss, [1.0] * n_params, method="BFGS")
    return FitResult(np.asarray(res.x, float), float(res.fun), count[0], 1, "llmsr-bfgs")


# scipy's BFGS default absolute finite-difference step (``scipy.optimize._optimize._epsilon``)
_FD_STEP = float(np.sqrt(np.finfo(float).eps))


def _fd_points(q: np.ndarray) -> np.ndarray:
    """The k points scipy's 2-point finite difference evaluates around ``q``, bit for bit
    (``approx_derivative`` with ``abs_step`` = the default epsilon, no bounds)."""
    sign = (q >= 0).astype(float) * 2 - 1
    h = np.full(q.size, _FD_STEP)
    h = np.where(((q + h) - q) == 0, _FD_STEP * sign * np.maximum(1.0, np.abs(q)), h)
    P = np.repeat(q[None, :], q.size, axis=0)
    P[np.arange(q.size), np.arange(q.size)] = q + h
    return P


def bfgs_from_ones(model_each: ManyModel, y: np.ndarray, n_params: int, indices: tuple[int, ...],
                   deadline: float) -> FitResult | None:
    """LLM-SR's procedure as one start of eqforge's fit, run to convergence.

    The same scipy BFGS with the same finite differences, defaults and start (ones) over the
    used params (the unused ones have zero derivative: the iterates are LLM-SR's), on all
    training rows; its iteration limit is LLM-SR's (200 per declared param). Only the
    transport differs: every point scipy asks for is evaluated together with the finite-
    difference points scipy will ask for next (``_fd_points``), in one round trip of
    ``model_each``, and served from a cache keyed by the exact vector — so scipy sees the
    very values it would have computed. Past ``deadline`` (LLM-SR's own 30 s, or the job's
    end) the best point seen is returned; None if nothing could be evaluated.
    """
    idx = np.asarray(indices, int)
    full0 = np.ones(n_params)
    cache: dict[bytes, float] = {}
    best: list[tuple[float, np.ndarray]] = []
    nfev = [0]
    trips = [0]  # calls of ``model_each``: what this start costs in round trips (benchmarks report it)

    def evaluate(q: np.ndarray) -> float:
        key = q.tobytes()
        if key not in cache:
            if time.perf_counter() > deadline:
                raise OutOfTime
            Q = np.vstack([q[None, :], _fd_points(q)])
            P = np.repeat(full0[None, :], Q.shape[0], axis=0)
            P[:, idx] = Q
            with np.errstate(all="ignore"):
                losses = np.mean((model_each(P, None) - y) ** 2, axis=1)
            nfev[0] += Q.shape[0]
            trips[0] += 1
            for row, value in zip(Q, losses, strict=True):
                cache[row.tobytes()] = float(value)
            if np.isfinite(losses[0]) and (not best or losses[0] < best[0][0]):
                best[:] = [(float(losses[0]), q.copy())]
        return cache[key]

    result = None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            res = minimize(evaluate, np.ones(idx.size), method="BFGS", options={"maxiter": 200 * n_params})
            if np.isfinite(res.fun):
                result = (float(res.fun), np.asarray(res.x, float))
        except OutOfTime:
            pass
    if result is None or (best and best[0][0] < result[0]):
        result = best[0] if best else None
    if result is None:
        return None
    full = full0.copy()
    full[idx] = result[1]
    return FitResult(full, result[0], nfev[0], 1, "llmsr-bfgs", [f"llmsr-bfgs {trips[0]} round trips"])
