"""The trusted code that runs inside the sandbox child around one candidate.

``run`` checks the candidate's output contract (real, numeric, right shape), fits its
constants on the training inputs and returns fitted params and predictions for every
split. It receives read-only column arrays and never the test targets; the score itself is
computed later, outside the sandbox, from these predictions.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import numpy as np

from eqforge.evaluator.fitting import FitOptions, fit_default, fit_llmsr
from eqforge.sandbox.runtime import CandidateFailure
from eqforge.sandbox.scoring import check_output  # the output contract, one definition


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.flags.writeable = False
    return a


def _extremes(columns: list[np.ndarray]) -> tuple[int, ...]:
    """The rows holding each input's smallest and largest value."""
    rows: set[int] = set()
    for c in columns:
        if c.size:
            rows.update((int(np.argmin(c)), int(np.argmax(c))))
    return tuple(sorted(rows))


def prepare_context(X: dict[str, np.ndarray], y_train: np.ndarray) -> dict[str, Any]:
    """Build the data the zygote holds: read-only columns per split, train targets only."""
    return {
        "columns": {s: [_readonly(c) for c in np.asarray(x, float).T] for s, x in X.items()},
        "y_train": _readonly(np.asarray(y_train, float)),
    }


def run(fn: Callable[..., Any], context: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Fit ``fn``'s constants (or take ``options["params"]``) and predict every split.

    Options: ``n_params``; ``fitter`` (``"default"`` or ``"llmsr"``); for the default fitter
    ``indices`` (the params to fit), ``subsample``, ``time_budget``, ``seed``, ``parent``
    (index -> value) and ``fit_options`` (further ``FitOptions`` fields); ``params`` to
    skip fitting; ``predict=False`` to return the fitted params without predictions.
    """
    warnings.simplefilter("ignore")
    with np.errstate(all="ignore"):
        return _run(fn, context, options)


def _run(fn: Callable[..., Any], context: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    columns: dict[str, list[np.ndarray]] = context["columns"]
    y: np.ndarray = context["y_train"]
    n_params = int(options.get("n_params", 10))
    train = columns["train"]
    n = y.shape[0]
    sub_cache: dict[int, list[np.ndarray]] = {}

    def call(cols: list[np.ndarray], p: np.ndarray, rows: int) -> np.ndarray:
        p = np.array(p, dtype=np.float64)
        p.flags.writeable = False
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

    batched: list[bool | None] = [None]  # can fn evaluate many params vectors at once?

    def model_many(P: np.ndarray, rows: np.ndarray | None) -> np.ndarray | None:
        """Predictions (B, m) for params rows P (B, n_params) in one call, or None.

        Inputs go in as columns (m, 1) and ``params[i]`` as a row of B values, so plain
        numpy broadcasting evaluates every vector at once. The first batched call is
        checked against one-at-a-time calls; any failure turns batching off for good.
        """
        if batched[0] is False:
            return None
        cols = train if rows is None else sub_cache.get(id(rows))
        if cols is None:
            model(P[0], rows)  # fills the cache
            cols = sub_cache[id(rows)]
        m = n if rows is None else rows.shape[0]
        B = P.shape[0]
        if not cols or B < 2:
            return None
        Pt = np.array(P.T, dtype=np.float64)
        Pt.flags.writeable = False
        try:
            out = np.asarray(fn(*[c[:, None] for c in cols], Pt))
            if out.shape != (m, B) or out.dtype.kind not in "fiub":
                raise ValueError
            out = np.ascontiguousarray(out.T, dtype=np.float64)
        except Exception:  # noqa: BLE001 - any failure only means: evaluate one at a time
            batched[0] = False
            return None
        if batched[0] is None:
            for i in (0, B - 1):
                one = model(P[i], rows)
                fin = np.isfinite(one)
                scale = np.abs(one[fin]).max(initial=0.0)
                if (not np.array_equal(fin, np.isfinite(out[i]))
                        or not np.all(np.abs(out[i][fin] - one[fin]) <= 1e-9 * np.abs(one[fin]) + 1e-12 * scale)):
                    batched[0] = False
                    return None
            batched[0] = True
        return out

    if options.get("params") is not None:  # prediction only, with given params
        params = np.asarray(options["params"], float)
        fit_info: dict[str, Any] = {"method": "given", "nfev": 0, "starts": 0}
    else:
        # Validate the output contract once before spending time fitting.
        started = time.perf_counter()
        call(train, np.ones(n_params), n)
        if options.get("fitter") == "llmsr":
            res = fit_llmsr(lambda p: call(train, p, n), y, n_params)
        else:
            parent = options.get("parent")
            known = {f.name for f in fields(FitOptions)}
            extra = {k: v for k, v in (options.get("fit_options") or {}).items() if k in known}
            opts = FitOptions(
                n_params=n_params,
                indices=tuple(options["indices"]) if options.get("indices") is not None else None,
                seed=int(options.get("seed", 0)),
                time_budget=float(options.get("time_budget", 10.0)),
                subsample=options.get("subsample", FitOptions.subsample),
                parent={int(k): float(v) for k, v in parent.items()} if parent else None,
                anchors=_extremes(train),
                **extra,
            )
            res = fit_default(model, y, opts, model_many if options.get("batch", True) else None)
        params = res.params
        fit_info = {"method": res.method, "nfev": res.nfev, "starts": res.starts, "loss": res.loss,
                    "seconds": time.perf_counter() - started}
        if res.notes:
            fit_info["notes"] = list(res.notes)

    fit_info["indices"] = (
        list(options["indices"]) if options.get("indices") is not None else list(range(n_params))
    )
    predictions = {}
    if options.get("predict", True):
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
        return p[0] * xs[0] + p[1] * np.exp(-p[2] * xs[0])

    small = {"columns": {"train": [c[:50] for c in cols]}, "y_train": context["y_train"][:50]}
    run(fn, small, {"n_params": 3, "fitter": "llmsr"})
    run(fn, small, {"n_params": 3, "indices": [0, 1, 2], "subsample": 30,
                    "fit_options": {"screen_rows": 20, "screen": 4, "sweep": 3}})
    run(fn, small, {"n_params": 3, "params": [1.0, 1.0, 1.0]})
