"""Sweep output reaches a terminal through ``textsafe``: a control sequence from a model or a
program (here OSC 52, which writes the user's clipboard) is shown inert, never emitted; the
HTML report stays escaped."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from eqforge.cli import main
from eqforge.sweep import command, progress, report
from eqforge.sweep.judge import Verdict

OSC52 = "\x1b]52;c;cm0gLXJmIH4=\x07"
PROGRAM = ("```python\ndef equation_v1(x, v, params):\n"
           f"    \"\"\"{OSC52}\"\"\"\n"
           f"    note = '{OSC52}'  # {OSC52}\n"
           "    return params[0] * x + params[1] * v\n```")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("osc")
    replay = base / "r.jsonl"
    replay.write_text(json.dumps({"response": PROGRAM}) + "\n")
    f = base / "sweep.toml"
    f.write_text(f"""
[sweep]
samples = 2
seeds = [0]
problems = ["oscillator1"]
strategies = ["llmsr"]
llms = ["replay:{replay}"]
[overrides]
evaluator = {{ timeout = 20, workers = 1 }}
""")
    out = base / "out"
    assert main(["sweep", str(f), "--out", str(out), "--quiet"]) == 0
    return out


def test_sweep_with_a_hostile_best_program_prints_nothing_raw(sweep_dir: Path, capsys) -> None:  # noqa: ANN001
    (run,) = (sweep_dir / "runs").iterdir()
    records = [json.loads(x) for x in (run / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert any(OSC52 in (r.get("program") or "") for r in records)  # the hostile program ran
    assert main(["sweep", str(sweep_dir), "--table"]) == 0
    got = capsys.readouterr()
    assert "\x1b" not in got.out + got.err and "oscillator1" in got.out


def test_printed_table_is_terminal_safe(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    md = tmp_path / "results.md"
    md.write_text(f"# Sweep results\n\n| a |\n|---|\n| {OSC52} |\n- note {OSC52}\n", encoding="utf-8")
    command._print_outputs({"markdown": md})
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]52" in out


def test_judge_disagreement_with_hostile_law_is_inert_and_html_escaped(
        sweep_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    verdict = Verdict("run-1", "oscillator1", "x + v", f"<b>x</b> {OSC52}", "recovered", False,
                      "prompt", "DIFFERENT")
    monkeypatch.setattr("eqforge.sweep.judge.judge_runs", lambda *a, **k: [verdict])
    paths = report.write_outputs(sweep_dir, judge="replay:none")
    page = paths["html"].read_text(encoding="utf-8")
    assert "\x1b" not in page and "\\x1b]52" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_progress_lines_are_inert(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    from rich.console import Console

    run = tmp_path / f"run-{OSC52}[bold]x"
    run.mkdir()
    state = SimpleNamespace(done=0, total=1, running=[run], left=0, failed=1, skipped=0,
                            elapsed=1.0, eta=None)
    with caplog.at_level(logging.INFO, logger="eqforge.sweep"):
        plain = progress.PlainSweepProgress()
        plain.started(state, run)
        plain.finished(state, run, False)
    assert caplog.messages and all("\x1b" not in m for m in caplog.messages)
    buf = io.StringIO()
    live = progress.LiveSweepProgress(console=Console(file=buf, width=200, color_system=None))
    live._state = state
    live.finished(state, run, False)
    live.console.print(live._render())
    text = buf.getvalue()
    assert "\x1b" not in text and "[bold]x" in text
