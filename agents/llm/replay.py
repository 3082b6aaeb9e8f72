"""Replay backend: serves recorded responses from a JSONL file, in order, cycling.

Each line is an object with key ``response`` (raw model text). It makes tests and exact
re-runs deterministic and free. It always asks for one prompt at a time so the order in
which responses meet prompts does not depend on timing.

``replay:RUN_DIR`` (what ``eqforge run --replay-from RUN_DIR`` uses) serves a recorded run's
own samples: the responses of its ``samples.jsonl`` in sample order, with the model that
wrote each one, its token counts and its per-sample model failure (``llm:*``) if it had one.
"""

from __future__ import annotations

from pathlib import Path

from eqforge.agents.llm.base import Completion, LLMBackend, SamplingParams
from eqforge.errors import BackendError, EqforgeError
from eqforge.evaluator import jsonl
from eqforge.evaluator.rundir import RunDir
from eqforge.prompts.prompt import Prompt


def read_responses(path: Path) -> list[str]:
    if not path.is_file():
        raise BackendError(f"{path}: replay file not found")
    out = [obj["response"] for _, obj in jsonl.read_inputs(path, "response", error=BackendError)]
    if not out:
        raise BackendError(f"{path}: no responses in the replay file")
    return out


def read_run_samples(run_dir: Path) -> list[dict]:
    """The model samples of a run directory, in sample order (read through ``RunDir``)."""
    run = RunDir(run_dir)
    if not run.has_samples():
        raise BackendError(f"{run_dir}: not a run directory (no samples.jsonl)")
    records = sorted((r for r in run.read_samples(strict=False) if r.source == "llm"), key=lambda r: r.index)
    if not records:
        raise BackendError(f"{run.path('samples.jsonl')}: the run has no model samples to replay")
    return [r.to_json() for r in records]


def recorded_prompt_style(run_dir: Path) -> str | None:
    try:
        return RunDir(run_dir).read_config().get("backend", {}).get("prompt_style")
    except (EqforgeError, AttributeError):
        return None


class ReplayBackend(LLMBackend):
    max_concurrency = 1

    def __init__(self, path: str | Path, *, start: int = 0, style: str = "chat") -> None:
        self.path = Path(path)
        self.rows: list[dict] | None = None
        if self.path.is_dir():
            self.rows = read_run_samples(self.path)
            self.responses = [r.get("response") or "" for r in self.rows]
            if style == "auto":
                style = recorded_prompt_style(self.path) or "chat"
        else:
            self.responses = read_responses(self.path)
        self.position = start
        self.name = f"replay:{self.path.name}"
        self.prompt_style = "completion" if style == "completion" else "chat"

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "path": str(self.path)}

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        out = []
        for _ in range(sampling.n):
            i = self.position % len(self.responses)
            self.position += 1
            text = self.responses[i]
            if self.rows is None:
                out.append(Completion(text=text, model=self.name, prompt_tokens=0,
                                      completion_tokens=0, finish_reason="stop", cost=0.0))
                continue
            row = self.rows[i]
            err = row.get("error")
            llm_error = err if isinstance(err, str) and err.startswith("llm:") else None
            out.append(Completion(
                text="" if llm_error else text, model=row.get("model") or self.name,
                prompt_tokens=row.get("prompt_tokens"), completion_tokens=row.get("completion_tokens"),
                finish_reason=row.get("finish_reason", "stop"), cost=0.0, error=llm_error,
                extra={"detail": row.get("detail", ""), "replayed": row.get("id")},
            ))
        return out
