"""``summary.json``'s ``llm.responses`` / ``llm.cache_hits`` count the whole run: a resumed
run adds the answers of its earlier sessions (counted from the records on disk, which a
session killed with SIGKILL leaves too), not only the last session's."""

from __future__ import annotations

import json
from pathlib import Path

from eqforge.cli import main


def _responses(path: Path, n: int = 12) -> Path:
    path.write_text("".join(json.dumps({"response": f"    return params[0] * x + params[1] * v ** {k}\n"}) + "\n"
                            for k in range(1, n + 1)))
    return path


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_resumed_run_counts_every_session(tmp_path: Path, llmsr_data: Path) -> None:
    resp = _responses(tmp_path / "r.jsonl")
    run = tmp_path / "run"
    assert main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", f"replay:{resp}",
                 "--samples", "3", "--samples-per-prompt", "1", "--out", str(run), "--workers", "1",
                 "--quiet"]) == 0
    assert _summary(run)["llm"]["responses"] == 3
    # the first session's answers as a response cache would have served them
    lines = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    for r in lines:
        r["cached"] = r.get("source") == "llm"
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run / "summary.json").unlink()  # as after SIGKILL: the records are all there is

    assert main(["run", "--resume", str(run), "--samples", "7", "--quiet"]) == 0
    llm = _summary(run)["llm"]
    assert _summary(run)["samples"] == 7
    assert llm["responses"] == 7 and llm["cache_hits"] == 3, llm
    assert llm["earlier_sessions"] == {"responses": 3, "cache_hits": 3}


def test_interrupted_resumed_session_counts_every_session(tmp_path: Path, llmsr_data: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    resp = _responses(tmp_path / "r.jsonl", n=400)
    run = tmp_path / "run"
    common = ["--data", str(llmsr_data / "oscillator1"), "--samples-per-prompt", "1", "--workers", "1"]
    assert main(["run", "oscillator1", "--llm", f"replay:{resp}", "--samples", "3", "--out", str(run),
                 "--quiet", *common]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "eqforge", "run", "--resume", str(run), "--samples", "400",
                             "--quiet"], env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while (run / "samples.jsonl").read_text().count("\n") < 4 + 5:  # the seed, 3 earlier, 5 now
            assert proc.poll() is None and time.monotonic() < deadline, "the resumed session ended early"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    summary = _summary(run)
    llm_records = sum(json.loads(x).get("source") == "llm" for x in (run / "samples.jsonl").read_text().splitlines())
    assert summary["stopped"] == "interrupted" and summary["samples"] == llm_records
    llm = summary["llm"]
    assert llm["earlier_sessions"] == {"responses": 3, "cache_hits": 0}
    # an answer received as Ctrl-C came may have no record yet: at least every recorded one
    assert llm["responses"] >= llm_records > 3, llm
