"""The pointwise contract, enforced on the trusted side: a law maps each row to its prediction.

A score means "this law, row by row". A program that reads neighbouring rows
(``np.gradient(v)``, shifted slices, a step estimated with ``np.diff(t).mean()``), ranks,
cumulative sums, column means or ``len(x)`` is not a law of one row, and on data recorded
along a trajectory such a program can reach near-zero error with no fitted constant at all.
Three mechanisms, all decided by trusted code, none trusting the candidate's word:

1. **Hidden order.** Every row set a candidate process sees is shown in a fresh random
   order, drawn here from the operating system's entropy (``os.urandom``), and its answer
   is mapped back. Each process gets its own order, so neighbours in storage are not
   neighbours in any array a program is given.
2. **Probes first.** Before any full split, a process predicts a small random subset of
   every split on its own (``probes``). A pointwise program gives the same values for
   those rows inside the full split; a coupled one does not (or fails on the subset).
3. **Two processes agree.** The fit process and the fresh scoring process each predict
   every split at the final params, each with its own order and probes. A program that
   keeps state between calls and answers remembered rows honestly is caught here, since
   the two processes remember different rows.

Any mismatch beyond floating-point noise (``agree``) is ``policy:row-coupling`` with a
one-line reason, never a score. A problem that truly needs whole columns opts out with
``pointwise = false`` in ``problem.toml``; the run records and the report say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from eqforge.sandbox.runtime import CandidateFailure

REASON = "policy:row-coupling"
RTOL = 1e-9  # honest vectorised numpy differs between batch sizes in the last ulps only
ATOL = 1e-9  # ... times the largest finite magnitude: cancellation inside a row
PROBE_MIN, PROBE_MAX = 2, 48  # rows in a probe (random size: ``len`` tells a program nothing)


def entropy_rng() -> np.random.Generator:
    """A generator seeded from the OS: orders a candidate cannot reproduce from the seed."""
    return np.random.default_rng(int.from_bytes(os.urandom(16), "little"))


@dataclass(frozen=True)
class Shown:
    """A row set as one process sees it: original indices in the order they were sent."""

    sent: np.ndarray  # (m,) original row indices, in shown order
    order: np.ndarray  # (m,) position in the requested order of each shown row

    def back(self, values: np.ndarray) -> np.ndarray:
        """Values (..., m) in shown order -> the same values in the requested order."""
        out = np.empty_like(values)
        out[..., self.order] = values
        return out


def show(rows: np.ndarray, rng: np.random.Generator | None, hidden: bool = True) -> Shown:
    """``rows`` in a fresh random order (identity when the problem opted out)."""
    rows = np.asarray(rows, np.intp)
    perm = rng.permutation(rows.size) if hidden and rng is not None else np.arange(rows.size)
    return Shown(rows[perm], perm)


def probe_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random subset of ``n`` rows, smaller than ``n``, for a probe (empty when n < 2)."""
    if n < 2:
        return np.empty(0, np.intp)
    hi = min(PROBE_MAX, n - 1)
    size = int(rng.integers(min(PROBE_MIN, hi), hi + 1))
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.intp)


def agree(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two predictions of the same rows are equal up to floating-point noise.

    Non-finite values must match in kind (NaN with NaN, +inf with +inf); finite ones within
    ``RTOL`` relative plus ``ATOL`` times the largest finite magnitude of either."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb):
        return False
    nf = ~fa
    if nf.any() and not np.array_equal(np.isnan(a[nf]), np.isnan(b[nf])):
        return False
    if nf.any() and not np.array_equal(a[nf & ~np.isnan(a)], b[nf & ~np.isnan(b)]):
        return False
    if not fa.any():
        return True
    x, y = a[fa], b[fa]
    scale = max(float(np.abs(x).max()), float(np.abs(y).max()))
    return bool(np.all(np.abs(x - y) <= RTOL * np.maximum(np.abs(x), np.abs(y)) + ATOL * scale))


def first_mismatch(a: np.ndarray, b: np.ndarray) -> int:
    """The first position where ``agree`` fails element by element (for the reason line)."""
    for i in range(min(a.size, b.size)):
        if not agree(a[i:i + 1], b[i:i + 1]):
            return i
    return 0


def require(same: bool, what: str, a: np.ndarray | None = None, b: np.ndarray | None = None) -> None:
    """Raise ``policy:row-coupling`` with a one-line reason unless ``same``."""
    if same:
        return
    detail = f"predictions depend on which other rows are evaluated ({what})"
    if a is not None and b is not None and a.size and b.size:
        i = first_mismatch(a, b)
        detail += f"; e.g. {float(a[i]):.6g} vs {float(b[i]):.6g}"
    raise CandidateFailure(REASON, detail[:300])
