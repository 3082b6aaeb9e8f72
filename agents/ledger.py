"""The ledger: the one owner of a run's shared, mutable state.

Every part of the search that runs concurrently — the loop's workers, a strategy's reflective
memory, the agent's episodes and tools, a baseline searcher recording its final model — reads
and changes the same few things: how much of the sample budget is spoken for, whether the run
must stop (and whether a backend error made that fatal), the records written so far and the
index the next one takes, and the counters shown to the user. They live here, behind a small
API, so that no one needs the loop itself and the budget arithmetic is written once:

    with ledger.reserve(4) as slot:     # 0..4 samples of the sample budget, released on exit
        if not slot.n:
            return                      # budget (samples, seconds or cost) exhausted, or stopped
        ...                             # ask the model; slot.keep(len(answers)) if fewer came
        ledger.record(result, source="llm", ...)

Recording goes through the run directory (``samples.jsonl``, ``best.py``) and the progress view
before the next decision can depend on it, which is what makes ``--resume`` exact. Nothing
here awaits: every method runs to completion between two awaits of the event loop, so the
workers need no lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eqforge.agents.progress import Progress
from eqforge.errors import BackendError
from eqforge.evaluator.evaluate import EvalResult
from eqforge.evaluator.rundir import RunDir, RunStats, SampleRecord

#: the record id's prefix by the sample's source (``seed`` has the fixed id "seed")
ID_PREFIX = {"guess": "g", "baseline": "b"}


class Reservation:
    """Samples of the budget held for one step; what is not recorded is released on exit."""

    def __init__(self, ledger: Ledger, n: int) -> None:
        self._ledger = ledger
        self.n = n

    def keep(self, n: int) -> None:
        """Hold only ``n`` of the reserved samples (a backend returned fewer answers)."""
        n = max(0, min(n, self.n))
        self._ledger.reserved -= self.n - n
        self.n = n

    def _release(self) -> None:
        self._ledger.reserved -= self.n
        self.n = 0


class Ledger:
    """A run's budget, stop state, records and counters; see the module doc."""

    def __init__(self, stats: RunStats, recorder: RunDir, progress: Progress | None = None, *,
                 problem_name: str, target_score: float | None = None) -> None:
        self.stats = stats
        self.recorder = recorder
        self.progress = progress or Progress()
        self.problem_name = problem_name
        self.target_score = target_score
        self.records: list[SampleRecord] = []
        #: the first record of each distinct program (by ``program_key``): what duplicates point to
        self.by_key: dict[str, SampleRecord] = {}
        self.next_index = 1
        #: samples reserved by steps in flight, not yet recorded
        self.reserved = 0
        self.stop_reason: str | None = None
        self.fatal: BackendError | None = None

    # -- the budget ---------------------------------------------------------------------
    @contextmanager
    def reserve(self, want: int) -> Iterator[Reservation]:
        """Hold up to ``want`` samples of the budget (``slot.n``; 0 when the run must stop).

        Applies the time and cost budgets first. The block records its samples (each record
        counts against ``stats.samples``); the hold is released whole when the block exits,
        however it exits, so a sample is never counted twice nor a failed step's share lost.
        """
        slot = Reservation(self, self._take(want))
        try:
            yield slot
        finally:
            slot._release()

    def _take(self, want: int) -> int:
        s = self.stats
        if self.stop_reason is None:
            if s.max_seconds is not None and s.elapsed >= s.max_seconds:
                self.stop("time budget")
            elif s.max_cost is not None and s.cost >= s.max_cost:
                self.stop("cost budget")
        if self.stop_reason is not None:
            return 0
        n = max(0, min(want, s.budget - s.samples - self.reserved))
        self.reserved += n
        return n

    def budget_left(self) -> bool:
        """Whether another sample may be started (also applies the time and cost budgets)."""
        self._take(0)
        return self.stop_reason is None and self.stats.samples + self.reserved < self.stats.budget

    def charge(self, prompt_tokens: int | None, completion_tokens: int | None,
               cost: float | None) -> None:
        """Count a model call that produced no sample record (reflection, agent turns)."""
        self.stats.prompt_tokens += prompt_tokens or 0
        self.stats.completion_tokens += completion_tokens or 0
        self.stats.cost += cost or 0.0

    # -- stopping -----------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        """Ask every worker to stop (the first reason given is the one reported)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def fail(self, exc: BackendError) -> None:
        """A backend error ends the run; the loop re-raises it after writing the summary."""
        self.fatal = exc
        self.stop("backend error")

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None

    # -- records ------------------------------------------------------------------------
    def record(self, result: EvalResult, *, index: int | None = None, **fields: Any) -> SampleRecord:
        """Write one sample (the next index unless given), count it and say so to the view."""
        if index is None:
            index = self.next_index
            self.next_index += 1
        source = str(fields.get("source", "llm"))
        rec_id = "seed" if source == "seed" else f"{ID_PREFIX.get(source, 's')}{index}"
        rec = SampleRecord(index=index, id=rec_id, elapsed=self.stats.elapsed, result=result, **fields)
        self.account(rec, write=True)
        return rec

    def account(self, rec: SampleRecord, *, write: bool) -> None:
        """Update counters, the dedup table and the best program for one record
        (``write=False``: a record of an earlier session, read back on resume)."""
        if write:
            self.recorder.write_sample(rec)
        self.records.append(rec)
        if rec.program_key and rec.duplicate_of is None:
            self.by_key.setdefault(rec.program_key, rec)
        s = self.stats
        if s.add(rec, live=write) and write:
            self.recorder.write_best(rec, self.problem_name)
        if write:
            self.progress.update(s)
            if self.target_score is not None and s.best_score is not None and s.best_score >= self.target_score:
                self.stop("target score")

    def restored(self, records: list[SampleRecord]) -> None:
        """Set the next index after the records of an earlier session (already accounted)."""
        self.next_index = max((r.index for r in records), default=0) + 1
