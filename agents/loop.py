"""The discovery loop: problem -> prompt -> LLM -> sandboxed fit -> buffer -> prompt.

Several worker coroutines each repeat: draw an island's programs from the buffer, build a
prompt, ask the model for ``samples_per_prompt`` responses, evaluate the extracted
programs in the sandbox pool, register the valid ones and record every sample. While one
worker waits on evaluation another waits on the model, so neither sits idle. Every sample
is on disk before the next decision that depends on it, which is what makes ``--resume``
exact even after ``kill -9``. The user's own guesses (``Guess``) are scored and registered
on every island, after the seed program and before the first prompt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eqforge.agents.database import ProgramsDatabase, StoredProgram
from eqforge.agents.llm.base import Completion, LLMBackend, SamplingParams
from eqforge.agents.progress import Progress
from eqforge.agents.strategies import StrategyHook
from eqforge.config import Config
from eqforge.errors import BackendError
from eqforge.evaluator.evaluate import EvalResult, Evaluator
from eqforge.evaluator.rundir import RunDir, RunStats, SampleRecord
from eqforge.problems.spec import Problem
from eqforge.prompts.parsing import program_key, reasoning_record
from eqforge.prompts.prompt import Prompt

log = logging.getLogger(__name__)

#: what a backend may report per sample in ``Completion.extra`` that goes into its record
RECORDED_EXTRAS = ("reasoning_chars", "reasoning_tokens")


@dataclass(frozen=True)
class Guess:
    """A program the user believes in (PySR's ``guesses``); ``start`` seeds its fit."""

    code: str
    start: tuple[float, ...] = ()
    text: str = ""  # what the user wrote, for the records

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "start": list(self.start), "text": self.text}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Guess:
        return cls(str(data["code"]), tuple(float(v) for v in data.get("start") or ()),
                   str(data.get("text", "")))


class DiscoveryLoop:
    def __init__(
        self,
        problem: Problem,
        config: Config,
        backend: LLMBackend,
        evaluator: Evaluator,
        recorder: RunDir,
        *,
        progress: Progress | None = None,
        guesses: Sequence[Guess] = (),
    ) -> None:
        self.problem = problem
        self.guesses = list(guesses)
        self.config = config
        self.backend = backend
        self.evaluator = evaluator
        self.recorder = recorder
        self.progress = progress or Progress()
        self.db = ProgramsDatabase(config.database, seed=config.run.seed)
        self.stats = RunStats(budget=config.run.samples, max_seconds=config.run.max_seconds,
                              max_cost=config.run.max_cost, problem=problem.name,
                              strategy=config.sampler.strategy,
                              llm_status=backend.status)
        self.records: list[SampleRecord] = []
        self.by_key: dict[str, SampleRecord] = {}
        self.pending: dict[str, asyncio.Future[EvalResult]] = {}
        self.next_index = 1
        self.reserved = 0
        #: the next request's seed is run.seed + this; each request takes n consecutive seeds
        #: when it is sent (a server gives choice i seed + i), so no two samples share one
        self.seed_offset = 1
        self.stop_reason: str | None = None
        self.fatal: BackendError | None = None
        self.last_summary: dict[str, Any] | None = None
        self.hook = StrategyHook(self, config.sampler.strategy)  # what the strategy changes

    # -- resume ---------------------------------------------------------------------------
    def restore(self, records: list[SampleRecord], events: list[dict[str, Any]],
                elapsed_before: float = 0.0) -> None:
        """Rebuild the buffer and counters from the records of an earlier session."""
        programs: dict[str, StoredProgram] = {}
        resets = sorted((e for e in events if e.get("type") == "reset"),
                        key=lambda e: e["after_index"])
        for rec in sorted(records, key=lambda r: r.index):
            self._account(rec, write=False)
            if (rec.ok and rec.duplicate_of is None and rec.program is not None
                    and (rec.model_extra or {}).get("registered", True)):
                prog = StoredProgram(rec.id, rec.program, float(rec.score),
                                     tuple(rec.params or ()))
                programs[rec.id] = prog
                self.db.register(prog, None if rec.source == "seed" else rec.island)
            while resets and resets[0]["after_index"] <= rec.index:
                ev = resets.pop(0)
                self.db.apply_reset([tuple(x) for x in ev["islands"]], programs, self.stats.samples)
        self.next_index = max((r.index for r in records), default=0) + 1
        self.hook.restore(events)
        self.seed_offset = max([self.next_index] + [r.seed + (r.choice or 0) + 1 - self.config.run.seed
                                                    for r in records if r.seed is not None])
        self.stats.elapsed_before = elapsed_before
        self.stats.session_samples = 0

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        self.progress.start(self.stats)
        if not any(r.source == "seed" for r in self.records):
            await self._seed()
        await self._score_guesses()
        n_workers = max(1, min(self.config.sampler.concurrency, self.backend.max_concurrency))
        work = self._worker if self.hook.kind == "prompt" else self.hook.agent_worker
        workers = [asyncio.create_task(work()) for _ in range(n_workers)]
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            self.stop_reason = self.stop_reason or "interrupted"
            for w in workers:
                w.cancel()
            raise
        finally:
            self.stop_reason = self.stop_reason or "budget"
            summary = self.last_summary = self.summary()
            self.recorder.write_summary(summary)
            self.progress.finish(self.stats, self.stop_reason)
        if self.fatal is not None:
            raise self.fatal
        return summary

    async def _worker(self) -> None:
        spp = self.config.sampler.samples_per_prompt
        while (n := self._reserve(spp)) > 0:
            island, parents = self.db.sample()
            prompt = await self.hook.prompt(island, parents)
            self.recorder.write_prompt(prompt)
            started = time.monotonic()
            seed = self.config.run.seed + self.seed_offset  # reserved now, before any await
            self.seed_offset += n
            try:
                completions = await self.backend.generate(prompt, self._sampling(n, prompt, seed))
            except BackendError as exc:
                self.fatal = exc
                self._stop("backend error")
                self.reserved -= n
                return
            self.reserved -= n - len(completions)
            llm_seconds = time.monotonic() - started
            parent = parents[-1] if parents else None
            try:
                scored = await asyncio.gather(*(
                    self._evaluate(c, prompt, island, parent, llm_seconds, seed, i)
                    for i, c in enumerate(completions)
                ))
                for base, result in scored:
                    self._commit(base, result)
            finally:
                self.reserved -= len(completions)
            await self.hook.after_batch()
            if self.db.reset_due(self.stats.samples) and self.stop_reason is None:
                events = self.db.reset_islands(self.stats.samples)
                self.recorder.write_event({"type": "reset", "after_index": self.next_index - 1,
                                           "islands": events})

    def _reserve(self, want: int) -> int:
        """How many samples the next prompt may ask for (0: stop)."""
        s = self.stats
        if self.stop_reason is None:
            if s.max_seconds is not None and s.elapsed >= s.max_seconds:
                self._stop("time budget")
            elif s.max_cost is not None and s.cost >= s.max_cost:
                self._stop("cost budget")
        if self.stop_reason is not None:
            return 0
        remaining = s.budget - s.samples - self.reserved
        if remaining <= 0:
            return 0
        n = min(want, remaining)
        self.reserved += n
        return n

    def budget_left(self) -> bool:
        """Whether another sample may be started (also applies the time and cost budgets)."""
        self._reserve(0)
        return self.stop_reason is None and self.stats.samples + self.reserved < self.stats.budget

    def charge(self, prompt_tokens: int | None, completion_tokens: int | None,
               cost: float | None) -> None:
        """Count a model call that produced no sample record (reflection, agent turns)."""
        self.stats.prompt_tokens += prompt_tokens or 0
        self.stats.completion_tokens += completion_tokens or 0
        self.stats.cost += cost or 0.0

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def _sampling(self, n: int, prompt: Prompt, seed: int) -> SamplingParams:
        sc = self.config.sampler
        return SamplingParams(n=n, temperature=sc.temperature, top_p=sc.top_p,
                              max_tokens=sc.max_tokens, seed=seed,
                              stop=self.hook.stops(self.backend.prompt_style, prompt))

    # -- one sample -----------------------------------------------------------------------
    async def _seed(self) -> None:
        code = self.hook.seed_program()
        result = await self.evaluator.evaluate(code, seed=self.config.run.seed,
                                               **self.hook.eval_options())
        rec = self._record(index=0, source="seed", program=code, result=result)
        if not result.ok:
            log.warning("the seed program failed (%s: %s)", result.error, result.detail)
        self.db.register(StoredProgram(rec.id, code, float(rec.score if rec.ok else -1e300),
                                       tuple(rec.params or ())), None)

    async def _score_guesses(self) -> None:
        """Score the guesses not yet on record (all of them, unless resuming)."""
        done = {r.program_key for r in self.records if r.source == "guess"}
        todo = [g for g in self.guesses if program_key(g.code) not in done]
        results = await asyncio.gather(*(
            self.evaluator.evaluate(g.code, seed=self.config.run.seed,
                                    parent=dict(enumerate(g.start)) or None,
                                    **self.hook.eval_options()) for g in todo))
        for g, result in zip(todo, results, strict=True):
            if not result.ok:
                log.warning("guess %r failed: %s: %s", g.text or g.code, result.error,
                            result.detail)
            rec = self._finish({"source": "guess", "program": g.code,
                                "program_key": program_key(g.code), "response": g.text},
                               result)
            if rec.ok:
                self.db.register(StoredProgram(rec.id, g.code, float(rec.score),
                                               tuple(rec.params or ())), None)

    async def _evaluate(self, c: Completion, prompt: Prompt, island: int,
                        parent: StoredProgram | None, llm_seconds: float, seed: int, choice: int,
                        ) -> tuple[dict[str, Any], EvalResult]:
        """Parse and score one response; identical programs are evaluated only once."""
        base: dict[str, Any] = {
            "source": "llm", "island": island, "prompt_hash": prompt.hash,
            "parent_ids": prompt.source_ids, "model": c.model,
            "prompt_style": c.extra.get("prompt_style", self.backend.prompt_style), "response": c.text,
            "llm_seconds": llm_seconds, "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens, "cost": c.cost, "cached": c.cached,
            "finish_reason": c.finish_reason, "seed": seed, "choice": choice,
            **{k: c.extra[k] for k in RECORDED_EXTRAS if k in c.extra},
        }
        base.update(reasoning_record(c.text, c.completion_tokens, base))
        if c.error:
            return base, EvalResult.failure(c.error, str(c.extra.get("detail", "")))
        extracted = self.hook.extract(c.text, prompt, base["prompt_style"])
        if not extracted.ok or extracted.code is None:
            if c.finish_reason == "length":  # cut off at max_tokens: say so, not just "syntax"
                return base, EvalResult.failure("llm:truncated", f"the answer hit --max-tokens; "
                                                f"{extracted.error}: {extracted.detail}")
            return base, EvalResult.failure(extracted.error or "parse", extracted.detail)
        return await self.score(extracted.code, base, parent)

    async def score(self, code: str, base: dict[str, Any], parent: StoredProgram | None = None
                    ) -> tuple[dict[str, Any], EvalResult]:
        """Score one program (the strategy's fitting rule; identical programs once)."""
        key = program_key(code)
        base.update(program=code, program_key=key)
        first = self.by_key.get(key)
        if first is not None:
            return base, first.result.model_copy(update={"seconds": 0.0})
        if key in self.pending:  # an identical program is being evaluated right now
            return base, await asyncio.shield(self.pending[key])
        fut: asyncio.Future[EvalResult] = asyncio.get_running_loop().create_future()
        self.pending[key] = fut
        try:
            parent_params = (
                dict(enumerate(parent.params)) if parent is not None and parent.params else None
            )
            result = await self.evaluator.evaluate(code, parent=parent_params,
                                                   seed=self.config.run.seed,
                                                   **self.hook.eval_options())
            fut.set_result(result)
        finally:
            self.pending.pop(key, None)
            if not fut.done():
                fut.cancel()
        return base, result

    def _commit(self, base: dict[str, Any], result: EvalResult, *, register: bool = True
                ) -> SampleRecord:
        """Record one sample (in response order, so runs are reproducible) and register it."""
        key = base.get("program_key")
        first = self.by_key.get(key) if key else None
        if first is not None:
            base["duplicate_of"] = first.id
        rec = self._finish(base, result)
        if register and rec.ok and first is None and rec.program is not None:
            self.db.register(StoredProgram(rec.id, rec.program, float(rec.score),
                                           tuple(rec.params or ())), rec.island)
        return rec

    def _finish(self, base: dict[str, Any], result: EvalResult) -> SampleRecord:
        index = self.next_index
        self.next_index += 1
        return self._record(index=index, result=result, **base)

    def _record(self, *, index: int, result: EvalResult, **fields: Any) -> SampleRecord:
        rec = SampleRecord(
            index=index, id={"seed": "seed", "guess": f"g{index}"}.get(fields.get("source", ""),
                                                                      f"s{index}"),
            elapsed=self.stats.elapsed, result=result, **fields)
        self._account(rec, write=True)
        return rec

    def _account(self, rec: SampleRecord, *, write: bool) -> None:
        """Update counters, the dedup table and the best program for one record."""
        if write:
            self.recorder.write_sample(rec)
        self.records.append(rec)
        if rec.program_key and rec.duplicate_of is None:
            self.by_key.setdefault(rec.program_key, rec)
        s = self.stats
        if s.add(rec, live=write) and write:
            self.recorder.write_best(rec, self.problem.name)
        if write:
            self.progress.update(s)
            target = self.config.run.target_score
            if target is not None and s.best_score is not None and s.best_score >= target:
                self._stop("target score")

    # -- summary --------------------------------------------------------------------------
    @property
    def best(self) -> SampleRecord | None:
        return self.stats.best

    def summary(self) -> dict[str, Any]:
        """The run's outcome from its counters (``api`` adds the analysis of its equations)."""
        s = self.stats
        best = None
        if self.best is not None:
            b = self.best
            best = {"id": b.id, "program": b.program, "score": b.score, "params": b.params,
                    "n_params": b.n_params,
                    "nmse": {k: b.nmse.get(k) for k in ("train", "test_id", "test_ood")},
                    "metrics": b.metrics, **({"episode": b.model_extra["episode"]}
                                             if (b.model_extra or {}).get("episode") else {})}
        summary = {
            "problem": self.problem.name,
            "strategy": self.hook.name,
            **s.counts(),
            "best": best,
            "elapsed_seconds": s.elapsed,
            "stopped": self.stop_reason,
            "llm": self.backend.describe(),
        }
        return summary

