"""The typed lines of a run directory: one sample of ``samples.jsonl``, one prompt.

A ``SampleRecord`` is what the loop knows about one model response: where it came from
(island, prompt, parents, model, tokens, seed) and the ``EvalResult`` the evaluator gave
its program. The result is held, not copied: the loop records ``SampleRecord(...,
result=result)`` and a duplicate reuses its first's result. On disk the result's fields
sit flat in the sample's line (``ok``, ``error``, ``score``, ``params``, ``nmse``, …,
``eval_seconds``), the format every earlier run directory has; ``to_json`` and the
validator convert between the two, so nothing else needs to know.

Every field a line may carry is declared here, typed: the agent's (``episode``, ``turn``,
``tool``, ``registered``) included. Code that builds a record with a field not declared here
is an error (a typo never becomes an untyped extra); a key a line on disk carries that this
model does not know (a run directory from another version, or hand-edited) is dropped on
reading. The optional fields most records lack (``OMITTED_WHEN_NONE``) are left out of
the line when unset, so lines are what earlier versions wrote.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from eqforge.evaluator.evaluate import EvalResult

#: the EvalResult fields a sample's line carries (``seconds`` is written as ``eval_seconds``)
RESULT_FIELDS = ("ok", "error", "detail", "score", "params", "n_params", "nmse", "metrics")

#: fields written only when set (earlier versions wrote them only for the records that had them)
OMITTED_WHEN_NONE = frozenset({"finish_reason", "reasoning_estimated", "episode", "turn", "tool",
                               "registered", "response_truncated", "response_chars"})


class SampleRecord(BaseModel):
    """One line of ``samples.jsonl``."""

    model_config = ConfigDict(extra="forbid")

    index: int
    id: str
    source: str = "llm"  # "llm" or "seed"
    time: float = Field(default_factory=time.time)
    elapsed: float = 0.0
    island: int | None = None
    prompt_hash: str | None = None
    parent_ids: list[str] = Field(default_factory=list)
    model: str | None = None
    prompt_style: str | None = None
    response: str | None = None
    program: str | None = None
    program_key: str | None = None
    duplicate_of: str | None = None
    result: EvalResult = Field(default_factory=lambda: EvalResult(ok=False))
    llm_seconds: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    cached: bool = False
    #: the request's seed and this sample's place among its choices (the server used seed + choice)
    seed: int | None = None
    choice: int | None = None
    #: a reasoning model's trace: characters (in <think> tags or a separate field) and tokens
    #: (reported by the API, or estimated by the trace's share of the text: reasoning_estimated)
    reasoning_chars: int | None = None
    reasoning_tokens: int | None = None
    reasoning_estimated: bool | None = None
    #: why the model stopped: "stop", "length" (hit --max-tokens), …
    finish_reason: str | None = None
    #: the agent strategy's samples: the episode and turn that proposed it, through which tool
    #: ("evaluate" or "submit"), and whether it entered the programs database (submits only)
    episode: str | None = None
    turn: int | None = None
    tool: str | None = None
    registered: bool | None = None
    #: an answer longer than [llm] max_response_chars: cut before parsing; its original length
    response_truncated: bool | None = None
    response_chars: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _flat_result(cls, data: Any) -> Any:
        """A line from disk carries the result's fields flat; gather them into ``result``."""
        if not isinstance(data, dict) or "result" in data:
            return data
        data = dict(data)
        fields = {k: data.pop(k) for k in RESULT_FIELDS if k in data}
        for key in [k for k in data if k not in cls.model_fields and k != "eval_seconds"]:
            del data[key]  # another version's field: not this model's to interpret
        seconds = data.pop("eval_seconds", None)
        fields["seconds"] = seconds or 0.0
        fields["ok"] = bool(fields.get("ok", False))
        for key in ("nmse", "metrics"):
            if fields.get(key) is None:
                fields.pop(key, None)
        if fields.get("detail") is None:
            fields.pop("detail", None)
        data["result"] = fields
        return data

    def to_json(self) -> dict[str, Any]:
        """The line written to ``samples.jsonl``."""
        out = self.model_dump(exclude={"result"})
        for key in OMITTED_WHEN_NONE:
            if out[key] is None:
                del out[key]
        r = self.result
        out.update({k: getattr(r, k) for k in RESULT_FIELDS}, eval_seconds=r.seconds)
        return out

    # read-only views of the result, for the many readers of a record
    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def error(self) -> str | None:
        return self.result.error

    @property
    def detail(self) -> str:
        return self.result.detail

    @property
    def score(self) -> float | None:
        return self.result.score

    @property
    def params(self) -> list[float] | None:
        return self.result.params

    @property
    def n_params(self) -> int | None:
        return self.result.n_params

    @property
    def nmse(self) -> dict[str, float | None]:
        return self.result.nmse

    @property
    def metrics(self) -> dict[str, dict[str, float | None]]:
        return self.result.metrics

    @property
    def eval_seconds(self) -> float:
        return self.result.seconds


def prompt_line(prompt: Any) -> dict[str, Any]:
    """One line of ``prompts.jsonl`` for a ``prompts.prompt.Prompt``."""
    return {"hash": prompt.hash, "template": prompt.template, "version": prompt.version,
            "source_ids": prompt.source_ids, "completion": prompt.completion,
            "messages": prompt.messages}
