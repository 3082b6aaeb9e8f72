"""Reflective memory: short insights distilled from the last window of samples.

DrSR keeps an idea library and LaSR a concept library: every so often the model is asked,
in a request of its own, what distinguishes the best programs of the recent past from the
worst, and the answers are carried into later prompts. Here every ``every`` samples one
reflection request shows the window's best and worst valid programs with their NMSE (and
how many failed); the answer's bullet lines become insights, the most recent ``size`` are
kept. Each update is an ``events.jsonl`` line (``type: memory``) with the request's hash,
the raw answer, tokens and cost, so a resumed run restores the memory exactly and a study
can audit what the model was told.
"""

from __future__ import annotations

import asyncio
import logging
import re
from string import Template
from typing import Any

from eqforge.agents.ledger import Ledger
from eqforge.agents.llm.base import LLMBackend, SamplingParams
from eqforge.config import SamplerConfig
from eqforge.errors import BackendError
from eqforge.evaluator.rundir import SampleRecord
from eqforge.prompts.prompt import Prompt
from eqforge.prompts.strategy import strategy_template

log = logging.getLogger(__name__)

_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(\S.*)")  # linear: (.*\S) backtracked per space


def parse_insights(text: str, limit: int = 5) -> list[str]:
    """Bullet lines of an answer (at most ``limit``, each at most 200 characters)."""
    out = []
    for line in text.splitlines():
        m = _BULLET.match(line)
        if m and len(m.group(1).rstrip()) > 3:
            item = " ".join(m.group(1).split())[:200]
            if item not in out:
                out.append(item)
    return out[:limit]


class ReflectiveMemory:
    """The insights of one run; it sees the ledger, the backend and the sampler settings only."""

    def __init__(self, ledger: Ledger, backend: LLMBackend, sampler: SamplerConfig, seed: int | None, *,
                 strategy: str, description: str, every: int, size: int) -> None:
        self.ledger = ledger
        self.backend = backend
        self.sampler = sampler
        self.seed = seed
        self.strategy = strategy
        self.description = description
        self.every = max(1, every or 20)
        self.size = size
        self.items: list[str] = []
        self.next_at = self.every
        self._lock = asyncio.Lock()

    def restore(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            if ev.get("type") == "memory":
                self.items = list(ev.get("memory", []))[-self.size:]
                self.next_at = int(ev.get("after_samples", 0)) + self.every
                self.ledger.charge(ev.get("prompt_tokens"), ev.get("completion_tokens"), ev.get("cost"))

    async def maybe_reflect(self) -> None:
        ledger = self.ledger
        if ledger.stats.samples < self.next_at or ledger.stopping or self._lock.locked():
            return
        async with self._lock:
            done = ledger.stats.samples
            self.next_at = done + self.every
            window = [r for r in ledger.records if r.source == "llm"][-self.every:]
            prompt = self.prompt(window)
            ledger.recorder.write_prompt(prompt)
            completion = self.backend.prompt_style == "completion"
            try:
                [c] = await self.backend.generate(prompt, SamplingParams(
                    n=1, temperature=self.sampler.temperature, top_p=self.sampler.top_p,
                    max_tokens=min(256, self.sampler.max_tokens),
                    seed=None if self.seed is None else self.seed + 7919 * done,
                    stop=("\n\n\n",) if completion else ()))
            except (BackendError, ValueError) as exc:
                log.warning("reflection failed: %s", exc)
                return
            text = "- " + c.text if completion else c.text
            new = parse_insights(text) if not c.error else []
            self.items = [m for m in self.items if m not in new] + new
            self.items = self.items[-self.size:]
            ledger.charge(c.prompt_tokens, c.completion_tokens, c.cost)
            ledger.recorder.write_event({
                "type": "memory", "after_samples": done, "after_index": ledger.next_index - 1,
                "prompt_hash": prompt.hash, "response": c.text, "error": c.error,
                "insights": new, "memory": self.items, "model": c.model,
                "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                "cost": c.cost})

    def prompt(self, window: list[SampleRecord]) -> Prompt:
        valid = sorted((r for r in window if r.ok and r.program and r.duplicate_of is None),
                       key=lambda r: r.score or float("-inf"))
        show = valid[-3:][::-1] + [r for r in valid[:3] if r not in valid[-3:]]

        def block(r: SampleRecord) -> str:
            nmse = r.nmse.get("train")
            head = f"# {'NMSE = ' + format(nmse, '.4g') if nmse is not None else 'score n/a'}"
            return f"{head}\n{(r.program or '').rstrip()}"

        programs = "\n\n".join(block(r) for r in show) or "# (no valid programs in this window)"
        failed = sum(1 for r in window if not r.ok)
        fields = dict(programs=programs, failed=failed, window=len(window),
                      memory="\n".join(f"- {m}" for m in self.items) or "(none yet)",
                      description=self.description)
        name = self.strategy
        completion = Template(strategy_template(name, "reflect_completion")).substitute(fields)
        messages = [
            {"role": "system", "content": strategy_template(name, "reflect_system").strip()},
            {"role": "user", "content": Template(strategy_template(name, "reflect_user"))
             .substitute(fields).strip()},
        ]
        return Prompt(completion=completion, messages=messages, version=0, template=f"{name}:reflect")
