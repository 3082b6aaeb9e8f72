"""Fitting a program's constants to the training data.

Two procedures:

* ``llmsr`` — LLM-SR's exact procedure, kept for fair comparisons: BFGS with
  finite-difference gradients from a vector of ones over all declared params, minimising
  the mean squared error.
* ``default`` — only the params the program reads are fitted; a least-squares solver
  (trust-region reflective, falling back to Levenberg–Marquardt) runs from several starts
  (ones, zeros, log-uniform random scales, the parent's fitted values) on a subsample of
  large data, stops early when two starts agree, and the best start is polished by
  least squares and then BFGS on all rows. Non-finite predictions are penalised rather than
  fatal, so exponentials that overflow at some starts do not end the fit.

This module runs inside the sandbox child; the reported score is recomputed by trusted code
from the predictions on the full training split.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import OptimizeWarning, least_squares, minimize

Model = Callable[[np.ndarray], np.ndarray]  # full params vector -> predictions


@dataclass
class FitResult:
    params: np.ndarray
    loss: float
    nfev: int = 0
    starts: int = 0
    method: str = ""
    notes: list[str] = field(default_factory=list)


def _mse(pred: np.ndarray, y: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        value = float(np.mean((pred - y) ** 2))
    return value if np.isfinite(value) else np.inf


def fit_llmsr(model: Model, y: np.ndarray, n_params: int) -> FitResult:
    """LLM-SR: ``minimize(loss, [1.0]*MAX_NPARAMS, method='BFGS')``."""
    count = [0]

    def loss(p: np.ndarray) -> float:
        count[0] += 1
        with np.errstate(all="ignore"):
            return float(np.mean((model(p) - y) ** 2))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = minimize(loss, np.ones(n_params), method="BFGS")
    return FitResult(np.asarray(res.x, float), float(res.fun), count[0], 1, "llmsr-bfgs")


@dataclass(frozen=True)
class FitOptions:
    n_params: int = 10
    indices: tuple[int, ...] | None = None
    starts: int = 6
    seed: int = 0
    time_budget: float = 10.0
    subsample: int | None = 4000
    parent: dict[int, float] | None = None
    agree_rtol: float = 1e-6


class _Objective:
    """Residuals over a chosen subset of rows and params, with non-finite values penalised."""

    def __init__(self, model: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
                 y: np.ndarray, full: np.ndarray, idx: np.ndarray, rows: np.ndarray | None):
        self.model = model
        self.y = y if rows is None else y[rows]
        self.rows = rows
        self.full = full.copy()
        self.idx = idx
        self.nfev = 0
        scale = float(np.std(self.y)) or 1.0
        self.penalty = 1e3 * (scale + float(np.max(np.abs(self.y))))

    def expand(self, p: np.ndarray) -> np.ndarray:
        full = self.full.copy()
        full[self.idx] = p
        return full

    def residuals(self, p: np.ndarray) -> np.ndarray:
        self.nfev += 1
        with np.errstate(all="ignore"):
            pred = self.model(self.expand(p), self.rows)
            r = pred - self.y
        bad = ~np.isfinite(r)
        if bad.any():
            r = np.where(bad, self.penalty, r)
        np.clip(r, -1e150, 1e150, out=r)
        return r

    def loss(self, p: np.ndarray) -> float:
        r = self.residuals(p)
        return float(np.mean(r * r))


def _start_points(opts: FitOptions, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    idx = opts.indices or ()
    points = [np.ones(k)]
    if opts.parent:
        parent = np.array([opts.parent.get(i, 1.0) for i in idx], float)
        if np.all(np.isfinite(parent)):
            points.insert(0, parent)
    points.append(np.zeros(k) + 1e-3)
    while len(points) < max(opts.starts, len(points)):
        scale = 10.0 ** rng.uniform(-2, 1, size=k)
        sign = rng.choice([-1.0, 1.0], size=k)
        points.append(scale * sign)
    return points[: max(opts.starts, 2)]


def _least_squares(obj: _Objective, x0: np.ndarray, max_nfev: int) -> tuple[np.ndarray, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = least_squares(obj.residuals, x0, method="trf", x_scale="jac", max_nfev=max_nfev)
            x = res.x
        except (ValueError, np.linalg.LinAlgError, OptimizeWarning, FloatingPointError):
            x = x0
    return x, obj.loss(x)


def fit_default(
    model: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    y: np.ndarray,
    opts: FitOptions,
) -> FitResult:
    """Multi-start least squares on the used params, polished on all rows."""
    start_time = time.perf_counter()
    idx = np.array(opts.indices if opts.indices is not None else range(opts.n_params), int)
    full0 = np.ones(opts.n_params)
    n = y.shape[0]
    if idx.size == 0:
        pred = model(full0, None)
        return FitResult(full0, _mse(pred, y), 1, 0, "none")
    rng = np.random.default_rng(opts.seed)
    rows = None
    if opts.subsample and n > opts.subsample:
        rows = np.sort(rng.choice(n, size=opts.subsample, replace=False))
    obj = _Objective(model, y, full0, idx, rows)
    k = idx.size
    best_x, best_loss = None, np.inf
    losses: list[float] = []
    starts = 0
    for x0 in _start_points(FitOptions(**{**opts.__dict__, "indices": tuple(idx)}), k, rng):
        if starts and time.perf_counter() - start_time > opts.time_budget * 0.6:
            break
        starts += 1
        x, loss = _least_squares(obj, x0, max_nfev=100 * (k + 1))
        losses.append(loss)
        if loss < best_loss:
            best_x, best_loss = x, loss
        # Early stop: two starts (the best and another) reached the same minimum.
        close = [v for v in losses if abs(v - best_loss) <= opts.agree_rtol * max(best_loss, 1e-300)]
        if len(close) >= 2 and starts >= 2:
            break
    assert best_x is not None
    # Polish on all rows: least squares, then BFGS on the mean squared error.
    full_obj = _Objective(model, y, full0, idx, None)
    x, loss = _least_squares(full_obj, best_x, max_nfev=50 * (k + 1)) if rows is not None else (
        best_x, full_obj.loss(best_x))
    if time.perf_counter() - start_time < opts.time_budget:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = minimize(full_obj.loss, x, method="BFGS", options={"maxiter": 200})
                if np.isfinite(res.fun) and res.fun < loss:
                    x, loss = np.asarray(res.x, float), float(res.fun)
            except (ValueError, np.linalg.LinAlgError, FloatingPointError):
                pass
    return FitResult(full_obj.expand(x), loss, obj.nfev + full_obj.nfev, starts, "lsq+bfgs")
