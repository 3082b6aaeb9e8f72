"""One classical run: fit on the training split, write the front as programs, score them in
the sandbox, record them as an ordinary run directory, summarise.

The searcher is trusted library code running on the problem's data (not model output), so
it runs outside the sandbox, in a spawned child process (so Ctrl-C or a sweep ending stops
it at once; its CPU seconds are measured there); its models are untrusted like any program
from the moment they are text: the sandboxed ``Evaluator`` scores them with their own constants
(``params`` given, not refitted). Each record's ``source`` is the searcher (``sindy``,
``operon``, ``gplearn``), ``response`` its own model string and ``llm_seconds`` the search's
wall time. The summary has the loop's shape — counts over the searcher's records, the best
program, ``stopped: "search finished"`` — plus ``classical`` (fit wall and CPU seconds, front
size, options) and ``cpu_seconds`` (search CPU plus sandbox evaluation seconds), so tables
can show what a language model bought. A resumed run refits (deterministic per seed) and
scores only the programs not on record yet.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from eqforge.agents.classical import gp, sindy
from eqforge.agents.classical.expr import to_program
from eqforge.agents.classical.spec import ClassicalSpec, parse_classical
from eqforge.agents.progress import Progress
from eqforge.config import Config
from eqforge.errors import BackendError
from eqforge.evaluator.evaluate import EvalResult, Evaluator
from eqforge.evaluator.rundir import RunDir, RunStats
from eqforge.evaluator.rundir.records import SampleRecord
from eqforge.problems.spec import Problem
from eqforge.prompts.parsing import program_key

log = logging.getLogger(__name__)

STOPPED = "search finished"
SEARCHERS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "sindy": sindy.fit, "operon": gp.fit_operon, "gplearn": gp.fit_gplearn}


def classical_spec(config: Config) -> ClassicalSpec:
    if len(config.llm.backends) != 1:
        raise BackendError("a classical searcher (sindy:, operon:, gplearn:) runs alone, not in an ensemble")
    return parse_classical(config.llm.backends[0].spec)


async def run_classical(problem: Problem, config: Config, recorder: RunDir, *, progress: Progress | None = None,
                        restore: list[SampleRecord] | None = None) -> tuple[dict[str, Any], list[SampleRecord]]:
    """Run the configured searcher; returns the summary (not yet written) and all records."""
    spec = classical_spec(config)
    progress = progress or Progress()
    records = sorted(restore or [], key=lambda r: r.index)
    stats = RunStats(budget=config.run.samples, max_seconds=config.run.max_seconds, problem=problem.name,
                     strategy=spec.kind, elapsed_before=max((r.elapsed for r in records), default=0.0))
    for rec in records:
        stats.add(rec)
    progress.start(stats)
    wall0 = time.monotonic()
    # writable contiguous float64 copies: pyoperon's bindings refuse read-only or strided arrays
    X = np.array(problem.train.X, dtype=np.float64, order="C", copy=True)
    y = np.array(problem.train.y, dtype=np.float64, order="C", copy=True)
    models, fit_cpu = await _in_child(spec, X, y, config)
    fit_wall = time.monotonic() - wall0
    if config.run.max_seconds is not None and fit_wall > 1.2 * config.run.max_seconds:
        log.warning("%s: the search took %.1f s of a %.1f s budget (it has no clock of its own)",
                    spec.kind, fit_wall, config.run.max_seconds)
    known = {r.program_key: r for r in records if r.program_key}
    todo: list[tuple[dict[str, Any], str | None, list[float], str]] = []
    for m in models:
        try:
            t = to_program(m["expr"], problem.input_names, max_params=config.evaluator.max_params)
            todo.append((m, t.program, t.params, t.expression))
        except (ValueError, TypeError) as exc:
            todo.append((m, None, [], f"{m['text']}  [{exc}]"))
    evaluator = Evaluator(problem, config.evaluator)
    try:
        results = await asyncio.gather(*(
            _score(evaluator, code, params, config.run.seed) if code and program_key(code) not in known
            else _none() for _, code, params, _ in todo))
    finally:
        evaluator.close()
    index = max((r.index for r in records), default=0) + 1
    for (m, code, _params, text), result in zip(todo, results, strict=True):
        key = program_key(code) if code else None
        if key in known and known[key].source == spec.kind and result is None:
            continue  # on record from an earlier session
        first = known.get(key) if key else None
        rec = SampleRecord(
            index=index, id=f"s{index}", source=spec.kind, elapsed=stats.elapsed, model=spec.text,
            response=f"{text}\n# {spec.kind}: {m['text']}", program=code, program_key=key,
            duplicate_of=first.id if first is not None else None, seed=config.run.seed,
            llm_seconds=fit_wall, prompt_tokens=0, completion_tokens=0, cost=0.0,
            result=result or (first.result if first is not None else
                              EvalResult.failure("classical:untranslatable", text[:500])))
        index += 1
        recorder.write_sample(rec)
        records.append(rec)
        if key and first is None:
            known[key] = rec
        if stats.add(rec, live=True):
            recorder.write_best(rec, problem.name)
        progress.update(stats)
    progress.finish(stats, STOPPED)
    mine = [r for r in records if r.source == spec.kind]
    summary = {
        "problem": problem.name, "strategy": spec.kind, **_counts(mine), "best": _best(stats.best),
        "elapsed_seconds": stats.elapsed, "stopped": STOPPED, "llm": spec.describe(),
        "classical": {"method": spec.kind, "fit_seconds": fit_wall, "fit_cpu_seconds": fit_cpu,
                      "front": len(models), "options": spec.options.model_dump()},
        "cpu_seconds": fit_cpu + sum(r.result.seconds for r in mine),
    }
    return summary, records


def _fit(kind: str, options: Any, X: np.ndarray, y: np.ndarray, seed: int, max_seconds: float | None,
         max_models: int) -> tuple[list[dict[str, Any]], float]:
    """In the child process: the front and the CPU seconds it took (all its threads)."""
    cpu0 = time.process_time()
    models = SEARCHERS[kind](X, y, options, seed=seed, max_seconds=max_seconds, max_models=max_models)
    return models, time.process_time() - cpu0


async def _in_child(spec: ClassicalSpec, X: np.ndarray, y: np.ndarray, config: Config
                    ) -> tuple[list[dict[str, Any]], float]:
    """Run the search in a spawned process, so Ctrl-C (or the sweep ending) stops it at once
    instead of waiting for a library call that cannot be interrupted."""
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(1)
    try:
        job = pool.apply_async(_fit, (spec.kind, spec.options, X, y, config.run.seed, config.run.max_seconds,
                                      config.run.samples))
        while not job.ready():
            await asyncio.sleep(0.05)
        try:
            return job.get()
        except Exception as exc:  # noqa: BLE001 - the library's own failure, named in one line
            raise BackendError(f"{spec.kind}: the search failed: {type(exc).__name__}: {exc}") from None
    finally:
        pool.terminate()
        pool.join()


async def _score(evaluator: Evaluator, code: str | None, params: list[float], seed: int) -> EvalResult:
    assert code is not None
    return await evaluator.evaluate(code, params=params, seed=seed)


async def _none() -> None:
    return None


def _counts(records: list[SampleRecord]) -> dict[str, Any]:
    failures = Counter(r.error for r in records if not r.ok and r.error)
    return {"samples": len(records), "valid": sum(r.ok for r in records),
            "duplicates": sum(r.duplicate_of is not None for r in records),
            "failures": dict(failures.most_common()),
            "tokens": {"prompt": 0, "completion": 0, "reasoning": 0}, "cost": 0.0, "cached_samples": 0}


def _best(b: SampleRecord | None) -> dict[str, Any] | None:
    if b is None:
        return None
    return {"id": b.id, "program": b.program, "score": b.score, "params": b.params, "n_params": b.n_params,
            "nmse": {k: b.nmse.get(k) for k in ("train", "test_id", "test_ood")}, "metrics": b.metrics}
