"""The rich live view, run into a captured terminal (issue #6)."""

from __future__ import annotations

import io
import logging
import re

from rich.console import Console

from eqforge.agents.live import LiveProgress
from eqforge.agents.progress import RunStats
from eqforge.evaluator.analysis import equation_text

PROGRAM = ("def equation(x, v, params):\n    return params[0]*np.sin(x) + params[1]*x*np.cos(x)"
           " + params[2]*x**3 + params[3]*v**3 + params[4]*x*v\n")
PARAMS = [0.8000000001, -1.0, -0.2, -0.5, -0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _console(buf: io.StringIO) -> Console:
    return Console(file=buf, force_terminal=True, width=110, color_system="truecolor",
                   legacy_windows=False)


def _feed(view: LiveProgress, stats: RunStats) -> None:
    view.start(stats)
    for i in range(1, 25):
        stats.samples += 1
        stats.session_samples += 1
        stats.prompt_tokens += 300
        stats.completion_tokens += 120
        stats.cost += 0.0005
        if i % 4 == 0:
            stats.failures["exception:NameError"] = stats.failures.get("exception:NameError",
                                                                       0) + 1
        else:
            stats.valid += 1
        if i == 6:
            stats.best_score, stats.best_id = -1.8e-33, "s6"
            stats.best_program, stats.best_params = PROGRAM, PARAMS
        view.update(stats)


def test_live_view_into_a_captured_terminal() -> None:
    buf = io.StringIO()
    view = LiveProgress(console=_console(buf), refresh_per_second=20, equation=equation_text)
    stats = RunStats(budget=24, max_seconds=600.0, max_cost=1.0, problem="oscillator1")
    _feed(view, stats)
    view.finish(stats, "budget")
    raw = buf.getvalue()
    assert "\x1b[" in raw  # drawn as a terminal view (cursor movement, colours)
    text = ANSI.sub("", raw)
    final = text[text.rfind("eqforge · oscillator1"):]  # the last frame
    assert "24/24" in final and "100%" in final
    assert "/s" in final
    assert "18 (75.0%)" in final and "exception:NameError 6" in final
    assert "-1.8e-33" in final and "sample s6" in final
    # the fitted closed form, not the program text
    assert "-0.5*v**3 - 0.5*v*x - 0.2*x**3 - x*cos(x) + 0.8*sin(x)" in final
    assert "7,200" in final and "$0.0120 of $1.00" in final
    assert "elapsed" in final and "time budget 10:00" in final
    assert "stopped: budget" in final


def test_live_view_before_any_valid_program_and_log_lines() -> None:
    buf = io.StringIO()
    view = LiveProgress(console=_console(buf))
    stats = RunStats(budget=10)
    view.start(stats)
    logging.getLogger("eqforge.test").warning("a log line during the run")
    stats.samples = 3
    stats.session_samples = 3
    stats.failures = {"parse:syntax": 3}
    view.update(stats)
    view.finish(stats, "interrupted")
    text = ANSI.sub("", buf.getvalue())
    assert "no valid program yet" in text
    assert "parse:syntax 3" in text
    assert "stopped: interrupted" in text


def test_equation_text_falls_back_to_the_return_line() -> None:
    loop = ("def equation(x, v, params):\n    out = 0\n    for i in range(3):\n"
            "        out = out + params[i] * x\n    return out * v\n")
    assert equation_text(loop, [1.0, 2.0, 3.0]) == "out * v"
    assert equation_text(None, None) == "–"
    assert equation_text(PROGRAM, None).startswith("c0*sin(x)")
