"""The prompt as it crosses into a backend: one value, rendered for chat and for completion.

It lives apart from prompt building (``prompts.builder``) so that backends, caches and
price tables can take a ``Prompt`` without importing templates or problem specs: the
backends sit above this module, the builder beside it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from eqforge.problems.entry import versioned

#: where a completion-style answer (the body of ``equation_vN``) ends: the next top-level
#: statement that starts a definition. Backends send them as stop sequences and parsing cuts
#: a completion at the same places; chat answers get none (a ``def`` starts their code block).
COMPLETION_STOPS: tuple[str, ...] = ("\ndef ", "\nclass ", "\nif __name__")
#: the same boundaries as line starts, for reading a completion that ran past them
BODY_ENDS: tuple[str, ...] = tuple(s.lstrip("\n") for s in COMPLETION_STOPS)


@dataclass(frozen=True)
class Prompt:
    completion: str
    messages: list[dict[str, str]]
    version: int
    source_ids: list[str] = field(default_factory=list)
    template: str = "llmsr"

    @property
    def next_name(self) -> str:
        return versioned(self.version)

    @property
    def hash(self) -> str:
        blob = json.dumps([self.completion, self.messages], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def text_for(self, style: str) -> str | list[dict[str, str]]:
        return self.completion if style == "completion" else self.messages
