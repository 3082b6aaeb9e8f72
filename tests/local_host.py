"""The trusted fitting driver with the candidate called in this process: for trusted test programs.

``runner.fit_job`` talks to candidate processes through a host; this one answers each
``Call`` by running ``in_sandbox.predict.serve`` here, so fitter tests exercise the very
driver and candidate-side code the sandbox runs, without processes. Never for untrusted code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eqforge.evaluator import runner
from eqforge.evaluator.in_sandbox import predict
from eqforge.sandbox.messages import Call, Job, Reply
from eqforge.sandbox.runtime import CandidateFailure


class _Session:
    def __init__(self, fn: Any, inputs: dict[str, list[np.ndarray]]) -> None:
        self.fn, self.inputs, self.state = fn, inputs, {}

    def call(self, op: str, args: Any = None, arrays: Any = None, expect: Any = None,
             refusable: bool = False) -> Reply:
        reply = predict.serve(self.fn, self.inputs, Call(op, dict(args or {}), dict(arrays or {})), self.state)
        if not reply.ok:
            if refusable and reply.reason == "refused":
                return reply
            raise CandidateFailure(reply.reason, reply.detail)
        if expect is not None:
            assert {k: v.shape for k, v in reply.arrays.items()} == dict(expect)
        return reply

    def close(self) -> int:
        return 0


class LocalHost:
    def __init__(self, fn: Any, X: dict[str, np.ndarray], y: np.ndarray) -> None:
        self.fn = fn
        self.inputs = {s: [np.ascontiguousarray(c, dtype=float) for c in np.asarray(x, float).T] for s, x in X.items()}
        self.rows = {s: int(np.asarray(x).shape[0]) for s, x in X.items()}
        train = np.asarray(X["train"], float)
        extremes = sorted({int(i) for c in train.T for i in (np.argmin(c), np.argmax(c))})
        self.trusted = {"y_train": np.asarray(y, float), "extremes": np.array(extremes, float)}
        self.opened = 0

    def open(self, grace: float = 0.0) -> _Session:
        self.opened += 1
        return _Session(self.fn, self.inputs)


def local_fit(fn: Any, X: dict[str, np.ndarray], y: np.ndarray, options: dict[str, Any],
              timeout: float = 30.0) -> dict[str, Any]:
    job = Job(id=0, program="", entry="equation", runner=runner.PREDICT, driver=runner.DRIVER,
              options=options, timeout=timeout)
    return runner.fit_job(LocalHost(fn, X, y), job)
