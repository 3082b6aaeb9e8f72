"""Output hygiene: model and program text is inert on the terminal, in reports and in records.

Unit checks of ``eqforge.textsafe`` and the markdown escaping (property-based, rendered by a
CommonMark parser), then one hostile agent run — OSC 52, CSI, bidi overrides, ``<script>``,
``<img onerror>``, a line of four backticks and a lone surrogate in the model's text and the
program's comment — printed by ``eqforge run`` and written by ``eqforge report`` in both
formats. ``tests/test_report_browser.py`` opens the same reports in headless Chromium.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from eqforge.cli import main
from eqforge.evaluator.report.escaping import md_cell, md_code, md_fence, md_text
from eqforge.textsafe import SanitizingFilter, encodable, is_terminal_safe, terminal_safe

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
OSC52 = "\x1b]52;c;cHduZWQ=\x07"
HOSTILE = ("\x1b[2J\x1b[31mred " + OSC52 + " \x1bP+q\x1b\\ \x9b31m \x9d0;title\x9c \u202eevil\u202c \r"
           "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\"> ````")
PIECES = ["\x1b", "[", "]", "52;c;", "\x07", "\x9b", "\x9d", "\u202e", "\u2066", "\r", "\n", "\t", "`", "```",
          "````", "<", ">", "<script>", "</script>", "<img src=x onerror=alert(1)>", "&", "|", "\ud800", "a", " "]
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=5)), max_size=40).map("".join)
MD = MarkdownIt("commonmark", {"html": True})


# -- terminal -----------------------------------------------------------------------------------
def test_escape_sequences_become_visible_text():
    out = terminal_safe("line one\n\tline two " + HOSTILE + " \ud800")
    assert is_terminal_safe(out) and "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b]52;c;cHduZWQ=\\x07" in out and "\\u202e" in out and "\\ud800" in out
    assert out.startswith("line one\n\tline two")  # newlines and tabs kept
    assert "\n" not in terminal_safe("a\nb", oneline=True)
    assert terminal_safe("plain ünïcode ∑ 🙂") == "plain ünïcode ∑ 🙂"


@FUZZ
@given(texts)
def test_terminal_safe_is_safe_idempotent_and_fast(text):
    t0 = time.perf_counter()
    out = terminal_safe(text * 50)
    assert time.perf_counter() - t0 < 0.5
    assert is_terminal_safe(out) and terminal_safe(out) == out
    out.encode("utf-8")  # no lone surrogate left


def test_log_lines_are_sanitised():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SanitizingFilter())
    log = logging.getLogger("eqforge.test_hygiene")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("guess %r failed: %s", HOSTILE, OSC52)
        try:
            raise ValueError(OSC52)
        except ValueError:
            log.exception("boom %s", "\x9b2J")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "guess" in text and "ValueError" in text
    assert is_terminal_safe(text.replace("\n", "").replace("\t", "")), repr(text)


# -- markdown -------------------------------------------------------------------------------------
def _tags(html: str) -> bool:
    return "<script" in html or "<img" in html


@FUZZ
@given(texts, texts)
def test_markdown_escaping_keeps_any_text_inert(code, prose):
    doc = "\n".join([md_text(prose), "", *md_fence(code, "python"), "", f"- {md_code(code)}", "",
                     "| a | b |", "|---|---|", f"| {md_cell(prose)} | {md_cell(code)} |", ""])
    html = MD.render(doc)
    assert not _tags(html), (doc, html)


def test_a_fence_outlasts_the_backticks_inside():
    lines = md_fence("x\n````\n<script>alert(1)</script>\n``````", "text")
    assert lines[0] == "`" * 7 + "text" and lines[-1] == "`" * 7
    html = MD.render("\n".join(lines))
    assert html.count("<pre>") == 1 and "&lt;script&gt;" in html


def test_encodable_round_trips_valid_text_and_escapes_surrogates():
    assert encodable("ok ∑ 🙂") == "ok ∑ 🙂"
    assert encodable("a\ud800b") == "a\\ud800b"


# -- a hostile run, end to end ------------------------------------------------------------------
PROGRAM = ("def equation(x, v, params):\n    # " + HOSTILE.replace("\r", "").replace("`", "") + "\n"
           "    return params[0] * np.sin(x) + params[1] * x * np.cos(x) + params[2] * x**3 + params[3] * v**3"
           " + params[4] * x * v\n")  # LLM-SR's oscillator1 law: the best program of the run
TURNS = [f"Looking at the data. {HOSTILE} \ud800 lone surrogate\nAction: describe_data",
         f"Submitting {OSC52}.\nAction: submit\n```python\n{PROGRAM}```"]
_CACHE: dict[str, tuple[Path, str]] = {}


def build_hostile_run(root: Path, data: Path, capsys: pytest.CaptureFixture[str] | None = None) -> tuple[Path, str]:
    """An agent run whose model text and program are hostile; both reports written (once per session)."""
    if "run" in _CACHE:
        return _CACHE["run"]
    replay = root / "hostile.jsonl"
    replay.write_text("".join(json.dumps({"response": t}) + "\n" for t in TURNS))
    out = root / "hostile"
    rc = main(["run", "oscillator1", "--data", str(data / "oscillator1"), "--llm", f"replay:{replay}",
               "--strategy", "agent", "--samples", "1", "--workers", "1", "--quiet", "--seed", "0",
               "--out", str(out)])
    printed = capsys.readouterr().out if capsys is not None else ""
    assert rc == 0
    assert main(["report", str(out)]) == 0
    assert main(["report", str(out), "--format", "markdown"]) == 0
    _CACHE["run"] = (out, printed)
    return out, printed


@pytest.fixture
def hostile_run(tmp_path_factory: pytest.TempPathFactory, llmsr_data: Path,
                capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    return build_hostile_run(tmp_path_factory.mktemp("hostile"), llmsr_data, capsys)


def test_run_prints_no_escape_sequences(hostile_run):
    out, printed = hostile_run
    assert "best program:" in printed and "cHduZWQ=" in printed  # the program is shown ...
    assert is_terminal_safe(printed.replace("\n", "").replace("\t", ""))  # ... inert
    turns = [json.loads(x) for x in (out / "turns.jsonl").read_text().splitlines()]
    assert any("\ud800" in (t.get("text") or "") for t in turns)  # the record keeps what was said


def test_reports_keep_hostile_text_inert(hostile_run):
    out, _ = hostile_run
    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "How the best equation was found" in md and "\\ud800" in md
    rendered = MD.render(md)
    assert "window.__pwned" in rendered and "<script" not in rendered and "<img src=x" not in rendered
    assert "<script" not in html and "<img src=x" not in html and "\\ud800" in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html


def test_live_view_shows_hostile_programs_inert():
    """The live panel (rich) prints the best program's equation, failure reasons and the model's status."""
    from rich.console import Console

    from eqforge.agents.live import LiveProgress
    from eqforge.agents.progress import RunStats

    buf = io.StringIO()
    view = LiveProgress(Console(file=buf, force_terminal=True, width=200, color_system="standard"))
    stats = RunStats(budget=4, problem="p" + OSC52, strategy="s")
    stats.samples, stats.valid = 2, 1
    stats.failures = {"parse:" + OSC52: 1}
    stats.best_score, stats.best_id = -1.0, "s1"
    stats.best_program = f"def equation(x, v, params):\n    return params[0] * x  # {HOSTILE}\n"
    stats.llm_status = lambda: "waiting " + OSC52
    view.finish(stats, "budget")  # not started: prints the panel once
    out = buf.getvalue()
    assert "params[0]" in out and "cHduZWQ=" in out
    assert "\x1b]52" not in out and "\x07" not in out and "\u202e" not in out and "\x9b" not in out
