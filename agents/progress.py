"""Progress reporting hooks for the discovery loop.

The loop reports to a ``Progress`` object after every sample; the default writes a plain
log line every few seconds. A rich terminal view lives in ``agents.live`` and implements
the same interface.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("eqforge.run")


@dataclass
class RunStats:
    """Counters the loop maintains; also what summaries and live views show."""

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
    cost: float = 0.0
    llm_calls: int = 0
    cached_calls: int = 0
    start: float = field(default_factory=time.monotonic)
    elapsed_before: float = 0.0  # wall time of earlier sessions of a resumed run
    max_seconds: float | None = None
    max_cost: float | None = None
    #: what the model backend waits on now ("rate-limited, waiting 8s"), asked at each redraw
    llm_status: Callable[[], str | None] | None = None

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

    session_samples: int = 0


class Progress:
    """Interface: called by the loop. The base class logs a line every ``every`` seconds."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._last = 0.0

    def start(self, stats: RunStats) -> None:
        log.info("run started: budget %d samples", stats.budget)

    def update(self, stats: RunStats) -> None:
        now = time.monotonic()
        if now - self._last < self.every and stats.samples < stats.budget:
            return
        self._last = now
        best = f"{stats.best_score:.6g}" if stats.best_score is not None else "-"
        log.info(
            "samples %d/%d (%.2f/s) valid %.0f%% best %s tokens %d cost $%.4f elapsed %.0fs",
            stats.samples, stats.budget, stats.rate, 100 * stats.valid_rate, best,
            stats.prompt_tokens + stats.completion_tokens, stats.cost, stats.elapsed,
        )

    def finish(self, stats: RunStats, reason: str) -> None:
        log.info("run stopped (%s) after %d samples; best score %s", reason, stats.samples,
                 stats.best_score)


class QuietProgress(Progress):
    def start(self, stats: RunStats) -> None:
        pass

    def update(self, stats: RunStats) -> None:
        pass

    def finish(self, stats: RunStats, reason: str) -> None:
        pass
