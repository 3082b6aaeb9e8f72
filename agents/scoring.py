"""The scoring step: one response or program in, one deduplicated, evaluated, recorded sample out.

Everything that proposes programs — the loop's prompt workers, the agent's ``evaluate`` and
``submit`` tools, the user's guesses, a classical baseline's final model — ends in the same
four steps, written once here:

1. **deduplicate**: a program already scored (same ``program_key``) is not evaluated again;
   its first record's result is reused and the new record says ``duplicate_of``; an identical
   program being evaluated right now is awaited, not started twice;
2. **evaluate** it in the sandbox with the run's fitting rule (``eval_options``, the strategy's);
3. **record** it through the ledger (``samples.jsonl``, the counters, ``best.py``);
4. **register** a valid, new program in the programs database, on its island.

The public entry for code that holds a program rather than a model response is
``score_program``::

    rec = await scoring.score_program(code, source="baseline", extra={"searcher": "pysr"})
    rec.ok, rec.score, rec.params, rec.id   # a SampleRecord, already on disk

It reserves no budget (only ``source="llm"`` samples count against ``--samples``); a caller
spending the sample budget holds ``with ledger.reserve(1) as slot`` around it. Steps 1–2 and
3–4 are also offered apart (``evaluate`` / ``commit``) for the loop, which evaluates a batch
of responses concurrently but records them in response order, so runs are reproducible.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eqforge.agents.database import ProgramsDatabase, StoredProgram
from eqforge.agents.ledger import Ledger
from eqforge.agents.llm.base import Completion
from eqforge.evaluator.evaluate import EvalResult, Evaluator
from eqforge.evaluator.rundir import SampleRecord
from eqforge.prompts.parsing import Extracted, program_key, reasoning_record
from eqforge.prompts.prompt import Prompt

log = logging.getLogger(__name__)

#: what a backend may report per sample in ``Completion.extra`` that goes into its record
RECORDED_EXTRAS = ("reasoning_chars", "reasoning_tokens", "response_truncated", "response_chars")

#: how a strategy turns a response into a program: (text, prompt, prompt style) -> Extracted
Extract = Callable[[str, Prompt, str], Extracted]


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


class Scoring:
    """The scoring step of one run; see the module doc.

    ``db`` may be ``None`` (a scorer that records but registers nothing, e.g. outside a
    search); ``seed`` is the run's seed given to every fit; ``eval_options`` the strategy's
    fitting rule (``{}``: fit the params; ``{"params": [...]}``: evaluate them as given).
    """

    def __init__(self, ledger: Ledger, evaluator: Evaluator, db: ProgramsDatabase | None, *,
                 seed: int, eval_options: Mapping[str, Any] | None = None) -> None:
        self.ledger = ledger
        self.evaluator = evaluator
        self.db = db
        self.seed = seed
        self.eval_options = dict(eval_options or {})
        self._pending: dict[str, asyncio.Future[EvalResult]] = {}

    # -- the public entry -----------------------------------------------------------------
    async def score_program(self, code: str, *, source: str = "baseline", island: int | None = None,
                            register: bool = True, start: Iterable[float] = (),
                            extra: Mapping[str, Any] | None = None) -> SampleRecord:
        """Deduplicate, evaluate, record and (if valid and new) register one program.

        ``source`` names where it came from (record ids: ``b<index>`` for "baseline", ``s``
        otherwise); ``start`` seeds the fit; ``extra`` holds further ``SampleRecord`` fields
        (``response``, ``model``, ``island``…). Returns the record, already written.
        """
        params = dict(enumerate(float(v) for v in start)) or None
        fields = {"source": source, "island": island, **(extra or {})}
        fields, result = await self.evaluate(code, fields, parent_params=params)
        return self.commit(fields, result, register=register)

    # -- the two halves -------------------------------------------------------------------
    async def evaluate(self, code: str, fields: dict[str, Any], *,
                       parent_params: dict[int, float] | None = None) -> tuple[dict[str, Any], EvalResult]:
        """Score one program under the strategy's fitting rule; identical programs once.

        Returns ``fields`` with the program and its key added, and the result."""
        key = program_key(code)
        fields.update(program=code, program_key=key)
        first = self.ledger.by_key.get(key)
        if first is not None:
            return fields, first.result.model_copy(update={"seconds": 0.0})
        if key in self._pending:  # an identical program is being evaluated right now
            return fields, await asyncio.shield(self._pending[key])
        fut: asyncio.Future[EvalResult] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        try:
            result = await self.evaluator.evaluate(code, parent=parent_params, seed=self.seed,
                                                   **self.eval_options)
            fut.set_result(result)
        finally:
            self._pending.pop(key, None)
            if not fut.done():
                fut.cancel()
        return fields, result

    def commit(self, fields: dict[str, Any], result: EvalResult, *, register: bool = True) -> SampleRecord:
        """Record one sample (a repeat says ``duplicate_of``) and register it if valid and new."""
        key = fields.get("program_key")
        first = self.ledger.by_key.get(key) if key else None
        if first is not None:
            fields["duplicate_of"] = first.id
        rec = self.ledger.record(result, **fields)
        if register and rec.ok and first is None and rec.program is not None:
            self._register(rec, rec.island)
        return rec

    def _register(self, rec: SampleRecord, island: int | None, score: float | None = None) -> None:
        """Enter a valid record's program in the database (``score`` overrides its own)."""
        score = rec.score if score is None else score
        if self.db is not None and rec.program is not None and score is not None:
            self.db.register(StoredProgram(rec.id, rec.program, float(score), tuple(rec.params or ())), island)

    # -- model responses ------------------------------------------------------------------
    async def evaluate_response(self, c: Completion, prompt: Prompt, extract: Extract, *, island: int,
                                parent: StoredProgram | None, llm_seconds: float, seed: int, choice: int,
                                prompt_style: str) -> tuple[dict[str, Any], EvalResult]:
        """Parse (with the strategy's ``extract``) and score one response of a prompt."""
        fields: dict[str, Any] = {
            "source": "llm", "island": island, "prompt_hash": prompt.hash,
            "parent_ids": prompt.source_ids, "model": c.model,
            "prompt_style": c.extra.get("prompt_style", prompt_style), "response": c.text,
            "llm_seconds": llm_seconds, "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens, "cost": c.cost, "cached": c.cached,
            "finish_reason": c.finish_reason, "seed": seed, "choice": choice,
            **{k: c.extra[k] for k in RECORDED_EXTRAS if k in c.extra},
        }
        fields.update(reasoning_record(c.text, c.completion_tokens, fields))
        if c.error:
            return fields, EvalResult.failure(c.error, str(c.extra.get("detail", "")))
        extracted = extract(c.text, prompt, fields["prompt_style"])
        if not extracted.ok or extracted.code is None:
            if c.finish_reason == "length":  # cut off at max_tokens: say so, not just "syntax"
                return fields, EvalResult.failure("llm:truncated", f"the answer hit --max-tokens; "
                                                  f"{extracted.error}: {extracted.detail}")
            return fields, EvalResult.failure(extracted.error or "parse", extracted.detail)
        params = dict(enumerate(parent.params)) if parent is not None and parent.params else None
        return await self.evaluate(extracted.code, fields, parent_params=params)

    # -- the run's first samples ------------------------------------------------------------
    async def score_seed(self, code: str) -> SampleRecord:
        """The strategy's seed program: record 0, registered on every island even if it failed."""
        result = await self.evaluator.evaluate(code, seed=self.seed, **self.eval_options)
        rec = self.ledger.record(result, index=0, source="seed", program=code)
        if not result.ok:
            log.warning("the seed program failed (%s: %s)", result.error, result.detail)
        self._register(rec, None, score=float(rec.score) if rec.ok and rec.score is not None else -1e300)
        return rec

    async def score_guesses(self, guesses: Iterable[Guess]) -> None:
        """Score the guesses not yet on record (all of them, unless resuming), each afresh,
        and register the valid ones on every island."""
        done = {r.program_key for r in self.ledger.records if r.source == "guess"}
        todo = [g for g in guesses if program_key(g.code) not in done]
        results = await asyncio.gather(*(
            self.evaluator.evaluate(g.code, seed=self.seed, parent=dict(enumerate(g.start)) or None,
                                    **self.eval_options) for g in todo))
        for g, result in zip(todo, results, strict=True):
            if not result.ok:
                log.warning("guess %r failed: %s: %s", g.text or g.code, result.error, result.detail)
            rec = self.ledger.record(result, source="guess", program=g.code,
                                     program_key=program_key(g.code), response=g.text)
            if rec.ok:
                self._register(rec, None)
