"""The candidate side of fitting and scoring: (given inputs, parameter vectors) → predictions.

The trusted driver (``evaluator.runner``) runs the optimiser and asks, one round trip at a
time, for the program's predictions at a batch of parameter vectors, on the training rows
or on a row subset it registered before, or on another split. This is all a candidate
process does: it holds the inputs it was forked with, never the targets, and what it
answers is checked again on the trusted side (shape, element count).

Operations (``Call.op``):

* ``rows`` — ``args.id``, ``arrays.rows``: remember these training rows under that id;
* ``predict`` — ``arrays.params`` (B, k), ``args.split`` or ``args.rows`` (a row-set id),
  ``args.mode``: ``"each"`` calls the program once per vector; ``"batch"`` once for all
  (inputs as columns (m, 1), ``params[i]`` as a row of B values: plain numpy broadcasting),
  answering ``refused`` when the program does not broadcast that way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from eqforge.sandbox.messages import Call, Reply
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


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.flags.writeable = False
    return a


def serve(fn: Callable[..., Any], inputs: dict[str, list[np.ndarray]], call: Call, state: dict[str, Any]) -> Reply:
    warnings.simplefilter("ignore")
    with np.errstate(all="ignore"):
        if call.op == "rows":
            train = inputs["train"]
            n = train[0].shape[0] if train else 0
            idx = np.asarray(call.arrays["rows"], dtype=np.float64).ravel()
            if idx.size and (not np.all(idx == np.floor(idx)) or idx.min() < 0 or idx.max() >= n):
                raise CandidateFailure("crash", "row indices out of range")
            rows = idx.astype(np.intp)
            state.setdefault("rows", {})[int(call.args["id"])] = [_readonly(c[rows]) for c in train]
            return Reply(True)
        if call.op != "predict":
            raise CandidateFailure("crash", f"unknown operation {call.op!r}")
        if "rows" in call.args:
            cols = state["rows"][int(call.args["rows"])]
        else:
            cols = inputs[str(call.args.get("split", "train"))]
        m = cols[0].shape[0] if cols else 0
        P = np.asarray(call.arrays["params"], dtype=np.float64)
        if P.ndim != 2:
            raise CandidateFailure("crash", "params must be a (B, k) array")
        if call.args.get("mode") == "batch":
            return _batch(fn, cols, P, m)
        out = np.empty((P.shape[0], m))
        for i in range(P.shape[0]):
            out[i] = check_output(fn(*cols, _readonly(P[i])), m)
        return Reply(True, {"values": out})


def _batch(fn: Callable[..., Any], cols: list[np.ndarray], P: np.ndarray, m: int) -> Reply:
    B = P.shape[0]
    try:
        out = np.asarray(fn(*[c[:, None] for c in cols], _readonly(P.T)))
        if out.shape != (m, B) or out.dtype.kind not in "fiub":
            raise ValueError
        return Reply(True, {"values": np.ascontiguousarray(out.T, dtype=np.float64)})
    except Exception:  # noqa: BLE001 - any failure only means: evaluate one at a time
        return Reply(False, reason="refused", detail="does not broadcast over parameter vectors")
