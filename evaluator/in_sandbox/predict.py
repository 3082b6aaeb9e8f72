"""The candidate side of fitting and scoring: (given inputs, parameter vectors) → predictions.

The trusted driver (``evaluator.runner``) runs the optimiser and asks, one round trip at a
time, for the program's predictions at a batch of parameter vectors, on the training rows
or on a row subset it registered before, or on another split. This is all a candidate
process does: it holds the inputs it was forked with, never the targets, and what it
answers is checked again on the trusted side (shape, element count).

The trusted side chooses which rows, and in which order, a program is shown (see
``evaluator.pointwise``): the row indices it sends are applied here, by this runner, and
the program only ever receives the selected columns. Operations (``Call.op``):

* ``rows`` — ``args.id``, ``args.split`` (default train), ``arrays.rows``: remember these
  rows of that split, in that order, under that id (resident for the process's life);
* ``predict`` — ``arrays.params`` (B, k), ``args.split`` or ``args.rows`` (a row-set id;
  with ``arrays.rows`` too, the set is registered first, in the same round trip),
  ``args.mode``: ``"each"`` calls the program once per vector; ``"batch"`` once for all
  (inputs as columns (m, 1), ``params[i]`` as a row of B values: plain numpy broadcasting),
  answering ``refused`` when the program does not broadcast that way;
* ``sets`` — ``arrays.params`` (1, k) and ``args.count`` row sets, the i-th given by
  ``arrays.rows{i}``, ``args.split{i}`` and ``args.probe{i}``, evaluated in that order
  (``values{i}``). A probe that raises is reported in ``failed`` rather than ending the
  process: a pointwise program cannot fail on a subset of rows it answers in full.
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
            _register(inputs, call, state)
            return Reply(True)
        if call.op == "sets":
            return _sets(fn, inputs, call)
        if call.op != "predict":
            raise CandidateFailure("crash", f"unknown operation {call.op!r}")
        if "rows" in call.arrays:
            _register(inputs, call, state)
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


def _select(inputs: dict[str, list[np.ndarray]], split: str, rows: np.ndarray) -> list[np.ndarray]:
    """The columns of ``split`` at ``rows`` (float indices from the trusted side), read-only."""
    cols = inputs[split]
    n = cols[0].shape[0] if cols else 0
    idx = np.asarray(rows, dtype=np.float64).ravel()
    if idx.size and (not np.all(idx == np.floor(idx)) or idx.min() < 0 or idx.max() >= n):
        raise CandidateFailure("crash", "row indices out of range")
    pick = idx.astype(np.intp)
    return [_readonly(c[pick]) for c in cols]


def _register(inputs: dict[str, list[np.ndarray]], call: Call, state: dict[str, Any]) -> None:
    cols = _select(inputs, str(call.args.get("split", "train")), call.arrays["rows"])
    state.setdefault("rows", {})[int(call.args.get("id", call.args.get("rows", 0)))] = cols


def _sets(fn: Callable[..., Any], inputs: dict[str, list[np.ndarray]], call: Call) -> Reply:
    P = np.asarray(call.arrays["params"], dtype=np.float64)
    if P.shape[:1] != (1,) or P.ndim != 2:
        raise CandidateFailure("crash", "sets takes one params vector")
    count = int(call.args["count"])
    failed = np.zeros(count)
    out: dict[str, np.ndarray] = {}
    for i in range(count):
        cols = _select(inputs, str(call.args[f"split{i}"]), call.arrays[f"rows{i}"])
        m = cols[0].shape[0] if cols else 0
        if call.args.get(f"probe{i}"):
            try:
                out[f"values{i}"] = check_output(fn(*cols, _readonly(P[0])), m)
            except Exception:  # noqa: BLE001 - reported: the trusted side decides what it means
                out[f"values{i}"] = np.full(m, np.nan)
                failed[i] = 1.0
        else:
            out[f"values{i}"] = check_output(fn(*cols, _readonly(P[0])), m)
    out["failed"] = failed
    return Reply(True, out)


def _batch(fn: Callable[..., Any], cols: list[np.ndarray], P: np.ndarray, m: int) -> Reply:
    B = P.shape[0]
    try:
        out = np.asarray(fn(*[c[:, None] for c in cols], _readonly(P.T)))
        if out.shape != (m, B) or out.dtype.kind not in "fiub":
            raise ValueError
        return Reply(True, {"values": np.ascontiguousarray(out.T, dtype=np.float64)})
    except Exception:  # noqa: BLE001 - any failure only means: evaluate one at a time
        return Reply(False, reason="refused", detail="does not broadcast over parameter vectors")
