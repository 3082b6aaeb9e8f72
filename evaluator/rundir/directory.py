"""The run directory: every file of a run, written and read here and nowhere else.

    config.json     resolved configuration, problem, backend, package versions, argv
    samples.jsonl   one ``SampleRecord`` per sample, appended as soon as it is scored
    prompts.jsonl   each distinct prompt once, keyed by hash
    events.jsonl    island resets and strategy memory updates, in order
    turns.jsonl     the agent strategy's conversations, one line per turn
    best.py         the best program so far, runnable, with its fitted params
    summary.json    the run's outcome (written atomically at the end of each session)
    .lock           held (``fcntl.flock``) by the one process writing the run

A writer opens the directory with ``RunDir(path, write=True)`` (or ``with RunDir.writer(path)``),
which takes the lock first and only then repairs torn last lines, so that no reader of a
live run ever truncates a file under its writer. Readers use ``RunDir(path)``, strictly
(resume: records must be exact) or tolerantly (report, replay, sweep tables: a torn or
hand-edited line is skipped).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from eqforge.config import upgrade_saved
from eqforge.errors import EqforgeError
from eqforge.evaluator import jsonl
from eqforge.evaluator.rundir import lock
from eqforge.evaluator.rundir.records import SampleRecord, prompt_line

CONFIG, SAMPLES, PROMPTS, EVENTS, TURNS, BEST, SUMMARY = (
    "config.json", "samples.jsonl", "prompts.jsonl", "events.jsonl", "turns.jsonl", "best.py", "summary.json")


def package_versions() -> dict[str, str]:
    import platform

    out = {"python": platform.python_version()}
    for name in ("eqforge", "numpy", "scipy", "sympy", "pydantic", "openai"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


class RunDir:
    """One run directory; see the module doc."""

    def __init__(self, directory: str | Path, *, write: bool = False) -> None:
        self.dir = Path(directory)
        self.writing = False
        self._prompt_hashes: set[str] | None = None
        if write:
            self.open_for_writing()

    @classmethod
    @contextmanager
    def writer(cls, directory: str | Path) -> Iterator[RunDir]:
        run = cls(directory, write=True)
        try:
            yield run
        finally:
            run.close()

    # -- ownership ----------------------------------------------------------------------
    def open_for_writing(self) -> None:
        """Take the lock (``RunBusy`` names the process holding it), then repair torn lines."""
        if self.writing:
            return
        lock.acquire(self.dir)
        self.writing = True
        for name in (SAMPLES, PROMPTS, EVENTS, TURNS):
            jsonl.read(self.dir / name, strict=False, repair=True)

    def close(self) -> None:
        if self.writing:
            self.writing = False
            lock.release(self.dir)

    def _check_writing(self) -> None:
        if not self.writing:
            raise RuntimeError(f"{self.dir}: open the run directory for writing first")

    # -- what is here -------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.dir / name

    def exists(self) -> bool:
        return (self.dir / CONFIG).is_file()

    def has_samples(self) -> bool:
        return (self.dir / SAMPLES).exists()

    def has_turns(self) -> bool:
        """Whether the run is an agent run (its conversations are in ``turns.jsonl``)."""
        return (self.dir / TURNS).exists()

    # -- config.json --------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        self._check_writing()
        data = {**config, "versions": package_versions(), "argv": sys.argv}
        (self.dir / CONFIG).write_text(json.dumps(data, indent=2, default=jsonl.jsonable), encoding="utf-8")

    def read_config(self, *, exit_code: int = 1) -> dict[str, Any]:
        """``config.json`` in today's form (older runs' model settings moved into ``[llm]``);
        ``exit_code``: of the error when it is missing (the report's is 2, bad input)."""
        path = self.dir / CONFIG
        if not path.is_file():
            raise EqforgeError(f"{self.dir}: no config.json here; is this a run directory?", exit_code=exit_code)
        try:
            return upgrade_saved(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, AttributeError, TypeError) as exc:
            raise EqforgeError(f"{path}: not a run's config.json ({exc})", exit_code=exit_code) from None

    # -- samples.jsonl ------------------------------------------------------------------
    def write_sample(self, record: SampleRecord) -> None:
        self._check_writing()
        jsonl.append(self.dir / SAMPLES, record.to_json())

    def read_samples(self, *, strict: bool = True) -> list[SampleRecord]:
        out = []
        for number, line in enumerate(jsonl.read(self.dir / SAMPLES, strict=strict), start=1):
            try:
                out.append(SampleRecord.model_validate(line))
            except ValueError as exc:
                if strict:
                    raise EqforgeError(f"{self.dir / SAMPLES}: record {number} is not a sample ({exc})") from None
        return out

    def count_samples(self) -> int:
        """Complete lines of ``samples.jsonl`` (the seed's included), counted without parsing:
        cheap enough for a progress view polling live runs."""
        try:
            with (self.dir / SAMPLES).open("rb") as fh:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 16), b""))
        except OSError:
            return 0

    def read_sample_lines(self) -> list[dict[str, Any]]:
        """The raw lines (tolerant): for readers that show what is on disk as it is."""
        return jsonl.read(self.dir / SAMPLES, strict=False)

    # -- prompts.jsonl ------------------------------------------------------------------
    def write_prompt(self, prompt: Any) -> None:
        """A ``prompts.prompt.Prompt``, once per distinct hash."""
        self._check_writing()
        if self._prompt_hashes is None:
            self._prompt_hashes = {p["hash"] for p in self.read_prompts() if "hash" in p}
        if prompt.hash in self._prompt_hashes:
            return
        self._prompt_hashes.add(prompt.hash)
        jsonl.append(self.dir / PROMPTS, prompt_line(prompt))

    def read_prompts(self, *, strict: bool = False) -> list[dict[str, Any]]:
        return jsonl.read(self.dir / PROMPTS, strict=strict)

    # -- events.jsonl and turns.jsonl ---------------------------------------------------
    def write_event(self, event: dict[str, Any]) -> None:
        self._check_writing()
        jsonl.append(self.dir / EVENTS, event)

    def read_events(self, *, strict: bool = True) -> list[dict[str, Any]]:
        return jsonl.read(self.dir / EVENTS, strict=strict)

    def write_turn(self, turn: dict[str, Any]) -> None:
        """One agent turn: messages added, tool calls and results, tokens (``agents.agent``)."""
        import time

        self._check_writing()
        jsonl.append(self.dir / TURNS, {"time": time.time(), **turn})

    def read_turns(self, *, strict: bool = True) -> list[dict[str, Any]]:
        return jsonl.read(self.dir / TURNS, strict=strict)

    def model_turns(self) -> int:
        """How many model answers the recorded agent turns hold (episode ends hold none)."""
        return sum(1 for t in self.read_turns() if "text" in t)

    # -- best.py and summary.json -------------------------------------------------------
    def write_best(self, record: SampleRecord, problem_name: str) -> None:
        self._check_writing()
        header = (
            f"# Best equation found by eqforge for {problem_name}\n"
            f"# sample {record.id}, score (-MSE on train) {record.score!r}\n"
            f"# test NMSE: {json.dumps(record.nmse)}\n"
            "import numpy as np\n\n"
            f"PARAMS = {json.dumps(record.params)}\n\n\n"
        )
        (self.dir / BEST).write_text(header + (record.program or ""), encoding="utf-8")

    def write_summary(self, summary: dict[str, Any]) -> None:
        self._check_writing()
        tmp = self.dir / (SUMMARY + ".tmp")
        tmp.write_text(jsonl.dumps(summary, indent=2), encoding="utf-8")
        tmp.replace(self.dir / SUMMARY)

    def read_summary(self) -> dict[str, Any] | None:
        path = self.dir / SUMMARY
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
