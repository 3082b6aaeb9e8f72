"""Scoring programs against a problem: policy, sandboxed fit, trusted metrics.

``Evaluator`` is what the discovery loop and ``eqforge evaluate`` use. It checks a program
against the policy and finds the params it uses in the main process (bounded, no
execution), hands the sandbox the evaluator's own runners — the trusted fitting driver
(``runner``) and the candidate-side predictor (``in_sandbox.predict``) — and turns each
``Outcome`` into an ``EvalResult`` with the ``Scorer``: the score (−MSE on the full
training split) and the test metrics are computed here, from the scoring process's
predictions and targets no candidate process ever held.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import Future
from pathlib import Path
from typing import Any, cast

import numpy as np
from pydantic import BaseModel, Field

from eqforge.config import Config, EvaluatorConfig
from eqforge.evaluator import jsonl, metrics
from eqforge.evaluator.fit_job import FitJob, FitPayload
from eqforge.evaluator.params import param_usage
from eqforge.evaluator.roles import ANALYZE, DRIVER, PREDICT
from eqforge.problems.entry import ENTRY
from eqforge.problems.spec import SPLITS, Problem
from eqforge.sandbox.messages import Job, Outcome, Setup, TrustedData
from eqforge.sandbox.policy import Policy, check
from eqforge.sandbox.pool import SandboxPool


class EvalResult(BaseModel):
    """The fate of one program: a score and metrics, or a failure reason."""

    ok: bool
    error: str | None = None
    detail: str = ""
    score: float | None = None
    params: list[float] | None = None
    n_params: int | None = Field(None, description="number of params fitted")
    nmse: dict[str, float | None] = Field(default_factory=dict)
    metrics: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    fit: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0
    output: str = ""

    @classmethod
    def failure(cls, reason: str, detail: str = "", seconds: float = 0.0) -> EvalResult:
        return cls(ok=False, error=reason, detail=detail, seconds=seconds)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _columns(X: np.ndarray) -> tuple[np.ndarray, ...]:
    cols = []
    for c in np.asarray(X, float).T:
        c = np.ascontiguousarray(c)
        c.flags.writeable = False
        cols.append(c)
    return tuple(cols)


def _extremes(X: np.ndarray) -> np.ndarray:
    """The training rows holding each input's smallest and largest value (subsample anchors)."""
    X = np.asarray(X, float)
    rows = {int(i) for c in X.T if c.size for i in (np.argmin(c), np.argmax(c))}
    return np.array(sorted(rows), float)


class Scorer:
    """Scores from a scoring process's predictions and the true values: trusted code only."""

    def __init__(self, targets: dict[str, np.ndarray], tau: float = 0.1) -> None:
        self.targets = targets
        self.tau = tau

    def __call__(self, outcome: Outcome) -> EvalResult:
        seconds, output = float(outcome.seconds), str(outcome.output)[:2000]
        if not outcome.ok:
            return EvalResult(ok=False, error=outcome.reason or "crash", detail=str(outcome.detail)[:500],
                              seconds=seconds, output=output)
        payload = cast(FitPayload, outcome.payload)
        preds = payload["predictions"]
        results: dict[str, dict[str, float | None]] = {}
        for split in SPLITS:
            if split not in self.targets:
                continue
            pred = np.asarray(preds.get(split), float)
            y = self.targets[split]
            if pred.shape != y.shape:
                return EvalResult.failure("shape", f"{split} predictions have shape {pred.shape}")
            results[split] = metrics.all_metrics(y, pred, self.tau)
        train_mse = results["train"]["mse"]
        if train_mse is None:
            return EvalResult(ok=False, error="nonfinite", detail="training loss is not finite",
                              seconds=seconds, output=output)
        return EvalResult(
            ok=True,
            score=-train_mse,
            params=[float(v) for v in payload["params"]],
            n_params=int(payload["n_params"]),
            nmse={s: results[s]["nmse"] if s in results else None for s in SPLITS},
            metrics=results,
            fit=dict(payload.get("fit", {})),
            seconds=seconds,
            output=output,
        )


class Evaluator:
    """Owns a sandbox pool for one problem. Use as a context manager or call ``close``."""

    def __init__(
        self,
        problem: Problem,
        config: EvaluatorConfig | None = None,
        *,
        policy: Policy | None = None,
        tau: float = 0.1,
    ) -> None:
        self.problem = problem
        self.config = config or EvaluatorConfig()
        extra = (*problem.spec.allowed_imports, *self.config.allowed_imports)
        self.policy = (policy or Policy()).widened(extra)
        self.tau = tau
        self._pool: SandboxPool | None = None
        self.scorer = Scorer({s: sp.y for s, sp in problem.splits.items()}, tau)
        self._ids = 0

    # lifecycle ---------------------------------------------------------------------------
    @property
    def pool(self) -> SandboxPool:
        if self._pool is None:
            setup = Setup(
                inputs={s: _columns(sp.X) for s, sp in self.problem.splits.items()},
                runners=(PREDICT, ANALYZE),
                drivers=(DRIVER,),
                allowed_imports=tuple(self.policy.allowed_imports),
                memory_bytes=self.config.memory_mb * 1024 * 1024,
            )
            trusted = TrustedData({"y_train": np.asarray(self.problem.train.y, float),
                                   "extremes": _extremes(self.problem.train.X)})
            if self.config.ray:  # the same pools, on the nodes of a Ray cluster
                from eqforge.sandbox.distributed import DistributedPool

                # the same submit/close interface as a SandboxPool, on the cluster's nodes
                self._pool = cast(SandboxPool, DistributedPool(self.config.ray, setup, trusted,
                                                               workers=self.config.workers))
            else:
                self._pool = SandboxPool(setup, trusted, workers=self.config.workers or default_workers())
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # evaluation --------------------------------------------------------------------------
    def _job(self, code: str, *, parent: dict[int, float] | None, seed: int,
             params: list[float] | None) -> Job | EvalResult:
        try:
            violation = check(code, self.policy)
            usage = None if violation is not None else param_usage(code)
        except Exception as exc:  # noqa: BLE001 - no source text may crash the trusted side
            return EvalResult.failure("policy:unparsable", f"{type(exc).__name__}: {str(exc)[:200]}")
        if violation is not None or usage is None:
            return EvalResult.failure(violation.reason if violation else "policy:unparsable",
                                      violation.detail if violation else "")
        max_p = self.config.max_params
        if usage.highest >= max_p:
            return EvalResult.failure(
                "params:too-many", f"uses params[{usage.highest}] but at most {max_p} are allowed"
            )
        cfg = self.config
        default = cfg.fitter == "default"
        options = FitJob(
            n_params=max_p, fitter=cfg.fitter, seed=seed,
            indices=tuple(usage.fit_indices(max_p)) if default else None,
            subsample=cfg.fit_subsample,
            time_budget=cfg.fit_time_budget or cfg.timeout * 0.5,
            parent={int(k): float(v) for k, v in parent.items()} if default and parent else None,
            params=tuple(float(v) for v in params) if params is not None else None,
            pointwise=self.problem.spec.pointwise,
        )
        self._ids += 1
        return Job(id=self._ids, program=code, entry=ENTRY, runner=PREDICT, driver=DRIVER, options=options,
                   timeout=self.config.timeout)

    def submit(
        self,
        code: str,
        *,
        parent: dict[int, float] | None = None,
        seed: int = 0,
        params: list[float] | None = None,
    ) -> Future:
        """Start evaluating ``code``; the future resolves to an ``EvalResult``."""
        job = self._job(code, parent=parent, seed=seed, params=params)
        out: Future = Future()
        if isinstance(job, EvalResult):
            out.set_result(job)
            return out
        inner = self.pool.submit(job)

        def done(f: Future) -> None:
            try:
                out.set_result(self.scorer(f.result()))
            except Exception as exc:  # noqa: BLE001 - surface as a crash result, never lose it
                out.set_result(EvalResult.failure("crash", f"{type(exc).__name__}: {exc}"))

        inner.add_done_callback(done)
        return out

    async def evaluate(self, code: str, **kw: Any) -> EvalResult:
        return await asyncio.wrap_future(self.submit(code, **kw))

    def evaluate_many(self, codes: list[str], **kw: Any) -> list[EvalResult]:
        return [f.result() for f in [self.submit(c, **kw) for c in codes]]

    def predict(self, code: str, params: list[float]) -> dict[str, np.ndarray] | None:
        """Predictions of ``code`` with fixed ``params`` on every split (for plots)."""
        job = self._job(code, parent=None, seed=0, params=params)
        if isinstance(job, EvalResult):
            return None
        outcome = self.pool.submit(job).result()
        if not outcome.ok:
            return None
        return dict(outcome.payload["predictions"])


#: what ``eqforge evaluate`` writes of each program's EvalResult
EVALUATE_FIELDS = {"ok", "error", "detail", "score", "params", "n_params", "nmse", "metrics", "seconds"}


def evaluate_file(
    problem: Problem, programs: Path, out: Path, config: Config | None = None
) -> list[dict[str, Any]]:
    """Score ``{"id", "code"}`` lines of ``programs``; write one result line each to ``out``."""
    config = config or Config()
    items = [(obj.get("id", str(i)), obj["code"]) for i, obj in jsonl.read_inputs(programs, "code")]
    rows = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with Evaluator(problem, config.evaluator) as ev, out.open("w", encoding="utf-8") as fh:
        futures = [(pid, ev.submit(code, seed=config.run.seed)) for pid, code in items]
        for pid, fut in futures:
            res: EvalResult = fut.result()
            row = {"id": pid, **res.model_dump(include=EVALUATE_FIELDS)}
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            rows.append(row)
    return rows
