"""LLM-SR's fitting procedure: BFGS with finite differences from ones over every param."""

from __future__ import annotations

import warnings

import numpy as np

from eqforge.evaluator.fit.options import FitResult, Model
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
