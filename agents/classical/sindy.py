"""``sindy:``: sequentially thresholded least squares (STLSQ, as in SINDy) over a term library.

An independent replication of LLM-SRBench found plain STLSQ over a fixed nonlinear library
competitive with LLM-SR; this is that floor. The library: every product of up to ``degree``
base features (each input, and its reciprocal where the training data exclude 0), plus sin,
cos, x·sin and x·cos of each input, plus a constant. Columns that are not finite on the training data are
dropped. STLSQ (``pysindy.STLSQ``, normalised columns) runs for each threshold of a log grid;
each distinct support is refitted by plain least squares and the non-dominated ones (train
MSE against number of terms) are the front this searcher returns.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from typing import Any

import numpy as np
import sympy as sp

from eqforge.agents.classical.expr import input_symbols
from eqforge.agents.classical.spec import SindyOptions

log = logging.getLogger(__name__)


def library(X: np.ndarray, opts: SindyOptions) -> list[sp.Expr]:
    """The candidate terms for these inputs (in a fixed order)."""
    syms = input_symbols(X.shape[1])
    base: list[tuple[int, sp.Expr]] = [(i, s) for i, s in enumerate(syms)]
    if opts.reciprocals:
        base += [(i, 1 / s) for i, s in enumerate(syms) if np.all(np.abs(X[:, i]) > 1e-12)]
    terms: list[sp.Expr] = [sp.Integer(1)]
    seen: set[sp.Expr] = set(terms)
    for d in range(1, opts.degree + 1):
        for combo in itertools.combinations_with_replacement(range(len(base)), d):
            factors = [base[k] for k in combo]
            owners = [i for i, _ in factors]
            # x and 1/x in one product cancel to a shorter term already present
            if any(owners.count(i) > 1 and len({str(f) for j, f in factors if j == i}) > 1 for i in owners):
                continue
            term = sp.Mul(*[f for _, f in factors])
            if term not in seen:
                seen.add(term)
                terms.append(term)
    if opts.trig:
        terms += [t for s in syms for t in (sp.sin(s), sp.cos(s), s * sp.sin(s), s * sp.cos(s))]
    return terms


def _columns(terms: list[sp.Expr], X: np.ndarray) -> tuple[list[sp.Expr], np.ndarray]:
    syms = input_symbols(X.shape[1])
    cols, kept = [], []
    with np.errstate(all="ignore"):
        for t in terms:
            f = sp.lambdify(syms, t, "numpy")
            col = np.broadcast_to(np.asarray(f(*X.T), float), (X.shape[0],))
            if np.all(np.isfinite(col)) and np.max(np.abs(col)) < 1e150:
                cols.append(col)
                kept.append(t)
    return kept, np.column_stack(cols)


def _lstsq(theta: np.ndarray, y: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, float]:
    coef = np.zeros(theta.shape[1])
    if support.any():
        sol, *_ = np.linalg.lstsq(theta[:, support], y, rcond=None)
        coef[support] = sol
    return coef, float(np.mean((theta @ coef - y) ** 2))


def fit(X: np.ndarray, y: np.ndarray, opts: SindyOptions, *, seed: int, max_seconds: float | None,
        max_models: int) -> list[dict[str, Any]]:
    """The front: ``[{"expr", "text", "complexity", "train_mse"}]``, simplest first."""
    import pysindy as ps

    del seed  # STLSQ is deterministic
    deadline = time.monotonic() + (max_seconds or float("inf"))
    terms, theta = _columns(library(X, opts), X)
    supports: dict[tuple[bool, ...], tuple[np.ndarray, float]] = {}
    for thr in np.geomspace(opts.threshold_min, opts.threshold_max, opts.thresholds):
        if time.monotonic() > deadline:
            log.info("sindy: time budget reached after %d thresholds", len(supports))
            break
        opt = ps.STLSQ(threshold=float(thr), alpha=opts.alpha, normalize_columns=True, max_iter=50)
        with warnings.catch_warnings():  # "eliminated all coefficients": the path's end, expected
            warnings.simplefilter("ignore", UserWarning)
            opt.fit(theta, y.reshape(-1, 1))
        support = np.abs(np.asarray(opt.coef_).ravel()) > 0
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
