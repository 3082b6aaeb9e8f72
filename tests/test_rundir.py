"""The run directory's one owner: typed records, torn-line repair, one RunStats, the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eqforge.cli import main
from eqforge.errors import EqforgeError
from eqforge.evaluator.evaluate import EvalResult
from eqforge.evaluator.rundir import RunBusy, RunDir, RunStats, SampleRecord

RESPONSES = Path(__file__).parent / "data" / "oscillator1_responses.jsonl"

LINE = {"index": 1, "id": "s1", "source": "llm", "program": "def equation(x, params):\n    return x\n",
        "ok": True, "error": None, "detail": "", "score": -0.5, "params": [1.0], "n_params": 1,
        "nmse": {"train": 0.1}, "metrics": {}, "eval_seconds": 0.25, "prompt_tokens": 7,
        "finish_reason": "stop"}


def test_a_record_holds_its_eval_result_and_writes_the_flat_line():
    rec = SampleRecord.model_validate(LINE)
    assert isinstance(rec.result, EvalResult) and rec.result.seconds == 0.25
    assert rec.ok and rec.score == -0.5 and rec.params == [1.0] and rec.eval_seconds == 0.25
    back = rec.to_json()
    assert {k: back[k] for k in LINE} == LINE
    again = SampleRecord(index=2, id="s2", result=EvalResult.failure("syntax", "bad"))
    assert again.to_json()["error"] == "syntax" and not again.ok


def test_torn_last_line_is_repaired_by_the_writer_only(tmp_path):
    run = tmp_path / "run"
    with RunDir.writer(run) as w:
        w.write_sample(SampleRecord.model_validate(LINE))
    samples = run / "samples.jsonl"
    whole = samples.read_bytes()
    samples.write_bytes(whole + b'{"index": 2, "id": "s2", "ok": tr')  # killed mid-write
    assert [r.index for r in RunDir(run).read_samples()] == [1]
    assert samples.read_bytes().endswith(b'"ok": tr')  # a reader never truncates
    with RunDir.writer(run) as w:
        assert samples.read_bytes() == whole
        w.write_sample(SampleRecord.model_validate({**LINE, "index": 2, "id": "s2"}))
    assert [r.index for r in RunDir(run).read_samples()] == [1, 2]
    samples.write_bytes(b"not json\n" + whole)
    with pytest.raises(EqforgeError, match="line 1 is corrupt JSON"):
        RunDir(run).read_samples()
    assert [r.index for r in RunDir(run).read_samples(strict=False)] == [1]


def _holder(run: Path) -> subprocess.Popen:
    code = ("import sys, time; from pathlib import Path; from eqforge.evaluator.rundir import RunDir; "
            "RunDir(Path(sys.argv[1]), write=True); print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holder_frees_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"run": {"problem": "oscillator1"}, "config": {}}))
    proc = _holder(run)
    try:
        with pytest.raises(RunBusy, match=f"pid {proc.pid}"):
            RunDir(run, write=True)
        assert main(["run", "--resume", str(run), "--quiet"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"pid {proc.pid}" in err[0] and "is writing this run" in err[0]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with RunDir.writer(run) as w:  # the kernel released the dead holder's lock
        assert w.writing
    with RunDir.writer(run), RunDir.writer(run):  # re-entrant within one process
        pass


def test_one_run_stats_for_the_loop_the_summary_and_the_report(tmp_path, llmsr_data):
    out = tmp_path / "run"
    assert main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", f"replay:{RESPONSES}",
                 "--samples", "12", "--out", str(out), "--workers", "1", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    counted = RunStats.from_records(RunDir(out).read_samples()).counts()
    assert {k: summary[k] for k in counted} == counted
    with RunDir.writer(out) as w:  # the finished run released its lock
        assert w.writing
