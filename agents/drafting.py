"""Asking a backend one question synchronously: what ``eqforge new`` drafts with.

The discovery loop talks to backends asynchronously; authoring a problem needs one answer,
now, from ordinary synchronous code (and from a notebook whose event loop is already
running, hence the thread). ``as_complete`` wraps a backend as ``complete(text) -> str``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from eqforge.agents.llm.base import SamplingParams
from eqforge.errors import BackendError
from eqforge.problems.drafting import DRAFT_SYSTEM
from eqforge.prompts.prompt import Prompt


def _run_sync(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def as_complete(llm: Any, *, temperature: float = 0.2, max_tokens: int = 1024,
                close: bool = False) -> Callable[[str], str]:
    """A ``complete(text) -> str`` from a callable or from an LLM backend (async ``generate``)."""
    if hasattr(llm, "generate"):
        def complete(text: str) -> str:
            prompt = Prompt(
                completion=f"{DRAFT_SYSTEM}\n\n{text}\n",
                messages=[{"role": "system", "content": DRAFT_SYSTEM}, {"role": "user", "content": text}],
                version=0,
                template="authoring",
            )

            async def once() -> Any:
                try:
                    return await llm.generate(prompt, SamplingParams(n=1, temperature=temperature,
                                                                     max_tokens=max_tokens))
                finally:
                    if close and hasattr(llm, "aclose"):
                        await llm.aclose()

            completions = _run_sync(once())
            if not completions:
                raise BackendError("the model returned no response while drafting descriptions")
            first = completions[0]
            if getattr(first, "error", None):
                raise BackendError(f"drafting descriptions failed: {first.error}")
            return str(getattr(first, "text", first))
        return complete
    if callable(llm):
        return llm
    raise TypeError("llm must be a callable complete(text) -> str or a backend with async generate()")
