"""Progress for library users: a live cell output in Jupyter, rich's view in a terminal.

``progress_for`` picks what a script or notebook user expects without configuring
logging: nothing with ``quiet``; in a Jupyter kernel an HTML block that updates in place
(through IPython's display handles, which need no widget extension); in a terminal the
same live panel as ``eqforge run``; otherwise (output piped to a file) a log line every
few seconds.
"""

from __future__ import annotations

import html
import sys
import threading
import time
from typing import Any

from eqforge.agents.progress import Progress, QuietProgress, RunStats


def in_notebook() -> bool:
    """True inside a Jupyter (ipykernel) shell."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a half-initialised IPython is no notebook
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def progress_for(quiet: bool) -> Progress:
    if quiet:
        return QuietProgress()
    if in_notebook():
        return NotebookProgress()
    if sys.stderr.isatty():
        try:
            from eqforge.agents.live import LiveProgress

            return LiveProgress()
        except ImportError:
            pass
    return Progress()


class NotebookProgress(Progress):
    """An HTML status block in the running cell, redrawn at most ``per_second`` times."""

    def __init__(self, per_second: float = 2.0, display: Any = None) -> None:
        super().__init__()
        self.interval = 1.0 / per_second
        self._display = display  # for tests: a callable(html) -> handle with .update(html)
        self._handle: Any = None
        self._last = 0.0
        self._lock = threading.Lock()

    def _show(self, text: str) -> None:
        if self._handle is None:
            if self._display is not None:
                self._handle = self._display(text)
                return
            from IPython.display import HTML, display

            self._handle = display(HTML(text), display_id=True)
            return
        if self._display is not None:
            self._handle.update(text)
        else:
            from IPython.display import HTML

            self._handle.update(HTML(text))

    def start(self, stats: RunStats) -> None:
        self._show(render(stats, None))

    def update(self, stats: RunStats) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                return
            self._last = now
        self._show(render(stats, None))

    def finish(self, stats: RunStats, reason: str) -> None:
        self._show(render(stats, reason))


def render(s: RunStats, reason: str | None) -> str:
    """The status block: samples with a bar, valid share, best score and law, time."""
    from eqforge.evaluator.analysis import equation_text

    e = html.escape
    done = f"{s.samples}/{s.budget}" if s.budget else str(s.samples)
    bar = (f"<progress value='{min(s.samples, s.budget)}' max='{s.budget}' "
           f"style='width:14em'></progress>" if s.budget else "")
    best = (f"{s.best_score:.6g} (−MSE train, sample {e(str(s.best_id))})"
            if s.best_score is not None else "no valid program yet")
    law = e(equation_text(s.best_program, s.best_params)) if s.best_score is not None else "–"
    state = f"stopped: {e(reason)}" if reason else "running"
    rows = [("samples", f"{bar} {done} · {s.rate:.2f}/s"),
            ("valid", f"{s.valid} ({100 * s.valid_rate:.1f}%)"),
            ("best score", e(best)), ("equation", f"<code>{law}</code>"),
            ("cost", f"${s.cost:.4f}"), ("elapsed", f"{s.elapsed:.0f} s · {state}")]
    body = "".join(f"<tr><td style='text-align:left'><b>{k}</b></td>"
                   f"<td style='text-align:left'>{v}</td></tr>" for k, v in rows)
    title = e(f"eqforge · {s.problem or 'run'}")
    return f"<div><b>{title}</b><table>{body}</table></div>"
