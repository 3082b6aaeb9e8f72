"""The trusted driver of one evaluation: the optimiser here, the candidate over there.

Runs in the sandbox's zygote, which holds the training targets and never runs candidate
code. A candidate process only maps (the inputs it was forked with, parameter vectors) to
predictions (``evaluator.in_sandbox.predict``); this module

1. opens a *fit* process and runs the fitter (``fitting``) against it, one round trip per
   batch of parameter vectors (so a finite-difference Jacobian is one round trip);
2. closes it — killed and reaped — and opens a fresh *scoring* process, forked from the
   same clean factory under another uid and IPC namespace, which receives nothing but the
   final parameter vector and predicts every split;
3. returns the accepted parameters (exactly the indices the trusted analysis found the
   program to use; the others stay at 1.0), their count, the fit information and the
   scoring process's predictions, from which the main process's ``Scorer`` computes every
   score.

A candidate can therefore not report its own loss, params or ``n_params``, and nothing it
learns or keeps while it is being fitted — by introspection, raw memory or state kept
between calls — reaches the predictions that are scored.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import fields
from typing import Any

import numpy as np

from eqforge.evaluator.fitting import FitOptions, fit_default, fit_llmsr
from eqforge.evaluator.roles import ANALYZE, DRIVER, PREDICT
from eqforge.sandbox.runtime import CandidateFailure

__all__ = ["ANALYZE", "DRIVER", "PREDICT", "Remote", "fit_job", "warmup"]


class Remote:
    """The fitter's model callables, answered by a candidate process."""

    def __init__(self, session: Any, n: int, batch: bool = True) -> None:
        self.session = session
        self.n = n
        self.batched: bool | None = None if batch else False
        self._rows: dict[int, tuple[np.ndarray, int]] = {}
        self.calls = 0  # round trips to the candidate process

    def _rows_id(self, rows: np.ndarray | None) -> dict[str, Any]:
        if rows is None:
            return {"split": "train"}
        entry = self._rows.get(id(rows))
        if entry is None or entry[0] is not rows:
            rid = len(self._rows)
            self.session.call("rows", {"id": rid}, {"rows": np.asarray(rows, np.float64)}, expect={})
            entry = self._rows[id(rows)] = (rows, rid)  # keeps ``rows`` alive: ids stay unique
        return {"rows": entry[1]}

    def _call(self, P: np.ndarray, rows: np.ndarray | None, mode: str) -> np.ndarray | None:
        m = self.n if rows is None else int(rows.shape[0])
        P = np.ascontiguousarray(P, dtype=np.float64)
        self.calls += 1
        reply = self.session.call("predict", {**self._rows_id(rows), "mode": mode}, {"params": P},
                                  expect={"values": (P.shape[0], m)}, refusable=mode == "batch")
        return reply.arrays["values"] if reply.ok else None

    def predict(self, p: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        out = self._call(np.asarray(p, np.float64)[None, :], rows, "each")
        assert out is not None
        return out[0]

    def predict_each(self, P: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """Predictions (B, m), each vector evaluated on its own, in one round trip."""
        out = self._call(P, rows, "each")
        assert out is not None
        return out

    def predict_many(self, P: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """Predictions (B, m) in one round trip; batched when the program broadcasts."""
        if self.batched is not False and P.shape[0] >= 2:
            out = self._call(P, rows, "batch")
            if out is not None and self.batched is None:
                # the first batched answer is checked against one-at-a-time calls
                each = self._call(P[[0, -1]], rows, "each")
                assert each is not None
                for one, many in zip(each, out[[0, -1]], strict=True):
                    fin = np.isfinite(one)
                    scale = np.abs(one[fin]).max(initial=0.0)
                    if (not np.array_equal(fin, np.isfinite(many))
                            or not np.all(np.abs(many[fin] - one[fin]) <= 1e-9 * np.abs(one[fin]) + 1e-12 * scale)):
                        out = None
                        break
                self.batched = out is not None
            elif out is None:
                self.batched = False
            if out is not None:
                return out
        out = self._call(P, rows, "each")
        assert out is not None
        return out


def _extremes(columns: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(i) for i in columns.get("extremes", np.empty(0)))


def fit_job(host: Any, job: Any) -> dict[str, Any]:
    """Fit (unless ``options.params`` is given) and predict every split; see the module doc."""
    warnings.simplefilter("ignore")
    with np.errstate(all="ignore"):
        return _fit_job(host, job)


def _fit_job(host: Any, job: Any) -> dict[str, Any]:
    options = job.options
    y = host.trusted["y_train"]
    n = int(y.shape[0])
    n_params = int(options.get("n_params", 10))
    fitter = options.get("fitter", "default")
    indices = [int(i) for i in options["indices"]] if options.get("indices") is not None else list(range(n_params))
    if fitter == "llmsr" or any(i < 0 or i >= n_params for i in indices):
        indices = list(range(n_params))
    fit_info: dict[str, Any] = {"method": "given", "nfev": 0, "starts": 0}
    if options.get("params") is not None:
        params = np.ones(n_params)
        given = np.asarray(options["params"], np.float64).ravel()[:n_params]
        params[: given.size] = given
    else:
        started = time.perf_counter()
        session = host.open()
        remote = Remote(session, n, batch=bool(options.get("batch", True)))
        remote.predict(np.ones(n_params), None)  # the output contract, once, before fitting
        if fitter == "llmsr":
            res = fit_llmsr(lambda p: remote.predict(p, None), y, n_params)
        else:
            parent = options.get("parent")
            known = {f.name for f in fields(FitOptions)}
            extra = {k: v for k, v in (options.get("fit_options") or {}).items() if k in known}
            opts = FitOptions(
                n_params=n_params, indices=tuple(indices), seed=int(options.get("seed", 0)),
                time_budget=float(options.get("time_budget", 10.0)),
                subsample=options.get("subsample", FitOptions.subsample),
                parent={int(k): float(v) for k, v in parent.items()} if parent else None,
                anchors=_extremes(host.trusted), **extra,
            )
            res = fit_default(remote.predict, y, opts, remote.predict_many if options.get("batch", True) else None,
                              remote.predict_each)
        session.close()  # killed and reaped before the scoring process exists
        params = np.ones(n_params)
        params[indices] = np.asarray(res.params, np.float64)[indices]
        fit_info = {"method": res.method, "nfev": res.nfev, "starts": res.starts, "loss": float(res.loss),
                    "seconds": time.perf_counter() - started, "round_trips": remote.calls}
        if res.notes:
            fit_info["notes"] = list(res.notes)
    fit_info["indices"] = indices
    # The predictions that get scored: a fresh process, given only the final vector.
    scoring = host.open(grace=max(1.0, 0.25 * float(job.timeout)))
    predictions = {}
    for split, m in host.rows.items():
        reply = scoring.call("predict", {"split": split, "mode": "each"}, {"params": params[None, :]},
                             expect={"values": (1, m)})
        predictions[split] = reply.arrays["values"][0]
    scoring.close()
    if not np.all(np.isfinite(predictions.get("train", np.zeros(1)))):
        raise CandidateFailure("nonfinite", "non-finite predictions on the training data")
    if "loss" in fit_info:
        scored = float(np.mean((predictions["train"] - y) ** 2))
        fit_info["reproduced"] = bool(abs(scored - fit_info["loss"]) <= 1e-6 * max(scored, fit_info["loss"]) + 1e-300)
    return {"params": params.tolist(), "n_params": len(indices), "predictions": predictions, "fit": fit_info}


def warmup(trusted: dict[str, Any]) -> None:
    """Exercise the fitters once in the zygote (trusted, local model) so lazy imports happen
    before the first job."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 2.0, 60)
    y = 1.3 * x + 0.7 * np.exp(-0.4 * x)

    def model(p: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        xs = x if rows is None else x[rows]
        return p[0] * xs + p[1] * np.exp(-p[2] * xs)

    def many(P: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        return np.stack([model(p, rows) for p in P])

    fit_llmsr(lambda p: model(p), y, 3)
    fit_default(model, y, FitOptions(n_params=3, indices=(0, 1, 2), subsample=30, screen_rows=20, screen=4,
                                     sweep=3), many)
