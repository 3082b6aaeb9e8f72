"""Progress reporting hooks for the discovery loop.

The loop reports to a ``Progress`` object after every sample; the default writes a plain
log line every few seconds. A rich terminal view lives in ``agents.live`` and implements
the same interface. The counters they show are the run's ``RunStats`` (``evaluator.rundir``).
"""

from __future__ import annotations

import logging
import time

from eqforge.evaluator.rundir import RunStats

log = logging.getLogger("eqforge.run")


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
