"""Scores computed by trusted code from predictions and true values.

These run in the main process on predictions returned by the sandbox, never inside it, so
a candidate cannot influence how its own loss is computed.
"""

from __future__ import annotations

import math

import numpy as np


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return float(np.mean((np.asarray(y_pred, float) - np.asarray(y_true, float)) ** 2))


def nmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """MSE divided by the variance of the truth (LLM-SR's test metric)."""
    var = float(np.var(y_true))
    err = mse(y_true, y_pred)
    return err / var if var > 0 else (0.0 if err == 0 else math.inf)


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return 1.0 - nmse(y_true, y_pred)


def acc_tau(y_true: np.ndarray, y_pred: np.ndarray, tau: float = 0.1) -> float:
    """Share of points whose relative error |pred - true| / |true| is at most ``tau``."""
    y_true = np.asarray(y_true, float)
    y_pred = np.asarray(y_pred, float)
    with np.errstate(all="ignore"):
        rel = np.abs(y_pred - y_true) / np.abs(y_true)
    rel = np.where(y_true == 0, np.where(y_pred == 0, 0.0, np.inf), rel)
    return float(np.mean(rel <= tau))


def finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def all_metrics(y_true: np.ndarray, y_pred: np.ndarray, tau: float = 0.1) -> dict[str, float | None]:
    return {
        "mse": finite_or_none(mse(y_true, y_pred)),
        "nmse": finite_or_none(nmse(y_true, y_pred)),
        "r2": finite_or_none(r2(y_true, y_pred)),
        f"acc_{tau:g}": acc_tau(y_true, y_pred, tau),
    }
