"""The Python API: run a search, resume one, evaluate programs.

``discover`` is what ``eqforge run`` calls; it wires problem, prompt builder, backend,
sandboxed evaluator, buffer and records together, and returns the run's summary. It works
where an event loop already runs (a notebook cell) as in a script; ``adiscover`` and
``aresume`` are the coroutines for callers that run their own loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eqforge.agents.classical import is_classical
from eqforge.agents.llm.base import LLMBackend
from eqforge.agents.llm.registry import make_llm
from eqforge.agents.loop import DiscoveryLoop, Guess
from eqforge.agents.progress import Progress
from eqforge.aio import run_sync
from eqforge.config import BackendConfig, Config
from eqforge.errors import BackendError, EqforgeError
from eqforge.evaluator.analysis import enrich_summary
from eqforge.evaluator.evaluate import EVALUATE_FIELDS, EvalResult, Evaluator, evaluate_file  # noqa: F401
from eqforge.evaluator.rundir import RunDir, SampleRecord
from eqforge.problems.registry import load_problem
from eqforge.problems.spec import Problem
from eqforge.prompts.strategy import runnable_strategy

log = logging.getLogger(__name__)

@dataclass
class RunSpec:
    """What a run needs beyond ``Config``: which problem (the models are ``config.llm``)."""

    problem: str
    data: str | None = None
    guesses: list[dict[str, Any]] = field(default_factory=list)  # Guess.to_json() each

    def to_json(self) -> dict[str, Any]:
        return {"problem": self.problem, "data": self.data, "guesses": self.guesses}


def default_run_dir(problem: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(problem).name)
    return Path("runs") / f"{stamp}-{safe}"


def discover(
    spec: RunSpec,
    config: Config | None = None,
    *,
    out: str | Path | None = None,
    progress: Progress | None = None,
    problem: Problem | None = None,
) -> dict[str, Any]:
    """Run a new search; returns the summary (also written to ``<out>/summary.json``)."""
    return run_sync(adiscover(spec, config, out=out, progress=progress, problem=problem))


async def adiscover(
    spec: RunSpec,
    config: Config | None = None,
    *,
    out: str | Path | None = None,
    progress: Progress | None = None,
    problem: Problem | None = None,
) -> dict[str, Any]:
    """``discover`` as a coroutine, for callers that run their own event loop."""
    config = config or Config()
    problem = problem or load_problem(spec.problem, data=spec.data, seed=config.run.seed)
    out_dir = Path(out or config.run.out or default_run_dir(spec.problem))
    held = f"{out_dir} already holds a run; resume it with `eqforge run --resume {out_dir}` or choose another --out"
    if RunDir(out_dir).has_samples():
        raise EqforgeError(held)
    runnable_strategy(config.sampler.strategy)  # an unknown strategy fails before any file
    if any(is_classical(b.spec) for b in config.llm.backends):  # sindy:, operon:, gplearn: (no model)
        return await _aclassical(spec, problem, config, out_dir, progress, held)
    # fails fast (missing key, bad spec) before any file
    backend = make_llm(config.llm, seed=config.run.seed, require_price=config.run.max_cost is not None)
    try:
        recorder = RunDir(out_dir, write=True)  # a second writer stops here (RunBusy names the first)
        if recorder.has_samples():  # another process started it between the check and the lock
            recorder.close()
            raise EqforgeError(held)
    except BaseException:
        await backend.aclose()
        raise
    recorder.write_config({"run": spec.to_json(), "config": config.model_dump(mode="json"),
                           "problem": problem.summary(), "backend": backend.describe()})
    return await _aexecute(problem, config, backend, recorder, progress, restore=None,
                           guesses=spec.guesses)


def resume(
    run_dir: str | Path,
    *,
    samples: int | None = None,
    progress: Progress | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Continue a run from its records (after Ctrl-C, a crash or ``kill -9``)."""
    return run_sync(aresume(run_dir, samples=samples, progress=progress, overrides=overrides))


async def aresume(
    run_dir: str | Path,
    *,
    samples: int | None = None,
    progress: Progress | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``resume`` as a coroutine. ``overrides``: config sections to change for the rest of
    the run (budgets, for instance), as ``Config.with_overrides`` takes them."""
    RunDir(run_dir).read_config()  # "no config.json here" before taking the directory
    recorder = RunDir(run_dir, write=True)  # a second writer stops here (RunBusy names the first)
    try:
        return await _aresume(recorder, samples, progress, overrides)
    finally:
        recorder.close()


async def _aresume(recorder: RunDir, samples: int | None, progress: Progress | None,
                   overrides: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    saved = recorder.read_config()
    config = Config.model_validate(saved["config"])
    if overrides:
        config = config.with_overrides(overrides)
    if samples is not None:
        config = config.with_overrides({"run": {"samples": samples}})
    spec = RunSpec(**saved["run"])
    problem = load_problem(spec.problem, data=spec.data, seed=config.run.seed)
    records = recorder.read_samples()
    if any(is_classical(b.spec) for b in config.llm.backends):
        return await _classical_session(problem, config, recorder, progress, records)
    events = recorder.read_events()
    done = sum(1 for r in records if r.source == "llm")
    # a replayed model answers once per sample, or once per turn for the agent strategy
    answered = recorder.model_turns() if recorder.has_turns() else done
    backend = make_llm(config.llm, seed=config.run.seed, replay_start=answered,
                       require_price=config.run.max_cost is not None)
    elapsed = max((r.elapsed for r in records), default=0.0)
    log.info("resuming %s: %d samples on record", recorder.dir, done)
    return await _aexecute(problem, config, backend, recorder, progress,
                           restore=(records, events, elapsed), guesses=spec.guesses,
                           earlier=earlier_answers(recorder, records))


def earlier_answers(recorder: RunDir, records: Sequence[SampleRecord]) -> dict[str, int]:
    """The model answers of the sessions before a resume, counted from the records on disk.

    The backend counts ``responses`` and ``cache_hits`` for its own session only, and a
    session killed with SIGKILL writes no summary, so the records are the one source that
    always holds the earlier sessions. The count follows the backend's: an answer without
    an error (an errored request is recorded with an empty response), one per agent turn
    holding a model answer, or one per sample; ``cached`` as the record says. An empty
    answer without an error is not told apart from an errored one and is left out."""
    if recorder.has_turns():
        turns = [t for t in recorder.read_turns(strict=False) if "text" in t and not t.get("error")]
        return {"responses": len(turns), "cache_hits": sum(bool(t.get("cached")) for t in turns)}
    answers = [r for r in records if r.source == "llm" and (r.response or r.result.ok)]
    return {"responses": len(answers), "cache_hits": sum(r.cached for r in answers)}


def _cumulative_llm(summary: dict[str, Any], earlier: dict[str, int] | None) -> None:
    """Make ``summary["llm"]``'s answer counts the whole run's: add the earlier sessions'
    (once; what was added is kept as ``earlier_sessions``). An ensemble's members keep
    their own session's counts."""
    llm = summary.get("llm")
    if not earlier or not isinstance(llm, dict) or "earlier_sessions" in llm:
        return
    for key, n in earlier.items():
        if isinstance(llm.get(key), int):
            llm[key] += n
    llm["earlier_sessions"] = dict(earlier)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's ``config.json`` (without creating anything)."""
    return RunDir(run_dir).read_config()


def replay(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    samples: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Re-run a recorded run with its own configuration, serving its samples' responses in order."""
    source = Path(run_dir)
    saved = read_run_config(source)
    config = Config.model_validate(saved["config"])
    if RunDir(source).has_turns():
        raise EqforgeError(f"{source} is an agent run: --replay-from serves samples' responses, "
                           "not conversations; re-run it against a recorded model instead "
                           "(--llm replay:FILE with one answer per turn)", exit_code=2)
    n_recorded = sum(1 for r in RunDir(source).read_samples(strict=False) if r.source == "llm")
    if not n_recorded:
        raise EqforgeError(f"{source}: the run has no model samples to replay")
    config = config.with_overrides({"run": {"samples": samples or n_recorded}})
    config = config.model_copy(update={"run": config.run.model_copy(update={"out": None})})
    styles = {b.prompt_style for b in config.llm.backends}
    style = styles.pop() if len(styles) == 1 else "auto"
    llm = config.llm.model_copy(update={"backends": (BackendConfig(spec=f"replay:{source}", prompt_style=style),)})
    config = config.model_copy(update={"llm": llm})
    run = saved["run"]
    spec = RunSpec(problem=run["problem"], data=run.get("data"), guesses=list(run.get("guesses") or []))
    return discover(spec, config, out=out, progress=progress)


#: what a resumed session starts from: the records, the events and the earlier sessions' seconds
Restore = tuple[list[SampleRecord], list[dict[str, Any]], float]


async def _aexecute(problem: Problem, config: Config, backend: LLMBackend, recorder: RunDir,
                    progress: Progress | None, *, restore: Restore | None,
                    guesses: Sequence[dict[str, Any]] = (),
                    earlier: dict[str, int] | None = None) -> dict[str, Any]:
    """One session of a model's run. ``earlier``: a resumed run's answer counts before this
    session (``earlier_answers``), added to the summary's so that it tells the whole run."""
    evaluator = Evaluator(problem, config.evaluator)
    try:
        loop = DiscoveryLoop(problem, config, backend, evaluator, recorder, progress=progress,
                             guesses=[Guess.from_json(g) for g in guesses])
        if restore is not None:
            loop.restore(*restore)
        try:
            await loop.run()
        except BackendError:
            if loop.fatal is not None and loop.last_summary is not None:
                _cumulative_llm(loop.last_summary, earlier)
                _analysed(loop, problem, recorder, evaluator.predict)  # the records so far, as a finished run has them
            raise
        except BaseException:  # interrupted: the loop wrote its summary; make its counts the run's
            if earlier and loop.last_summary is not None:
                _cumulative_llm(loop.last_summary, earlier)
                recorder.write_summary(loop.last_summary)
            raise
        finally:
            await backend.aclose()
        if loop.last_summary is not None:
            _cumulative_llm(loop.last_summary, earlier)
        return _analysed(loop, problem, recorder, evaluator.predict)
    finally:
        evaluator.close()
        recorder.close()


async def _aclassical(spec: RunSpec, problem: Problem, config: Config, out_dir: Path,
                      progress: Progress | None, held: str) -> dict[str, Any]:
    """A classical searcher's run (agents.classical): same directory format, same scorer."""
    from eqforge.agents.classical.runner import classical_spec

    searcher = classical_spec(config)  # bad options or a missing extra fail before any file
    recorder = RunDir(out_dir, write=True)
    if recorder.has_samples():
        recorder.close()
        raise EqforgeError(held)
    recorder.write_config({"run": spec.to_json(), "config": config.model_dump(mode="json"),
                           "problem": problem.summary(), "backend": searcher.describe()})
    try:
        return await _classical_session(problem, config, recorder, progress, None)
    finally:
        recorder.close()


async def _classical_session(problem: Problem, config: Config, recorder: RunDir, progress: Progress | None,
                             records: list[Any] | None) -> dict[str, Any]:
    from eqforge.agents.classical.runner import run_classical

    summary, records = await run_classical(problem, config, recorder, progress=progress, restore=records)
    # As for a model's run, the best closed form is shown as the law only when it predicts
    # what the sandbox scored: the sandbox's predictions are the reference (issue 21).
    evaluator = Evaluator(problem, config.evaluator)
    try:
        enrich_summary(summary, records, problem, predict=evaluator.predict)
    except Exception as exc:  # noqa: BLE001 - analysis must never break a run
        log.warning("could not analyse the run's equations: %s: %s", type(exc).__name__, exc)
    finally:
        evaluator.close()
    recorder.write_summary(summary)
    return summary


def _analysed(loop: DiscoveryLoop, problem: Problem, recorder: RunDir,
              predict: Any = None) -> dict[str, Any]:
    """The loop's summary with its equations' analysis (closed forms, Pareto, recovery),
    added here, after the loop: the search itself never imports the analysis. ``predict``
    (the sandbox's) verifies the best closed form against what was scored."""
    summary = loop.last_summary or {}
    if summary.get("stopped") != "interrupted":  # Ctrl-C wants a prompt exit; `report` redoes it
        try:
            enrich_summary(summary, loop.records, problem, predict=predict)
        except Exception as exc:  # noqa: BLE001 - analysis must never break a run
            log.warning("could not analyse the run's equations: %s: %s", type(exc).__name__, exc)
        recorder.write_summary(summary)
    return summary


# ``evaluate_file`` lives beside the Evaluator so that ``eqforge evaluate`` imports neither
# the search nor the analysis (seconds of start-up per command); re-exported here.
