"""The one protocol every LLM backend speaks: "give me n responses to this prompt".

Backends differ in transport (HTTP, in-process, a file) and in the prompt form they want:
chat models get system + user messages, base/small models get raw completion text that
they continue. That form is a property of the backend (``prompt_style``), recorded with
every sample, so the loop never has to know which model it talks to.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from eqforge.prompts.prompt import Prompt

PromptStyle = Literal["chat", "completion"]



@dataclass(frozen=True)
class SamplingParams:
    n: int = 4
    temperature: float = 0.8
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class Completion:
    """One response. ``error`` is set (and ``text`` empty) when this sample failed."""

    text: str
    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    latency: float = 0.0
    cached: bool = False
    cost: float | None = None
    error: str | None = None
    extra: dict = field(default_factory=dict)


class LLMBackend(abc.ABC):
    """Base class for backends. Subclasses implement ``_generate``."""

    #: identifies the model in records, e.g. ``openai:gpt-4o-mini``
    name: str = "backend"
    #: which prompt form this backend wants
    prompt_style: PromptStyle = "chat"
    #: how many prompts may be in flight at once (replay: 1, to stay deterministic)
    max_concurrency: int = 64
    #: whether responses may be stored in the response cache (model backends: yes;
    #: replay and test fakes: no, their answers do not depend on the prompt)
    cacheable: bool = False

    @abc.abstractmethod
    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        """Return ``sampling.n`` completions (failed ones carry ``error``)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections or models."""

    def status(self) -> str | None:
        """What the backend is waiting on right now, for live views ("rate-limited, waiting 8s")."""
        return None

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "prompt_style": self.prompt_style}


class WrappedBackend(LLMBackend):
    """A backend that adds behaviour (cache, prices) around another, delegating the rest."""

    def __init__(self, inner: LLMBackend) -> None:
        self.inner = inner

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def prompt_style(self) -> PromptStyle:  # type: ignore[override]
        return self.inner.prompt_style

    @property
    def max_concurrency(self) -> int:  # type: ignore[override]
        return self.inner.max_concurrency

    @property
    def cacheable(self) -> bool:  # type: ignore[override]
        return self.inner.cacheable

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        return await self.inner.generate(prompt, sampling)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def status(self) -> str | None:
        return self.inner.status()

    def describe(self) -> dict[str, object]:
        return self.inner.describe()


def user_cache_dir(name: str, override_env: str) -> Path:
    """``$override_env`` if set, else ``$XDG_CACHE_HOME/eqforge/name`` (``~/.cache`` by default)."""
    env = os.environ.get(override_env)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "eqforge" / name
