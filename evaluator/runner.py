"""The trusted driver of one evaluation: the optimiser here, the candidate over there.

Runs in the sandbox's zygote, which holds the training targets and never runs candidate
code; the fitter (``evaluator.fit``) runs here too. A candidate process only maps (rows it
is shown, parameter vectors) to predictions (``evaluator.in_sandbox.predict``); this module

1. opens a *fit* process and runs the fitter against it, one round trip per batch of
   parameter vectors (so a finite-difference Jacobian is one round trip). Its first call
   is the output contract at ones with a pointwise probe; its last predicts every split
   at the final params;
2. closes it — killed and reaped — and opens a fresh *scoring* process, forked from the
   same clean factory under another uid and IPC namespace, which receives nothing but the
   final parameter vector and predicts probes and then every split, in one round trip;
3. enforces the pointwise contract (``pointwise``): each process sees every row set in its
   own hidden random order, probes must agree with the full splits, and the two processes
   must agree with each other — else ``policy:row-coupling``;
4. returns the accepted parameters (exactly the indices the trusted analysis found the
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
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from eqforge.evaluator import pointwise
from eqforge.evaluator.fit import FitOptions, fit_default, fit_llmsr
from eqforge.evaluator.fit_job import FitJob, FitPayload
from eqforge.evaluator.roles import ANALYZE, DRIVER, PREDICT
from eqforge.sandbox.messages import Job, Reply
from eqforge.sandbox.runtime import CandidateFailure

__all__ = ["ANALYZE", "DRIVER", "PREDICT", "Remote", "fit_job", "warmup"]


class Session(Protocol):
    """One candidate process, as the sandbox's ``worker.Session`` offers it."""

    def call(self, op: str, args: Mapping[str, Any] | None = None, arrays: Mapping[str, np.ndarray] | None = None,
             expect: Mapping[str, tuple[int, ...]] | None = None, refusable: bool = False) -> Reply: ...

    def close(self) -> int: ...


class Host(Protocol):
    """What the sandbox hands a driver (``worker.Host``): trusted data, split sizes, processes."""

    trusted: Mapping[str, np.ndarray]
    rows: Mapping[str, int]

    def open(self, grace: float = 0.0) -> Session: ...


class Remote:
    """The fitter's model callables, answered by one candidate process.

    Every row set is registered once (resident in the candidate process, never re-sent) in
    a hidden order of its own, in the round trip that first uses it; answers are mapped
    back to the order the fitter asked for."""

    def __init__(self, session: Session, n: int, rng: np.random.Generator, hidden: bool = True,
                 batch: bool = True) -> None:
        self.session = session
        self.n = n
        self.rng = rng
        self.hidden = hidden
        self.batched: bool | None = None if batch else False
        self._sets: dict[int, tuple[np.ndarray | None, pointwise.Shown, int]] = {}
        self._registered: set[int] = set()
        self.calls = 0  # round trips to the candidate process

    def _row_set(self, rows: np.ndarray | None) -> tuple[dict[str, Any], dict[str, np.ndarray], pointwise.Shown]:
        key = -1 if rows is None else id(rows)
        entry = self._sets.get(key)
        if entry is None or entry[0] is not rows:
            shown = pointwise.show(np.arange(self.n) if rows is None else rows, self.rng, self.hidden)
            entry = self._sets[key] = (rows, shown, len(self._sets))  # keeps ``rows`` alive: ids stay unique
        _, shown, rid = entry
        extra = {} if rid in self._registered else {"rows": shown.sent.astype(np.float64)}
        return {"rows": rid}, extra, shown

    def _call(self, P: np.ndarray, rows: np.ndarray | None, mode: str) -> np.ndarray | None:
        args, extra, shown = self._row_set(rows)
        P = np.ascontiguousarray(P, dtype=np.float64)
        self.calls += 1
        reply = self.session.call("predict", {**args, "mode": mode}, {"params": P, **extra},
                                  expect={"values": (P.shape[0], shown.sent.size)}, refusable=mode == "batch")
        self._registered.add(int(args["rows"]))  # registered before predicting, refused or not
        return shown.back(reply.arrays["values"]) if reply.ok else None

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

    def sets(self, p: np.ndarray, requests: list[tuple[str, np.ndarray, bool]]) -> list[np.ndarray]:
        """Predictions at ``p`` of several row sets ``(split, rows, probe)``, in that order, in
        one round trip, each in a fresh hidden order; a probe that failed is all NaN, and
        a failed probe whose rows a full set answers is row coupling."""
        shown = [pointwise.show(rows, self.rng, self.hidden) for _, rows, _ in requests]
        args: dict[str, Any] = {"count": len(requests)}
        arrays: dict[str, np.ndarray] = {"params": np.asarray(p, np.float64)[None, :]}
        expect: dict[str, tuple[int, ...]] = {"failed": (len(requests),)}
        for i, ((split, _, probe), s) in enumerate(zip(requests, shown, strict=True)):
            args[f"split{i}"], args[f"probe{i}"] = split, probe
            arrays[f"rows{i}"] = s.sent.astype(np.float64)
            expect[f"values{i}"] = (s.sent.size,)
        self.calls += 1
        reply = self.session.call("sets", args, arrays, expect=expect)
        failed = reply.arrays["failed"]
        if np.any(failed != 0):
            pointwise.require(False, "the program fails on a subset of rows it answers in full")
        return [s.back(reply.arrays[f"values{i}"]) for i, s in enumerate(shown)]


def _checked(remote: Remote, p: np.ndarray, rows: Mapping[str, int], with_probes: bool,
             ) -> dict[str, np.ndarray]:
    """Every split's predictions at ``p`` from one process, probes (small random subsets,
    each predicted alone, before any full split) checked against them."""
    probes = [(s, pointwise.probe_rows(m, remote.rng)) for s, m in rows.items()] if with_probes else []
    requests = [(s, r, True) for s, r in probes if r.size] + [(s, np.arange(m), False) for s, m in rows.items()]
    values = remote.sets(p, requests)
    full = dict(zip(rows, values[len(requests) - len(rows):], strict=True))
    for (split, r, _), v in zip(requests, values, strict=False):
        if r.size and len(r) < rows[split] and split in full:
            pointwise.require(pointwise.agree(v, full[split][r]), f"{split}: a subset alone vs in the full split",
                              v, full[split][r])
    return full


def fit_job(host: Host, job: Job) -> FitPayload:
    """Fit (unless the job gives params) and predict every split; see the module doc."""
    warnings.simplefilter("ignore")
    with np.errstate(all="ignore"):
        return _fit_job(host, job, FitJob.of(job.options))


def _fit_job(host: Host, job: Job, options: FitJob) -> FitPayload:
    y = host.trusted["y_train"]
    n = int(y.shape[0])
    n_params = options.n_params
    indices = list(options.indices) if options.indices is not None else list(range(n_params))
    if options.fitter == "llmsr" or any(i < 0 or i >= n_params for i in indices):
        indices = list(range(n_params))
    hidden = options.pointwise
    rng = pointwise.entropy_rng()  # orders and probes: from the OS, never from the job's seed
    fit_info: dict[str, Any] = {"method": "given", "nfev": 0, "starts": 0, "pointwise": hidden}
    started = time.perf_counter()
    session = host.open()
    remote = Remote(session, n, rng, hidden, batch=options.batch)
    ones = np.ones(n_params)
    if options.params is not None:
        params = np.ones(n_params)
        given = np.asarray(options.params, np.float64)[:n_params]
        params[: given.size] = given
    else:
        # the output contract, once, before fitting: at ones, with a probe of the training rows
        _checked(remote, ones, {"train": n}, hidden)
        if options.fitter == "llmsr":
            res = fit_llmsr(lambda p: remote.predict(p, None), y, n_params)
        else:
            # the whole fit ends before the job does, leaving the scoring process its time
            total = float(job.timeout) - (time.perf_counter() - started) - max(0.5, 0.05 * float(job.timeout))
            opts = options.fit_options_for(tuple(indices), _extremes(host.trusted), total)
            res = fit_default(remote.predict, y, opts, remote.predict_many if options.batch else None,
                              remote.predict_each)
        params = np.ones(n_params)
        params[indices] = np.asarray(res.params, np.float64)[indices]
        fit_info = {"method": res.method, "nfev": res.nfev, "starts": res.starts, "loss": float(res.loss),
                    "pointwise": hidden}
        if res.notes:
            fit_info["notes"] = list(res.notes)
    # every split at the final params, in this process's own order: compared with the scoring process
    fitted = _checked(remote, params, host.rows, False) if hidden else {}
    session.close()  # killed and reaped before the scoring process exists
    fit_info.update(seconds=time.perf_counter() - started)
    fit_info["indices"] = indices
    # The predictions that get scored: a fresh process, given only the final vector.
    scoring = Remote(host.open(grace=max(1.0, 0.25 * float(job.timeout))), n, rng, hidden)
    predictions = _checked(scoring, params, host.rows, hidden)
    scoring.session.close()
    fit_info["round_trips"] = remote.calls + scoring.calls
    if isinstance(getattr(host, "cpu", None), float):
        fit_info["candidate_cpu"] = float(host.cpu)  # type: ignore[attr-defined] # reaped candidates' CPU
    for split, values in fitted.items():
        pointwise.require(pointwise.agree(values, predictions[split]),
                          f"{split}: two processes, each with its own row order and probes", values,
                          predictions[split])
    if not np.all(np.isfinite(predictions.get("train", np.zeros(1)))):
        raise CandidateFailure("nonfinite", "non-finite predictions on the training data")
    if "loss" in fit_info:
        scored = float(np.mean((predictions["train"] - y) ** 2))
        fit_info["reproduced"] = bool(abs(scored - fit_info["loss"]) <= 1e-6 * max(scored, fit_info["loss"]) + 1e-300)
    return {"params": params.tolist(), "n_params": len(indices), "predictions": predictions, "fit": fit_info}


def _extremes(trusted: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    return tuple(int(i) for i in trusted.get("extremes", np.empty(0)))


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
