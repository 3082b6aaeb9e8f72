"""The trusted code that runs inside the sandbox child around one candidate.

``run`` checks the candidate's output contract (real, numeric, right shape), fits its
constants on the training inputs and returns fitted params and predictions for every
split. It receives read-only column arrays and never the test targets; the score itself is
computed later, outside the sandbox, from these predictions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from eqforge.evaluator.fitting import FitOptions, fit_default, fit_llmsr
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
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.flags.writeable = False
    return a


def prepare_context(X: dict[str, np.ndarray], y_train: np.ndarray) -> dict[str, Any]:
    """Build the data the zygote holds: read-only columns per split, train targets only."""
    return {
        "columns": {s: [_readonly(c) for c in np.asarray(x, float).T] for s, x in X.items()},
        "y_train": _readonly(np.asarray(y_train, float)),
    }


def run(fn: Callable[..., Any], context: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    warnings.simplefilter("ignore")
    columns: dict[str, list[np.ndarray]] = context["columns"]
    y: np.ndarray = context["y_train"]
    n_params = int(options.get("n_params", 10))
    train = columns["train"]
    n = y.shape[0]
    sub_cache: dict[int, list[np.ndarray]] = {}

    def call(cols: list[np.ndarray], p: np.ndarray, rows: int) -> np.ndarray:
        p = np.array(p, dtype=np.float64)
        p.flags.writeable = False
        with np.errstate(all="ignore"):
            return check_output(fn(*cols, p), rows)

    def model(p: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        if rows is None:
            return call(train, p, n)
        cols = sub_cache.get(id(rows))
        if cols is None:
            cols = [_readonly(c[rows]) for c in train]
            sub_cache.clear()
            sub_cache[id(rows)] = cols
        return call(cols, p, rows.shape[0])

    # Validate the output contract once before spending time fitting.
    call(train, np.ones(n_params), n)

    if options.get("params") is not None:  # prediction only, with given params
        params = np.asarray(options["params"], float)
        fit_info: dict[str, Any] = {"method": "given", "nfev": 0, "starts": 0}
    elif options.get("fitter") == "llmsr":
        res = fit_llmsr(lambda p: call(train, p, n), y, n_params)
        params = res.params
        fit_info = {"method": res.method, "nfev": res.nfev, "starts": res.starts, "loss": res.loss}
    else:
        parent = options.get("parent")
        opts = FitOptions(
            n_params=n_params,
            indices=tuple(options["indices"]) if options.get("indices") is not None else None,
            seed=int(options.get("seed", 0)),
            time_budget=float(options.get("time_budget", 10.0)),
            subsample=options.get("subsample"),
            parent={int(k): float(v) for k, v in parent.items()} if parent else None,
        )
        res = fit_default(model, y, opts)
        params = res.params
        fit_info = {"method": res.method, "nfev": res.nfev, "starts": res.starts, "loss": res.loss}

    fit_info["indices"] = (
        list(options["indices"]) if options.get("indices") is not None else list(range(n_params))
    )
    predictions = {}
    for split, cols in columns.items():
        rows = cols[0].shape[0] if cols else n
        pred = call(cols, params, rows)
        if split == "train" and not np.all(np.isfinite(pred)):
            raise CandidateFailure("nonfinite", "non-finite predictions on the training data")
        predictions[split] = pred
    return {"params": params, "predictions": predictions, "fit": fit_info}


def warmup(context: dict[str, Any]) -> None:
    """Exercise the fitters once in the zygote so no lazy import happens in a child."""
    cols = context["columns"]["train"]
    if not cols:
        return

    def fn(*args: np.ndarray) -> np.ndarray:
        *xs, p = args
        return p[0] * xs[0] + p[1]

    small = {"columns": {"train": [c[:50] for c in cols]}, "y_train": context["y_train"][:50]}
    run(fn, small, {"n_params": 2, "fitter": "llmsr"})
    run(fn, small, {"n_params": 2, "indices": [0, 1], "subsample": 20})
