"""A response-size cap in front of everything that reads a model's answer.

A model (or a server speaking for one) may send any amount of text. Everything downstream
parses it on the event loop (``prompts/parsing.py``, the agent's protocol), writes it into
``samples.jsonl`` and shows it in reports, so the run caps each answer once, here, before
any of that: ``[llm] max_response_chars`` characters, the rest dropped. A cut answer says
so in ``Completion.extra`` (``response_truncated``, ``response_chars``: the original
length), which the sample record keeps. The cap sits outside the response cache, so the
cache keeps what the server sent and a later run with a larger cap sees all of it.

Being the outermost layer, it also counts what the run received: ``responses`` (answers
without an error) and ``cache_hits`` (those the response cache served), which
``describe()`` puts into ``summary.json``'s ``llm`` section for the sweep tables.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from eqforge.agents.llm.base import Completion, LLMBackend, SamplingParams, WrappedBackend
from eqforge.prompts.prompt import Prompt

DEFAULT_MAX_RESPONSE_CHARS = 65_536
# what the sample record says about a cut answer (see agents/scoring.py RECORDED_EXTRAS)
TRUNCATION_FIELDS = ("response_truncated", "response_chars")


def cap_text(text: str, limit: int) -> tuple[str, int | None]:
    """``(text, None)`` when within ``limit`` characters, else ``(first limit chars, original length)``."""
    if len(text) <= limit:
        return text, None
    return text[:limit], len(text)


def truncation_extra(original: int | None) -> dict[str, Any]:
    return {} if original is None else {"response_truncated": True, "response_chars": original}


def cap_completion(c: Completion, limit: int) -> Completion:
    """The completion with its text (and a separately reported reasoning text) capped."""
    text, original = cap_text(c.text or "", limit)
    extra = dict(c.extra)
    reasoning = extra.get("reasoning_content")
    if isinstance(reasoning, str) and len(reasoning) > limit:
        extra["reasoning_content"] = reasoning[:limit]
    if original is None and extra == c.extra:
        return c
    extra.update(truncation_extra(original))
    return dataclasses.replace(c, text=text, extra=extra)


class CappedBackend(WrappedBackend):
    """Cut every answer of the wrapped backend to ``limit`` characters, recording the cut."""

    def __init__(self, inner: LLMBackend, limit: int = DEFAULT_MAX_RESPONSE_CHARS) -> None:
        super().__init__(inner)
        self.limit = limit
        self.responses = 0
        self.cache_hits = 0

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        out = await self.inner.generate(prompt, sampling)
        for c in out:
            if c.error is None:
                self.responses += 1
                self.cache_hits += int(bool(c.cached))
        return [cap_completion(c, self.limit) for c in out]

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), "max_response_chars": self.limit, "responses": self.responses,
                "cache_hits": self.cache_hits}


def capped_layer(backend: LLMBackend) -> CappedBackend | None:
    """The ``CappedBackend`` among a backend's wrappers, if any."""
    while isinstance(backend, WrappedBackend):
        if isinstance(backend, CappedBackend):
            return backend
        backend = backend.inner
    return None


def response_limit(backend: LLMBackend) -> int:
    """The cap a backend's wrappers apply (the default when none does): for callers that
    reach past the wrappers, such as the agent's tools API."""
    layer = capped_layer(backend)
    return DEFAULT_MAX_RESPONSE_CHARS if layer is None else layer.limit


def count_response(backend: LLMBackend) -> None:
    """Count an answer received past the wrappers (the agent's tools API) in the run's totals."""
    layer = capped_layer(backend)
    if layer is not None:
        layer.responses += 1
