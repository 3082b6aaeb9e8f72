"""The prompt as it crosses into a backend: one value, rendered for chat and for completion.

It lives apart from prompt building (``prompts.builder``) so that backends, caches and
price tables can take a ``Prompt`` without importing templates or problem specs: the
backends sit above this module, the builder beside it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Prompt:
    completion: str
    messages: list[dict[str, str]]
    version: int
    source_ids: list[str] = field(default_factory=list)
    template: str = "llmsr"

    @property
    def next_name(self) -> str:
        return f"equation_v{self.version}"

    @property
    def hash(self) -> str:
        blob = json.dumps([self.completion, self.messages], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def text_for(self, style: str) -> str | list[dict[str, str]]:
        return self.completion if style == "completion" else self.messages
