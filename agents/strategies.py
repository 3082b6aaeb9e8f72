"""The loop's strategy hook: what a prompting strategy changes in one round of the loop.

The discovery loop stays one screen long by asking this hook at four points: which programs
go into a prompt (``refine``), what the prompt says (templates plus feedback ``Notes``
gathered from the run: scores, recent failures, a residual diagnosis, reflective memory),
how an answer becomes a program (``extend`` continues the open return expression) and how
it is scored (``fit``). Everything a strategy may reveal to the model comes from
``prompt_spec``, which for ``anonymise`` strategies holds none of the problem's wording.

Adding a strategy:

* one that changes text, feedback blocks or ablation switches is a folder
  ``prompts/strategies/NAME/`` (``strategy.toml`` and templates; see ``prompts.strategy``)
  and needs no code;
* one that changes a decision adds a switch to ``prompts.strategy.Strategy`` and reads it at
  the matching point here (``prompt``/``notes``, ``extract``, ``stops``, ``eval_options``,
  ``after_batch``). The hook may read the run's records and charge model calls through the
  ``Ledger``, ask the ``Evaluator`` for predictions and the backend for side requests; it
  records nothing itself and never sees the loop (``tests/test_architecture.py``);
* one with its own way of proposing (``kind = "agent"``) gets a worker of its own that the
  loop starts, with a context like ``agents.agent_tools.AgentContext``: the ledger (budget
  reservations, stop state), the ``Scoring`` step (every proposal becomes a recorded sample
  through it) and the config sections it needs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from eqforge.agents.database import StoredProgram
from eqforge.agents.ledger import Ledger
from eqforge.agents.llm.base import LLMBackend
from eqforge.agents.reflect import ReflectiveMemory
from eqforge.config import SamplerConfig
from eqforge.evaluator.evaluate import Evaluator
from eqforge.evaluator.rundir import SampleRecord
from eqforge.problems.entry import versioned
from eqforge.problems.spec import Problem
from eqforge.prompts.anonymise import anonymise
from eqforge.prompts.builder import Notes, ProgramRef, PromptBuilder, initial_program
from eqforge.prompts.parsing import Extracted, extract_program
from eqforge.prompts.prompt import COMPLETION_STOPS, Prompt
from eqforge.prompts.strategy import load_strategy

log = logging.getLogger(__name__)


class StrategyHook:
    """One run's strategy. It reads the run's records through the ledger, asks the evaluator
    for predictions (residual diagnoses) and the backend for reflections (memory); it is given
    only the sampler settings, the run's seed and the params limit, never the loop."""

    def __init__(self, name: str, problem: Problem, ledger: Ledger, evaluator: Evaluator,
                 backend: LLMBackend, *, sampler: SamplerConfig, max_params: int, seed: int | None) -> None:
        self.ledger = ledger
        self.problem = problem
        self.evaluator = evaluator
        self.max_params = max_params
        self.strategy = load_strategy(name)
        self.name = name
        spec = problem.spec
        self.prompt_spec = anonymise(spec, self.strategy.anonymous_description) \
            if self.strategy.anonymise else spec
        self.builder = PromptBuilder(self.prompt_spec, strategy=name, max_params=max_params)
        self.memory = ReflectiveMemory(
            ledger, backend, sampler, seed, strategy=name, description=self.prompt_spec.description,
            every=sampler.reflect_every or self.strategy.reflect_every, size=self.strategy.memory_size,
        ) if "memory" in self.strategy.blocks else None
        self._diagnoses: dict[str, str] = {}
        self._by_id: dict[str, SampleRecord] = {}

    @property
    def kind(self) -> str:
        return self.strategy.kind

    # -- the seed and the program shown -----------------------------------------------------
    def seed_program(self) -> str:
        return initial_program(self.prompt_spec)

    def record(self, rec_id: str) -> SampleRecord | None:
        records = self.ledger.records
        if len(self._by_id) != len(records):
            self._by_id = {r.id: r for r in records}
        return self._by_id.get(rec_id)

    def _ref(self, p: StoredProgram) -> ProgramRef:
        rec = self.record(p.id)
        return ProgramRef(p.id, p.code, p.score, rec.nmse.get("train") if rec else None)

    # -- prompts ------------------------------------------------------------------------------
    async def prompt(self, island: int, parents: list[StoredProgram]) -> Prompt:
        if not self.strategy.refine:  # LLM-SR's "no iterative refinement" ablation
            seed = self.record("seed")
            parents = [StoredProgram("seed", seed.program or self.seed_program(),
                                     float(seed.score or 0.0))] if seed else []
        refs = [self._ref(p) for p in parents]
        return self.builder.build(refs, await self.notes(island, refs))

    async def notes(self, island: int | None, refs: list[ProgramRef]) -> Notes | None:
        blocks = self.strategy.blocks
        if not any(b in blocks for b in ("failures", "residuals", "memory")):
            return None
        failures = self.failures(island) if "failures" in blocks else ()
        residuals = ""
        if "residuals" in blocks and refs:
            residuals = await self.residuals(refs[-1], versioned(len(refs) - 1))
        memory = tuple(self.memory.items) if self.memory is not None else ()
        return Notes(failures=failures, residuals=residuals, memory=memory)

    def failures(self, island: int | None) -> tuple[str, ...]:
        """Distinct failure reasons among the island's most recent failed samples."""
        s = self.strategy
        recent = [r for r in reversed(self.ledger.records)
                  if r.source != "seed" and not r.ok and r.error
                  and (island is None or r.island == island)][: s.failure_window]
        out: list[str] = []
        for r in recent:
            detail = " ".join((r.detail or "").split())[:140]
            line = f"{r.error}: {detail}" if detail else str(r.error)
            if line not in out:
                out.append(line)
            if len(out) >= s.max_failures:
                break
        return tuple(out)

    async def residuals(self, ref: ProgramRef, label: str) -> str:
        """The residual diagnosis of one scored program (cached by program id)."""
        if ref.id in self._diagnoses:
            return self._diagnoses[ref.id]
        rec = self.record(ref.id)
        if rec is None or not rec.ok or not rec.params:
            return ""
        text = await self.diagnose(ref.code, list(rec.params), label)
        self._diagnoses[ref.id] = text
        return text

    async def diagnose(self, code: str, params: list[float], label: str) -> str:
        from eqforge.evaluator.residuals import diagnose, format_diagnosis

        preds = await asyncio.to_thread(self.evaluator.predict, code, params)
        if not preds or preds.get("train") is None:
            return ""
        train = self.problem.train
        d = diagnose(train.X, train.y, preds["train"], self.prompt_spec.input_names)
        return format_diagnosis(d, label)

    # -- answers --------------------------------------------------------------------------------
    def extract(self, text: str, prompt: Prompt, style: str) -> Extracted:
        if self.strategy.extend and "+ params[" in prompt.completion[-24:]:
            head = prompt.completion[prompt.completion.rindex(f"def {prompt.next_name}("):]
            term = _first_code_line(text)
            if term and not term.lstrip().startswith(("return", "def ")):
                joined = extract_program(head + " " + term.strip() + "\n", self.prompt_spec,
                                         version=prompt.version)
                if joined.ok:
                    return joined
        return extract_program(text, self.prompt_spec, version=prompt.version)

    def stops(self, style: str, prompt: Prompt) -> tuple[str, ...]:
        if style != "completion":
            return ()
        if self.strategy.extend and "+ params[" in prompt.completion[-24:]:
            return ("\n",)
        return COMPLETION_STOPS

    def eval_options(self) -> dict[str, Any]:
        if self.strategy.fit:
            return {}
        return {"params": [1.0] * self.max_params}

    # -- after each batch ---------------------------------------------------------------------
    async def after_batch(self) -> None:
        if self.memory is not None:
            await self.memory.maybe_reflect()

    def restore(self, events: list[dict[str, Any]]) -> None:
        if self.memory is not None:
            self.memory.restore(events)


def _first_code_line(text: str) -> str:
    for line in text.replace("```python", "\n").replace("```", "\n").splitlines():
        if line.strip():
            return line
    return ""
