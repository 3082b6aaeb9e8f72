"""Progress of a whole sweep: runs done / running / left, elapsed, estimated remaining.

``PlainSweepProgress`` logs a line when a run starts or ends and every ``every`` seconds
(what a log file or CI wants); ``LiveSweepProgress`` draws the same with ``rich`` on a
terminal, with each running run's sample count read from its records.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from eqforge.evaluator.rundir import RunDir
from eqforge.textsafe import terminal_safe

log = logging.getLogger("eqforge.sweep")


def duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "–"
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def samples_on_record(run_dir: Path) -> int:
    return max(0, RunDir(run_dir).count_samples() - 1)  # the seed's line is not a sample


def shown(run_dir: Path) -> str:
    """A run's name for a terminal line: one line, control sequences inert (``textsafe``)."""
    return terminal_safe(run_dir.name, oneline=True)


def status_line(state: Any) -> str:
    return (f"runs {state.done}/{state.total} done, {len(state.running)} running, {state.left} left"
            + (f", {state.failed} failed" if state.failed else "")
            + (f" ({state.skipped} finished earlier)" if state.skipped else "")
            + f"; elapsed {duration(state.elapsed)}, remaining ~{duration(state.eta)}")


class PlainSweepProgress:
    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self._last = time.monotonic()

    def start(self, state: Any) -> None:
        log.info("sweep: %s", status_line(state))

    def started(self, state: Any, run_dir: Path) -> None:
        log.info("sweep: started %s", shown(run_dir))

    def finished(self, state: Any, run_dir: Path, ok: bool) -> None:
        log.info("sweep: %s %s; %s", "finished" if ok else "FAILED", shown(run_dir), status_line(state))

    def update(self, state: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            log.info("sweep: %s", status_line(state))

    def stop(self, state: Any, *, interrupted: bool) -> None:
        log.info("sweep %s: %s", "interrupted" if interrupted else "ended", status_line(state))


class QuietSweepProgress(PlainSweepProgress):
    def start(self, state: Any) -> None:
        pass

    def started(self, state: Any, run_dir: Path) -> None:
        pass

    def finished(self, state: Any, run_dir: Path, ok: bool) -> None:
        pass

    def update(self, state: Any) -> None:
        pass

    def stop(self, state: Any, *, interrupted: bool) -> None:
        pass


class LiveSweepProgress(PlainSweepProgress):
    """A rich panel: a bar over all runs, the counters, and one line per running run."""

    def __init__(self, console: Any = None, samples: int | None = None) -> None:
        from rich.console import Console

        super().__init__()
        self.console = console or Console(stderr=True)
        self.samples = samples
        self.live: Any = None
        self._state: Any = None
        self._lines: list[str] = []

    def _render(self) -> Any:
        from rich.markup import escape
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        s = self._state
        grid = Table.grid(padding=(0, 1))
        grid.add_row(ProgressBar(total=max(1, s.total), completed=s.done, width=40),
                     f"{s.done}/{s.total} runs")
        grid.add_row("", status_line(s))
        for d in s.running[:12]:
            n = samples_on_record(d)
            grid.add_row("  running", escape(f"{shown(d)}: {n}" + (f"/{self.samples}" if self.samples else "")
                                             + " samples"))
        if len(s.running) > 12:
            grid.add_row("", f"… and {len(s.running) - 12} more")
        for line in self._lines[-3:]:
            grid.add_row("", line)
        return Panel(grid, title="eqforge sweep", border_style="blue")

    def start(self, state: Any) -> None:
        from rich.live import Live

        self._state = state
        self.live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
        self.live.start()

    def started(self, state: Any, run_dir: Path) -> None:
        self._state = state

    def finished(self, state: Any, run_dir: Path, ok: bool) -> None:
        from rich.markup import escape

        self._state = state
        if not ok:
            self._lines.append(f"[red]failed[/red] {escape(shown(run_dir))}")

    def update(self, state: Any) -> None:
        self._state = state
        if self.live is not None:
            self.live.update(self._render())

    def stop(self, state: Any, *, interrupted: bool) -> None:
        self._state = state
        if self.live is not None:
            self.live.update(self._render())
            self.live.stop()
            self.live = None
