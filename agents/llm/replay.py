"""Replay backend: serves recorded responses from a JSONL file, in order, cycling.

Each line is an object with key ``response`` (raw model text). It makes tests and exact
re-runs deterministic and free. It always asks for one prompt at a time so the order in
which responses meet prompts does not depend on timing.
"""

from __future__ import annotations

import json
from pathlib import Path

from eqforge.agents.llm.base import Completion, LLMBackend, SamplingParams
from eqforge.errors import BackendError
from eqforge.prompts.builder import Prompt


def read_responses(path: Path) -> list[str]:
    if not path.is_file():
        raise BackendError(f"{path}: replay file not found")
    out: list[str] = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BackendError(f"{path}: line {i} is not JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("response"), str):
            raise BackendError(f"{path}: line {i} needs a string field 'response'")
        out.append(obj["response"])
    if not out:
        raise BackendError(f"{path}: no responses in the replay file")
    return out


class ReplayBackend(LLMBackend):
    max_concurrency = 1

    def __init__(self, path: str | Path, *, start: int = 0, style: str = "chat") -> None:
        self.path = Path(path)
        self.responses = read_responses(self.path)
        self.position = start
        self.name = f"replay:{self.path.name}"
        self.prompt_style = "completion" if style == "completion" else "chat"

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        out = []
        for _ in range(sampling.n):
            text = self.responses[self.position % len(self.responses)]
            self.position += 1
            out.append(Completion(text=text, model=self.name, prompt_tokens=0,
                                  completion_tokens=0, finish_reason="stop", cost=0.0))
        return out
