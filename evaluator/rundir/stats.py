"""A run's counters, computed one way from its sample records.

The loop adds each record as it is written (and every record of an earlier session when a
run resumes), the summary and the live view read the same object, and the report and the
sweep tables build one with ``RunStats.from_records`` from a run directory: the numbers a
user sees are counted once, by ``add``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from eqforge.evaluator.rundir.records import SampleRecord


@dataclass
class RunStats:
    """Counters the loop maintains; also what summaries, live views and reports show."""

    budget: int = 0
    samples: int = 0
    valid: int = 0
    duplicates: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    best_score: float | None = None
    best_program: str | None = None
    best_id: str | None = None
    best_params: list[float] | None = None
    problem: str | None = None  # name, for titles of live views
    strategy: str | None = None  # prompting strategy, shown beside the problem
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float = 0.0
    llm_calls: int = 0
    cached_calls: int = 0
    start: float = field(default_factory=time.monotonic)
    elapsed_before: float = 0.0  # wall time of earlier sessions of a resumed run
    max_seconds: float | None = None
    max_cost: float | None = None
    #: what the model backend waits on now ("rate-limited, waiting 8s"), asked at each redraw
    llm_status: Callable[[], str | None] | None = None
    session_samples: int = 0
    #: the record of the best program so far
    best: SampleRecord | None = None

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.start

    @property
    def valid_rate(self) -> float:
        return self.valid / self.samples if self.samples else 0.0

    @property
    def rate(self) -> float:
        session = time.monotonic() - self.start
        return self.session_samples / session if session > 0 else 0.0

    def add(self, rec: SampleRecord, *, live: bool = False) -> bool:
        """Count one record (``live``: written in this session); True if it is the new best."""
        self.reasoning_tokens += rec.reasoning_tokens or 0
        if rec.source == "llm":
            self.samples += 1
            self.session_samples += int(live)
            self.valid += int(rec.ok)
            self.duplicates += int(rec.duplicate_of is not None)
            if not rec.ok and rec.error:
                self.failures[rec.error] = self.failures.get(rec.error, 0) + 1
            self.prompt_tokens += rec.prompt_tokens or 0
            self.completion_tokens += rec.completion_tokens or 0
            self.cost += rec.cost or 0.0
            self.cached_calls += int(rec.cached)
        if rec.ok and rec.score is not None and (self.best_score is None or rec.score > self.best_score):
            self.best_score, self.best_program, self.best_id = rec.score, rec.program, rec.id
            self.best_params = rec.params
            self.best = rec
            return True
        return False

    @classmethod
    def from_records(cls, records: Iterable[SampleRecord], **fields: Any) -> RunStats:
        stats = cls(**fields)
        for rec in sorted(records, key=lambda r: r.index):
            stats.add(rec)
        return stats

    def counts(self) -> dict[str, Any]:
        """The summary's counters."""
        return {
            "samples": self.samples,
            "valid": self.valid,
            "duplicates": self.duplicates,
            "failures": dict(Counter(self.failures).most_common()),
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens,
                       "reasoning": self.reasoning_tokens},
            "cost": self.cost,
            "cached_samples": self.cached_calls,
        }


def failure_counts(records: Iterable[SampleRecord]) -> dict[str, int]:
    return dict(Counter(r.error for r in records if not r.ok and r.error).most_common())
