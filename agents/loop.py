"""The discovery loop: problem -> prompt -> LLM -> sandboxed fit -> buffer -> prompt.

Several worker coroutines each repeat: draw an island's programs from the buffer, build a
prompt, ask the model for ``samples_per_prompt`` responses, evaluate the extracted
programs in the sandbox pool, register the valid ones and record every sample. While one
worker waits on evaluation another waits on the model, so neither sits idle. Every sample
is on disk before the next decision that depends on it, which is what makes ``--resume``
exact even after ``kill -9``. The user's own guesses (``Guess``) are scored and registered
on every island, after the seed program and before the first prompt.

The loop only wires and drives: the run's shared state (budget, stop, records) is the
``Ledger``'s, turning a response into a recorded sample is the ``Scoring`` step's, and what a
strategy changes is the ``StrategyHook``'s. None of them, nor the agent, sees the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from eqforge.agents.agent import run_episodes
from eqforge.agents.agent_tools import AgentContext
from eqforge.agents.database import ProgramsDatabase, StoredProgram
from eqforge.agents.ledger import Ledger
from eqforge.agents.llm.base import LLMBackend, SamplingParams
from eqforge.agents.progress import Progress
from eqforge.agents.scoring import RECORDED_EXTRAS, Guess, Scoring
from eqforge.agents.strategies import StrategyHook
from eqforge.config import Config
from eqforge.errors import BackendError
from eqforge.evaluator.evaluate import Evaluator
from eqforge.evaluator.rundir import RunDir, RunStats, SampleRecord
from eqforge.problems.spec import Problem
from eqforge.prompts.prompt import Prompt

__all__ = ["RECORDED_EXTRAS", "DiscoveryLoop", "Guess"]


class DiscoveryLoop:
    """One session of a run: builds the ledger, scoring step, strategy hook and agent context
    from the config's sections, then runs the workers until the ledger says stop."""

    def __init__(self, problem: Problem, config: Config, backend: LLMBackend, evaluator: Evaluator,
                 recorder: RunDir, *, progress: Progress | None = None, guesses: Sequence[Guess] = ()) -> None:
        self.problem, self.config, self.backend, self.guesses = problem, config, backend, list(guesses)
        run, sampler = config.run, config.sampler
        self.db = ProgramsDatabase(config.database, seed=run.seed)
        stats = RunStats(budget=run.samples, max_seconds=run.max_seconds, max_cost=run.max_cost,
                         problem=problem.name, strategy=sampler.strategy, llm_status=backend.status)
        self.ledger = Ledger(stats, recorder, progress, problem_name=problem.name, target_score=run.target_score)
        self.hook = StrategyHook(sampler.strategy, problem, self.ledger, evaluator, backend, sampler=sampler,
                                 max_params=config.evaluator.max_params, seed=run.seed)
        self.scoring = Scoring(self.ledger, evaluator, self.db, seed=run.seed, eval_options=self.hook.eval_options())
        self.agent = AgentContext(ledger=self.ledger, scoring=self.scoring, hook=self.hook, backend=backend,
                                  db=self.db, evaluator=evaluator, train=problem.train, sampler=sampler,
                                  max_params=config.evaluator.max_params, seed=run.seed,
                                  timeout=min(config.evaluator.timeout, 30.0))
        #: the next request's seed is run.seed + this; each request takes n consecutive seeds
        #: when it is sent (a server gives choice i seed + i), so no two samples share one
        self.seed_offset = 1
        self.last_summary: dict[str, Any] | None = None

    # what the API and benchmarks read after a run
    @property
    def records(self) -> list[SampleRecord]:
        return self.ledger.records

    @property
    def stats(self) -> RunStats:
        return self.ledger.stats

    @property
    def fatal(self) -> BackendError | None:
        return self.ledger.fatal

    @property
    def best(self) -> SampleRecord | None:
        return self.ledger.stats.best

    def restore(self, records: list[SampleRecord], events: list[dict[str, Any]],
                elapsed_before: float = 0.0) -> None:
        """Rebuild the buffer and counters from the records of an earlier session."""
        programs: dict[str, StoredProgram] = {}
        resets = sorted((e for e in events if e.get("type") == "reset"), key=lambda e: e["after_index"])
        for rec in sorted(records, key=lambda r: r.index):
            self.ledger.account(rec, write=False)
            if rec.ok and rec.duplicate_of is None and rec.program is not None and rec.registered is not False:
                programs[rec.id] = prog = StoredProgram(rec.id, rec.program, float(rec.score or 0.0),
                                                        tuple(rec.params or ()))
                self.db.register(prog, None if rec.source == "seed" else rec.island)
            while resets and resets[0]["after_index"] <= rec.index:
                ev = resets.pop(0)
                self.db.apply_reset([tuple(x) for x in ev["islands"]], programs, self.stats.samples)
        self.ledger.restored(records)
        self.hook.restore(events)
        if self.hook.kind == "agent":
            self.agent.state.restore(self.ledger.recorder.read_turns(), self.ledger)
        self.seed_offset = max([self.ledger.next_index] + [r.seed + (r.choice or 0) + 1 - self.config.run.seed
                                                           for r in records if r.seed is not None])
        self.stats.elapsed_before = elapsed_before
        self.stats.session_samples = 0

    async def run(self) -> dict[str, Any]:
        ledger = self.ledger
        ledger.progress.start(self.stats)
        if not any(r.source == "seed" for r in self.records):
            await self.scoring.score_seed(self.hook.seed_program())
        await self.scoring.score_guesses(self.guesses)
        n_workers = max(1, min(self.config.sampler.concurrency, self.backend.max_concurrency))
        workers = [asyncio.create_task(self._worker() if self.hook.kind == "prompt" else run_episodes(self.agent))
                   for _ in range(n_workers)]
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            ledger.stop("interrupted")
            for w in workers:
                w.cancel()
            raise
        finally:
            ledger.stop("budget")
            summary = self.last_summary = self.summary()
            ledger.recorder.write_summary(summary)
            ledger.progress.finish(self.stats, ledger.stop_reason or "budget")
        if ledger.fatal is not None:
            raise ledger.fatal
        return summary

    async def _worker(self) -> None:
        """Prompt, sample, score, record, until the ledger says stop."""
        ledger, spp = self.ledger, self.config.sampler.samples_per_prompt
        while True:
            with ledger.reserve(spp) as slot:
                if not slot.n:
                    return
                island, parents = self.db.sample()
                prompt = await self.hook.prompt(island, parents)
                ledger.recorder.write_prompt(prompt)
                started = time.monotonic()
                seed = self.config.run.seed + self.seed_offset  # taken now, before any await
                self.seed_offset += slot.n
                try:
                    completions = await self.backend.generate(prompt, self._sampling(slot.n, prompt, seed))
                except BackendError as exc:
                    ledger.fail(exc)
                    return
                slot.keep(len(completions))
                llm_seconds = time.monotonic() - started
                scored = await asyncio.gather(*(self.scoring.evaluate_response(
                    c, prompt, self.hook.extract, island=island, parent=parents[-1] if parents else None,
                    llm_seconds=llm_seconds, seed=seed, choice=i, prompt_style=self.backend.prompt_style,
                ) for i, c in enumerate(completions)))
                for fields, result in scored:  # in response order, so runs are reproducible
                    self.scoring.commit(fields, result)
            await self.hook.after_batch()
            if self.db.reset_due(self.stats.samples) and not ledger.stopping:
                events = self.db.reset_islands(self.stats.samples)
                ledger.recorder.write_event({"type": "reset", "after_index": ledger.next_index - 1, "islands": events})

    def _sampling(self, n: int, prompt: Prompt, seed: int) -> SamplingParams:
        sc = self.config.sampler
        return SamplingParams(n=n, temperature=sc.temperature, top_p=sc.top_p, max_tokens=sc.max_tokens,
                              seed=seed, stop=self.hook.stops(self.backend.prompt_style, prompt))

    def summary(self) -> dict[str, Any]:
        """The run's outcome from its counters (``api`` adds the analysis of its equations)."""
        s, b = self.stats, self.best
        best = None if b is None else {
            "id": b.id, "program": b.program, "score": b.score, "params": b.params, "n_params": b.n_params,
            "nmse": {k: b.nmse.get(k) for k in ("train", "test_id", "test_ood")}, "metrics": b.metrics,
            **({"episode": b.episode} if b.episode else {})}
        return {"problem": self.problem.name, "strategy": self.hook.name, **s.counts(), "best": best,
                "elapsed_seconds": s.elapsed, "stopped": self.ledger.stop_reason, "llm": self.backend.describe()}
