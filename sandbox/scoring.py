"""The predictions that get scored, made in a scoring child from given constants only.

This runs in the children of the *scorer*, a lean process the zygote forks at start-up,
before scipy and the fitter are imported (so forking it per candidate is cheap) and which
never holds the training targets. ``check_output`` (the output contract) is defined here,
in this scipy-free module, and the evaluator's runner imports it from here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from eqforge.sandbox.runtime import CandidateFailure


def check_output(out: Any, n: int) -> np.ndarray:
    """Coerce a candidate's return value to a float vector of length n, or fail."""
    if isinstance(out, list | tuple):
        try:
            out = np.asarray(out)
        except (ValueError, TypeError):
            raise CandidateFailure("shape", "returned a ragged sequence") from None
    if isinstance(out, bool | int | float | np.number):
        out = np.asarray(out)
    if not isinstance(out, np.ndarray):
        raise CandidateFailure("dtype", f"returned {type(out).__name__}, not a numpy array")
    if out.dtype.kind not in "fiub":
        raise CandidateFailure("dtype", f"returned an array of dtype {out.dtype}")
    if out.shape != (n,):
        if out.ndim == 0 or out.shape == (1,):
            out = np.broadcast_to(out.reshape(()), (n,))
        else:
            raise CandidateFailure("shape", f"returned shape {out.shape}, expected ({n},)")
    return np.asarray(out, dtype=np.float64)


def predict(fn: Callable[..., Any], context: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """``fn``'s predictions on every split with ``options["params"]``; train ones must be finite."""
    warnings.simplefilter("ignore")
    columns: dict[str, list[np.ndarray]] = context["columns"]
    n_train = int(context.get("n_train", 0))
    values = np.asarray(options["params"], dtype=np.float64)
    predictions = {}
    with np.errstate(all="ignore"):
        for split, cols in columns.items():
            rows = cols[0].shape[0] if cols else n_train
            p = values.copy()  # a fresh read-only copy per call, as the fitter does
            p.flags.writeable = False
            pred = check_output(fn(*cols, p), rows)
            if split == "train" and not np.all(np.isfinite(pred)):
                raise CandidateFailure("nonfinite", "non-finite predictions on the training data")
            predictions[split] = pred
    return {"params": values, "predictions": predictions, "fit": {"method": "given", "nfev": 0, "starts": 0}}
