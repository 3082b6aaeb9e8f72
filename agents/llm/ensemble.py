"""Several models sampled as one: each prompt goes to one member, drawn by weight.

``--llm openai:gpt-4o-mini@0.8 --llm openai:gpt-4o@0.2`` sends about 80% of the prompts to
the small model. The draw uses an RNG seeded from the run's seed. Each member keeps its own
concurrency limit and its own prompt form (a chat model gets messages, a base model the
completion text with stop sequences), and every sample records the member that wrote it
(``Completion.model``, and ``prompt_style`` in ``Completion.extra``).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

from eqforge.agents.llm.base import (
    Completion,
    LLMBackend,
    SamplingParams,
)
from eqforge.errors import BackendError
from eqforge.prompts.prompt import COMPLETION_STOPS, Prompt


class EnsembleBackend(LLMBackend):
    def __init__(self, members: list[tuple[LLMBackend, float]], *, seed: int = 0) -> None:
        if not members:
            raise BackendError("an ensemble needs at least one --llm")
        self.members = [m for m, _ in members]
        self.weights = [w for _, w in members]
        self.rng = random.Random(f"ensemble:{seed}")
        self._sems: list[asyncio.Semaphore] | None = None
        styles = {m.prompt_style for m in self.members}
        # The loop derives stop sequences from this; the ensemble sets them per member anyway.
        self.prompt_style = styles.pop() if len(styles) == 1 else "chat"
        self.max_concurrency = sum(max(1, m.max_concurrency) for m in self.members)
        self.name = "ensemble(" + ",".join(
            f"{m.name}@{w:g}" for m, w in zip(self.members, self.weights, strict=True)) + ")"
        self.routed = [0] * len(self.members)

    def describe(self) -> dict[str, object]:
        total = sum(self.weights)
        members = [{**m.describe(), "weight": w / total, "prompts": k}
                   for m, w, k in zip(self.members, self.weights, self.routed, strict=True)]
        counts = {key: sum(n for m in members if isinstance(n := m.get(key), int))
                  for key in ("responses", "cache_hits")}  # the run's totals (sweep tables)
        return {"name": self.name, "prompt_style": self.prompt_style, **counts, "members": members}

    def status(self) -> str | None:
        return next((s for m in self.members if (s := m.status())), None)

    def choose(self) -> int:
        return self.rng.choices(range(len(self.members)), weights=self.weights)[0]

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        if self._sems is None:
            self._sems = [asyncio.Semaphore(max(1, m.max_concurrency)) for m in self.members]
        i = self.choose()
        self.routed[i] += 1
        member = self.members[i]
        stop = COMPLETION_STOPS if member.prompt_style == "completion" else ()
        async with self._sems[i]:
            out = await member.generate(prompt, replace(sampling, stop=stop))
        for c in out:
            c.model = c.model or member.name
            c.extra.setdefault("prompt_style", member.prompt_style)
        return out

    async def aclose(self) -> None:
        for m in self.members:
            await m.aclose()
