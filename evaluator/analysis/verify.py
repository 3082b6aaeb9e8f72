"""Is a closed form the scored law? Its predictions against the sandbox's, on the scored rows.

The converter reads a program's AST; the sandbox runs it. Where the two disagree (a
semantics the converter models wrongly, a construct it misreads) the closed form is a
different law from the one that was scored, and showing or exporting it would silently
compute another law. So a closed form is shown as *the* law only when its predictions on
the training rows match the predictions the sandbox computes for the same program and
constants, to a tight tolerance. Anything else is ``unverified`` (a mismatch: it is not
the scored law) or ``unknown`` (no reference, or the check could not run).

``check`` runs ``sympy.lambdify`` and numpy on the candidate's expression, so callers run
it in the helper process (``worker``, op ``"verify"``), under a deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from eqforge.evaluator.analysis.skeleton import input_symbols

#: |closed form − sandbox| ≤ TOLERANCE · (|sandbox| + rms(sandbox)), row by row
TOLERANCE = 1e-9

VERIFIED, UNVERIFIED, UNKNOWN = "verified", "unverified", "unknown"


@dataclass(frozen=True)
class Verification:
    status: str  # VERIFIED | UNVERIFIED | UNKNOWN
    detail: str = ""
    max_error: float | None = None  # the largest deviation, relative to the tolerance's scale

    @property
    def verified(self) -> bool:
        return self.status == VERIFIED

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail, "max_error": self.max_error}


def unknown(detail: str) -> Verification:
    return Verification(UNKNOWN, detail)


def predictions(expr: sp.Expr, input_names: list[str], X: np.ndarray) -> np.ndarray:
    """``expr`` (constants filled in) evaluated on the rows of ``X`` (n, d) with numpy."""
    symbols = input_symbols(input_names)
    args = [symbols[n] for n in input_names]
    fn = sp.lambdify(args, expr, modules="numpy")
    X = np.asarray(X, dtype=np.float64)
    with np.errstate(all="ignore"):
        out = fn(*[X[:, j] for j in range(len(args))])
    return np.broadcast_to(np.asarray(out, dtype=np.float64), (X.shape[0],)).copy()


def compare(got: np.ndarray, reference: np.ndarray, tol: float = TOLERANCE) -> Verification:
    """Row-by-row agreement; NaN and ±inf must agree exactly."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if got.shape != ref.shape:
        return Verification(UNVERIFIED, f"{got.shape[0]} predictions for {ref.shape[0]} rows")
    finite = np.isfinite(ref)
    if not np.array_equal(np.isnan(got), np.isnan(ref)) or not np.array_equal(
            got[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)]):
        return Verification(UNVERIFIED, "the closed form is NaN or infinite on other rows than "
                            "the scored program")
    if not finite.any():
        return Verification(VERIFIED, "no finite prediction to compare", 0.0)
    r, g = ref[finite], got[finite]
    scale = np.abs(r) + float(np.sqrt(np.mean(r * r)))
    scale = np.where(scale > 0, scale, 1.0)
    err = float(np.max(np.abs(g - r) / scale))
    if err <= tol:
        return Verification(VERIFIED, f"matches the sandbox's predictions on {r.size} rows "
                            f"(largest deviation {err:.1e} of scale)", err)
    return Verification(UNVERIFIED, f"the closed form does not reproduce the scored program: "
                        f"deviation {err:.2g} of scale on the training rows (tolerance {tol:g})",
                        err)


def check(exprs: list[sp.Expr], input_names: list[str], X: np.ndarray,
          reference: np.ndarray, tol: float = TOLERANCE) -> Verification:
    """Every expression of ``exprs`` (e.g. as written and simplified) must match."""
    result = Verification(VERIFIED, "nothing to check")
    for expr in exprs:
        try:
            got = predictions(expr, input_names, X)
        except (TypeError, ValueError, NameError, ZeroDivisionError, OverflowError,
                AttributeError, KeyError) as exc:
            return Verification(UNVERIFIED, f"the closed form cannot be evaluated with numpy "
                                f"({type(exc).__name__})")
        result = compare(got, reference, tol)
        if not result.verified:
            return result
    return result
