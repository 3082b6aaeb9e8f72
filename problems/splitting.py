"""Splitting rows into ``train`` / ``test_id`` / ``test_ood``, as ``[split]`` records it.

The rows at the extreme (high, or low) end of one variable are held out as out-of-domain;
the rest are split at random with a seed. Fractions and seed are recorded in
``problem.toml`` so the split can be made again.
"""

from __future__ import annotations

import math

import numpy as np

from eqforge.errors import ProblemError

DEFAULT_TEST_FRACTION = 0.2
DEFAULT_OOD_FRACTION = 0.1


def _fraction(value: float | None, default: float, what: str) -> float:
    f = default if value is None else float(value)
    if not (0.0 <= f < 1.0) or math.isnan(f):
        raise ProblemError(f"{what} must be at least 0 and below 1, got {value!r}")
    return f


def split_rows(
    column: np.ndarray | None,
    n: int,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    ood_fraction: float = DEFAULT_OOD_FRACTION,
    ood_side: str = "high",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Row indices per split: the ``ood_fraction`` rows at the ``ood_side`` end of ``column``
    are ``test_ood``; ``test_fraction`` of all rows, drawn at random from the rest, are
    ``test_id``; the remainder is ``train``. Indices stay in their original order."""
    test_fraction = _fraction(test_fraction, DEFAULT_TEST_FRACTION, "the test fraction")
    ood_fraction = _fraction(ood_fraction, DEFAULT_OOD_FRACTION, "the OOD fraction")
    if test_fraction + ood_fraction >= 1.0:
        raise ProblemError(
            f"test fraction {test_fraction} + OOD fraction {ood_fraction} leave no training rows"
        )
    idx = np.arange(n)
    ood = np.array([], dtype=int)
    if ood_fraction > 0 and column is not None:
        n_ood = max(1, int(round(ood_fraction * n)))
        key = np.asarray(column, dtype=float)
        if ood_side == "low":
            order = np.argsort(key, kind="stable")
        elif ood_side == "high":
            order = np.argsort(-key, kind="stable")
        elif ood_side == "both":
            centre = np.median(key)
            order = np.argsort(-np.abs(key - centre), kind="stable")
        else:
            raise ProblemError(f"ood side must be 'high', 'low' or 'both', got {ood_side!r}")
        ood = np.sort(order[:n_ood])
    rest = np.setdiff1d(idx, ood)
    rng = np.random.default_rng(seed)
    n_test = int(round(test_fraction * n)) if test_fraction > 0 else 0
    n_test = min(n_test, max(len(rest) - 1, 0))
    test = np.sort(rng.permutation(rest)[:n_test]) if n_test else np.array([], dtype=int)
    train = np.setdiff1d(rest, test)
    out = {"train": train}
    if len(test):
        out["test_id"] = test
    if len(ood):
        out["test_ood"] = ood
    return out
