"""A live terminal view of a run, drawn with ``rich``.

``LiveProgress`` implements the ``Progress`` interface. The loop calls ``update`` after
every sample; the view keeps a snapshot of the counters and redraws a few times a second
from it, so the clock keeps moving while the model is slow. It shows samples done and per
second, the valid rate and main failure reasons, the best score with its equation (the
closed form with fitted constants, converted from the program's AST when that is quick,
else the program's return line), tokens and cost, and elapsed / remaining budget.
Log records emitted while the view is up are printed above it instead of tearing it.
"""

from __future__ import annotations

import copy
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from eqforge.agents.progress import Progress, RunStats
from eqforge.textsafe import terminal_safe


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "–"
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def return_line(program: str | None, params: list[float] | None = None) -> str:
    """The program's last ``return`` expression: what the view shows without a formatter."""
    if not program:
        return "–"
    lines = [ln.strip() for ln in program.splitlines() if ln.strip().startswith("return ")]
    return lines[-1][len("return "):] if lines else program.strip().splitlines()[-1]


class LiveProgress(Progress):
    """Rich live panel; ``console`` defaults to stderr (where logs go)."""

    def __init__(self, console: Console | None = None, *, refresh_per_second: float = 4.0,
                 title: str | None = None, max_equation_chars: int = 400,
                 equation: Callable[[str | None, list[float] | None], str] = return_line) -> None:
        super().__init__()
        self.console = console or Console(stderr=True)
        self.refresh_per_second = refresh_per_second
        self.title = title
        self.max_equation_chars = max_equation_chars
        #: best program -> the line shown; the CLI passes ``evaluator.analysis.equation_text``
        #: (closed forms) so that the search side never imports the analysis
        self.equation = equation
        self._lock = threading.Lock()
        self._snap: RunStats | None = None
        self._equation: tuple[str | None, str] = (None, "–")
        self._reason: str | None = None
        self._live: Live | None = None
        self._handlers: list[tuple[logging.StreamHandler, Any]] = []

    # -- Progress interface ---------------------------------------------------------------
    def start(self, stats: RunStats) -> None:
        self._take(stats)
        self._live = Live(get_renderable=self.render, console=self.console,
                          refresh_per_second=self.refresh_per_second, transient=False,
                          redirect_stdout=True, redirect_stderr=True)
        self._live.start()
        self._redirect_logging()

    def update(self, stats: RunStats) -> None:
        self._take(stats)

    def finish(self, stats: RunStats, reason: str) -> None:
        self._take(stats)
        self._reason = reason
        if self._live is not None:
            try:
                self._live.refresh()
                self._live.stop()
            finally:
                self._restore_logging()
                self._live = None
        else:
            self.console.print(self.render())

    # -- state ----------------------------------------------------------------------------
    def _take(self, stats: RunStats) -> None:
        snap = copy.copy(stats)
        snap.failures = dict(stats.failures)
        if stats.best_id != self._equation[0]:
            # the equation quotes the program: no escape sequence of it may reach the terminal
            text = terminal_safe(self.equation(stats.best_program, stats.best_params), oneline=True)
            if len(text) > self.max_equation_chars:
                text = text[: self.max_equation_chars - 1] + "…"
            self._equation = (stats.best_id, text)
        with self._lock:
            self._snap = snap

    def _redirect_logging(self) -> None:
        """Point stderr log handlers at rich's proxy so lines print above the view."""
        proxy = sys.stderr
        if proxy is sys.__stderr__:
            return
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stderr__:
                self._handlers.append((handler, handler.setStream(proxy)))

    def _restore_logging(self) -> None:
        for handler, stream in self._handlers:
            handler.setStream(stream)
        self._handlers.clear()

    # -- drawing --------------------------------------------------------------------------
    def render(self) -> Panel:
        with self._lock:
            s = self._snap
        if s is None:
            return Panel("starting…")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan", no_wrap=True)
        grid.add_column(overflow="fold")
        rate = s.rate
        done = f"{s.samples}/{s.budget}" if s.budget else str(s.samples)
        bar = ProgressBar(total=max(s.budget, 1), completed=min(s.samples, s.budget or 1),
                          width=30)
        pct = f"{100 * s.samples / s.budget:.0f}%" if s.budget else ""
        row = Table.grid(padding=(0, 2))
        row.add_row(bar, Text(f"{done}  {pct}  {rate:.2f}/s"))
        grid.add_row("samples", row)
        valid = Text(f"{s.valid} ({100 * s.valid_rate:.1f}%)")
        if s.duplicates:
            valid.append(f"  duplicates {s.duplicates}", style="dim")
        if s.failures:
            top = sorted(s.failures.items(), key=lambda kv: -kv[1])[:3]
            valid.append("  failures: " + ", ".join(f"{terminal_safe(k, oneline=True)} {v}" for k, v in top),
                         style="yellow")
        grid.add_row("valid", valid)
        if s.best_score is not None:
            grid.add_row("best score", Text(f"{s.best_score:.6g}  (−MSE train, sample "
                                            f"{s.best_id})", style="bold green"))
            grid.add_row("equation", Text(self._equation[1], style="green"))
        else:
            grid.add_row("best score", Text("no valid program yet", style="dim"))
        tokens = s.prompt_tokens + s.completion_tokens
        tok = Text(f"{tokens:,} ({s.prompt_tokens:,} prompt, {s.completion_tokens:,} "
                   f"completion)  cost ${s.cost:.4f}")
        if s.max_cost is not None:
            tok.append(f" of ${s.max_cost:.2f}")
        if s.cached_calls:
            tok.append(f"  cached {s.cached_calls}", style="dim")
        grid.add_row("tokens", tok)
        grid.add_row("time", Text(self._time_line(s)))
        status = s.llm_status() if s.llm_status is not None and self._reason is None else None
        if status:
            grid.add_row("model", Text(terminal_safe(status, oneline=True), style="yellow"))
        title = f"eqforge · {self.title or s.problem or 'run'}"
        if s.strategy:
            title += f" · strategy {s.strategy}"
        subtitle = f"stopped: {self._reason}" if self._reason else None
        return Panel(grid, title=terminal_safe(title, oneline=True), subtitle=subtitle, border_style="blue",
                     expand=True)

    def _time_line(self, s: RunStats) -> str:
        elapsed = s.elapsed
        parts = [f"elapsed {_duration(elapsed)}"]
        left = None
        if s.budget and s.rate > 0 and self._reason is None:
            left = (s.budget - s.samples) / s.rate
        if s.max_seconds is not None:
            by_time = max(0.0, s.max_seconds - elapsed)
            parts.append(f"time budget {_duration(s.max_seconds)}")
            left = by_time if left is None else min(left, by_time)
        if self._reason is None:
            parts.append(f"remaining ~{_duration(left)}" if left is not None else
                         "remaining –")
        return "   ".join(parts)


def demo(seconds: float = 3.0) -> None:  # pragma: no cover - manual check: python -m
    stats = RunStats(budget=50, problem="demo")
    view = LiveProgress()
    view.start(stats)
    for i in range(50):
        time.sleep(seconds / 50)
        stats.samples += 1
        stats.session_samples += 1
        stats.valid += i % 3 != 0
        if i % 3 == 0:
            stats.failures["syntax"] = stats.failures.get("syntax", 0) + 1
        if i == 10:
            stats.best_score, stats.best_id = -1e-3, "s10"
            stats.best_program = "def equation(x, v, params):\n    return params[0]*np.sin(x)\n"
            stats.best_params = [0.8]
        view.update(stats)
    view.finish(stats, "budget")


if __name__ == "__main__":  # pragma: no cover
    demo()
