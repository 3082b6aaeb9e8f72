"""The loop's strategy hook: what a prompting strategy changes in one round of the loop.

The discovery loop stays one screen long by asking this hook at four points: which programs
go into a prompt (``refine``), what the prompt says (templates plus feedback ``Notes``
gathered from the run: scores, recent failures, a residual diagnosis, reflective memory),
how an answer becomes a program (``extend`` continues the open return expression) and how
it is scored (``fit``). Everything a strategy may reveal to the model comes from
``prompt_spec``, which for ``anonymise`` strategies holds none of the problem's wording.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from eqforge.agents.database import StoredProgram
from eqforge.agents.reflect import ReflectiveMemory
from eqforge.evaluator.rundir import SampleRecord
from eqforge.problems.entry import versioned
from eqforge.prompts.anonymise import anonymise
from eqforge.prompts.builder import Notes, ProgramRef, PromptBuilder, initial_program
from eqforge.prompts.parsing import Extracted, extract_program
from eqforge.prompts.prompt import COMPLETION_STOPS, Prompt
from eqforge.prompts.strategy import load_strategy

if TYPE_CHECKING:
    from eqforge.agents.loop import DiscoveryLoop

log = logging.getLogger(__name__)



class StrategyHook:
    def __init__(self, loop: DiscoveryLoop, name: str) -> None:
        self.loop = loop
        self.strategy = load_strategy(name)
        self.name = name
        spec = loop.problem.spec
        self.prompt_spec = anonymise(spec, self.strategy.anonymous_description) \
            if self.strategy.anonymise else spec
        self.builder = PromptBuilder(self.prompt_spec, strategy=name,
                                     max_params=loop.config.evaluator.max_params)
        every = loop.config.sampler.reflect_every or self.strategy.reflect_every
        self.memory = ReflectiveMemory(self, every) if "memory" in self.strategy.blocks else None
        self.agent_state = AgentState()
        self._diagnoses: dict[str, str] = {}
        self._by_id: dict[str, SampleRecord] = {}

    @property
    def kind(self) -> str:
        return self.strategy.kind

    # -- the seed and the program shown -----------------------------------------------------
    def seed_program(self) -> str:
        return initial_program(self.prompt_spec)

    def record(self, rec_id: str) -> SampleRecord | None:
        if len(self._by_id) != len(self.loop.records):
            self._by_id = {r.id: r for r in self.loop.records}
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
        recent = [r for r in reversed(self.loop.records)
                  if r.source != "seed" and not r.ok and r.error
                  and (island is None or r.island == island)][: s.failure_window]
        out: list[str] = []
        for r in recent:
            detail = " ".join((r.detail or "").split())[:140]
            line = f"{r.error}: {detail}" if detail else r.error
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

        evaluator = self.loop.evaluator
        preds = await asyncio.to_thread(evaluator.predict, code, params)
        if not preds or preds.get("train") is None:
            return ""
        train = self.loop.problem.train
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
        return {"params": [1.0] * self.loop.config.evaluator.max_params}

    async def agent_worker(self) -> None:
        """One worker of a tool-using strategy: episodes until the budget stops them."""
        from eqforge.agents.agent import run_episodes

        await run_episodes(self.loop)

    # -- after each batch ---------------------------------------------------------------------
    async def after_batch(self) -> None:
        if self.memory is not None:
            await self.memory.maybe_reflect()

    def restore(self, events: list[dict[str, Any]]) -> None:
        if self.memory is not None:
            self.memory.restore(events)
        if self.kind == "agent":
            self.agent_state.restore(self.loop.recorder.read_turns(), self.loop)


class AgentState:
    """Episodes of an agent run: how many were started, which are still open (to resume)."""

    def __init__(self) -> None:
        self.count = 0
        self.active = 0
        self.open: list[dict[str, Any]] = []

    def restore(self, turns: list[dict[str, Any]], loop: Any) -> None:
        episodes: dict[str, dict[str, Any]] = {}
        for t in turns:
            ep = episodes.setdefault(t["episode"], {"id": t["episode"], "island": t.get("island", 0),
                                                    "protocol": t.get("protocol", "text"),
                                                    "messages": [], "turn": 0, "done": False})
            ep["messages"] += t.get("messages") or []
            ep["turn"] = max(ep["turn"], int(t.get("turn", 0)))
            ep["done"] = bool(t.get("done"))
            loop.charge(t.get("prompt_tokens"), t.get("completion_tokens"), t.get("cost"))
        self.count = max((int(e[1:]) for e in episodes if e[1:].isdigit()), default=0)
        self.open = [e for e in episodes.values() if not e["done"]]


def _first_code_line(text: str) -> str:
    for line in text.replace("```python", "\n").replace("```", "\n").splitlines():
        if line.strip():
            return line
    return ""
