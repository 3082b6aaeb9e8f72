"""``sindy:``: sequentially thresholded least squares (STLSQ, as in SINDy) over a term library.

An independent replication of LLM-SRBench found plain STLSQ over a fixed nonlinear library
competitive with LLM-SR; this is that floor. The library: every product of up to ``degree``
base features (each input, and its reciprocal where the training data exclude 0), plus sin,
cos, x·sin and x·cos of each input, plus a constant. Columns that are not finite on the training data are
dropped. STLSQ (normalised columns; numpy by default, ``engine=pysindy`` for ``pysindy.STLSQ``,
which computes the same path several times slower) runs for each threshold of a log grid
(its whole budget: it does not read the clock, so its front is the same on any machine);
each distinct support is refitted by plain least squares and the non-dominated ones (train
MSE against number of terms) are the front this searcher returns.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from typing import Any

import numpy as np
import sympy as sp

from eqforge.agents.classical.expr import input_symbols
from eqforge.agents.classical.spec import SindyOptions

log = logging.getLogger(__name__)


def library(X: np.ndarray, opts: SindyOptions) -> tuple[list[sp.Expr], np.ndarray]:
    """The candidate terms for these inputs (in a fixed order) and their columns on ``X``
    (computed with numpy alongside, so building a library of hundreds of terms is cheap);
    terms not finite on ``X`` are dropped."""
    syms = input_symbols(X.shape[1])
    base: list[tuple[int, sp.Expr, np.ndarray]] = [(i, s, X[:, i]) for i, s in enumerate(syms)]
    if opts.reciprocals:
        base += [(i, 1 / s, 1.0 / X[:, i]) for i, s in enumerate(syms) if np.all(np.abs(X[:, i]) > 1e-12)]
    terms: list[sp.Expr] = [sp.Integer(1)]
    cols: list[np.ndarray] = [np.ones(X.shape[0])]
    seen: set[sp.Expr] = set(terms)
    with np.errstate(all="ignore"):
        for d in range(1, opts.degree + 1):
            for combo in itertools.combinations_with_replacement(range(len(base)), d):
                factors = [base[k] for k in combo]
                # x and 1/x in one product cancel to a shorter term already present
                if any(sum(1 for j, f, _ in factors if j == i and f != g) for i, g, _ in factors):
                    continue
                term = sp.Mul(*[f for _, f, _ in factors])
                if term not in seen:
                    seen.add(term)
                    terms.append(term)
                    cols.append(np.prod([c for _, _, c in factors], axis=0))
        if opts.trig:
            for i, s in enumerate(syms):
                x = X[:, i]
                terms += [sp.sin(s), sp.cos(s), s * sp.sin(s), s * sp.cos(s)]
                cols += [np.sin(x), np.cos(x), x * np.sin(x), x * np.cos(x)]
    keep = [k for k, c in enumerate(cols) if np.all(np.isfinite(c)) and np.max(np.abs(c)) < 1e150]
    return [terms[k] for k in keep], np.column_stack([cols[k] for k in keep])


def _lstsq(theta: np.ndarray, y: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, float]:
    coef = np.zeros(theta.shape[1])
    if support.any():
        sol, *_ = np.linalg.lstsq(theta[:, support], y, rcond=None)
        coef[support] = sol
    return coef, float(np.mean((theta @ coef - y) ** 2))


def stlsq(theta: np.ndarray, y: np.ndarray, threshold: float, alpha: float, max_iter: int = 20) -> np.ndarray:
    """Sequentially thresholded ridge least squares on normalised columns (SINDy's STLSQ, as
    ``pysindy.STLSQ(normalize_columns=True)`` computes it): fit, zero the coefficients below
    ``threshold``, refit on the rest, until the support stops changing."""
    norms = np.linalg.norm(theta, axis=0)
    norms[norms == 0] = 1.0
    A = theta / norms
    support = np.ones(A.shape[1], bool)
    coef = np.zeros(A.shape[1])
    for _ in range(max_iter):
        coef = np.zeros(A.shape[1])
        if not support.any():
            break
        sub = A[:, support]
        coef[support] = np.linalg.solve(sub.T @ sub + alpha * np.eye(sub.shape[1]), sub.T @ y)
        new = np.abs(coef) >= threshold
        if np.array_equal(new, support):
            break
        support = new
    coef[~support] = 0.0
    return coef / norms


def _stlsq(theta: np.ndarray, y: np.ndarray, threshold: float, opts: SindyOptions) -> np.ndarray:
    if opts.engine == "pysindy":
        import pysindy as ps

        opt = ps.STLSQ(threshold=threshold, alpha=opts.alpha, normalize_columns=True, max_iter=20)
        with warnings.catch_warnings():  # "eliminated all coefficients": the path's end, expected
            warnings.simplefilter("ignore", UserWarning)
            opt.fit(theta, y.reshape(-1, 1))
        return np.asarray(opt.coef_).ravel()
    return stlsq(theta, y, threshold, opts.alpha)


def fit(X: np.ndarray, y: np.ndarray, opts: SindyOptions, *, seed: int, max_seconds: float | None,
        max_models: int) -> list[dict[str, Any]]:
    """The front: ``[{"expr", "text", "complexity", "train_mse"}]``, simplest first."""
    # STLSQ is deterministic, and its budget is the threshold grid, not the clock: a front that
    # depended on machine load would differ between two seeds of one sweep for no reason.
    del seed, max_seconds
    terms, theta = library(X, opts)
    supports: dict[tuple[bool, ...], tuple[np.ndarray, float]] = {}
    # thresholds act on unit-RMS columns and a unit-variance target, so they mean "share of
    # the target's spread a term carries", whatever the problem's units and row count
    rms = np.sqrt(np.mean(theta**2, axis=0))
    rms[rms == 0] = 1.0
    scale = float(np.std(y)) or 1.0
    for thr in np.geomspace(opts.threshold_min, opts.threshold_max, opts.thresholds):
        support = np.abs(_stlsq(theta / rms, y / scale, float(thr), opts)) > 0
        if 0 < support.sum() <= opts.max_terms and tuple(support) not in supports:
            supports[tuple(support)] = _lstsq(theta, y, support)
    ranked = sorted(supports.values(), key=lambda cm: (int(np.count_nonzero(cm[0])), cm[1]))
    front, best = [], np.inf
    for coef, mse in ranked:
        if mse < best * (1 - 1e-9):
            best = mse
            expr = sp.Add(*[sp.Float(float(c), 15) * t for c, t in zip(coef, terms, strict=True) if c != 0])
            front.append({"expr": expr, "text": str(expr), "complexity": int(np.count_nonzero(coef)),
                          "train_mse": mse})
    return front[:max_models]
