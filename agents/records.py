"""Run records on disk: everything needed to audit, analyse and resume a run.

A run directory holds ``config.json`` (resolved configuration, versions, seed),
``samples.jsonl`` (one line per sample, appended and flushed as soon as it is scored),
``prompts.jsonl`` (each distinct prompt once, keyed by hash), ``events.jsonl`` (island
resets, memory updates), ``turns.jsonl`` (the agent strategy's conversations, one line per
turn), ``best.py`` and ``summary.json``. Lines are written whole and fsynced, and a
torn last line (the process was killed mid-write) is dropped when the run is resumed.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from eqforge.errors import EqforgeError


class SampleRecord(BaseModel):
    """One line of ``samples.jsonl``."""

    model_config = ConfigDict(extra="allow")

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
    ok: bool = False
    error: str | None = None
    detail: str = ""
    score: float | None = None
    params: list[float] | None = None
    n_params: int | None = None
    nmse: dict[str, float | None] = Field(default_factory=dict)
    metrics: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    llm_seconds: float | None = None
    eval_seconds: float | None = None
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


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("eqforge", "numpy", "scipy", "sympy", "pydantic", "openai"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _append(path: Path, obj: dict[str, Any]) -> None:
    line = json.dumps(obj, allow_nan=False, default=_jsonable) + "\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """Replace non-finite floats by None so files stay strict JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def read_jsonl(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Read a JSONL file. A final line without its newline was torn by a kill: it is
    ignored, and with ``repair`` cut from the file so appends start on a clean line."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    complete, _, tail = raw.rpartition(b"\n")
    out = []
    for number, line in enumerate(complete.split(b"\n") if complete else [], start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            raise EqforgeError(f"{path}: line {number} is corrupt JSON; cannot read it") from None
    if tail.strip() and repair:
        with path.open("r+b") as fh:
            fh.truncate(len(raw) - len(tail))
    return out


class RunRecorder:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.samples_path = directory / "samples.jsonl"
        self.prompts_path = directory / "prompts.jsonl"
        self.events_path = directory / "events.jsonl"
        self.turns_path = directory / "turns.jsonl"
        self._prompt_hashes: set[str] = {
            p["hash"] for p in read_jsonl(self.prompts_path, repair=True) if "hash" in p
        }

    # -- writing --------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        data = {**config, "versions": package_versions(), "argv": sys.argv}
        (self.dir / "config.json").write_text(json.dumps(data, indent=2, default=_jsonable))

    def read_config(self) -> dict[str, Any]:
        path = self.dir / "config.json"
        if not path.exists():
            raise EqforgeError(f"{self.dir}: no config.json here; is this a run directory?")
        return json.loads(path.read_text())

    def write_prompt(self, prompt: Any) -> None:
        if prompt.hash in self._prompt_hashes:
            return
        self._prompt_hashes.add(prompt.hash)
        _append(self.prompts_path, {
            "hash": prompt.hash, "template": prompt.template, "version": prompt.version,
            "source_ids": prompt.source_ids, "completion": prompt.completion,
            "messages": prompt.messages,
        })

    def write_sample(self, record: SampleRecord) -> None:
        _append(self.samples_path, _clean(record.model_dump()))

    def write_event(self, event: dict[str, Any]) -> None:
        _append(self.events_path, _clean(event))

    def write_turn(self, turn: dict[str, Any]) -> None:
        """One agent turn: messages added, tool calls and results, tokens (``agents.agent``)."""
        _append(self.turns_path, _clean({"time": time.time(), **turn}))

    def write_best(self, record: SampleRecord, problem_name: str) -> None:
        header = (
            f"# Best equation found by eqforge for {problem_name}\n"
            f"# sample {record.id}, score (-MSE on train) {record.score!r}\n"
            f"# test NMSE: {json.dumps(record.nmse)}\n"
            "import numpy as np\n\n"
            f"PARAMS = {json.dumps(record.params)}\n\n\n"
        )
        (self.dir / "best.py").write_text(header + (record.program or ""))

    def write_summary(self, summary: dict[str, Any]) -> None:
        tmp = self.dir / "summary.json.tmp"
        tmp.write_text(json.dumps(_clean(summary), indent=2, default=_jsonable))
        tmp.replace(self.dir / "summary.json")

    # -- reading --------------------------------------------------------------------------
    def read_samples(self) -> list[SampleRecord]:
        return [SampleRecord.model_validate(d) for d in read_jsonl(self.samples_path, repair=True)]

    def read_events(self) -> list[dict[str, Any]]:
        return read_jsonl(self.events_path, repair=True)

    def read_turns(self) -> list[dict[str, Any]]:
        return read_jsonl(self.turns_path, repair=True)

    def model_turns(self) -> int:
        """How many model answers the recorded agent turns hold (episode ends hold none)."""
        return sum(1 for t in self.read_turns() if "text" in t)


def failure_counts(records: list[SampleRecord]) -> dict[str, int]:
    return dict(Counter(r.error for r in records if not r.ok and r.error).most_common())
