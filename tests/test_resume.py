"""A run killed mid-way (SIGKILL or Ctrl-C) resumes from its records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _responses(path: Path, n: int = 120) -> Path:
    lines = []
    for k in range(1, n + 1):
        body = f"    return params[0] * x + params[1] * v ** 3 + params[2] * np.sin({k} * x) " \
               f"+ params[3] * x ** {1 + k % 4}\n"
        lines.append(json.dumps({"response": body}))
    # the true law, late in the file
    lines.insert(n // 2, json.dumps({"response": (
        "    return params[0]*np.sin(x) + params[1]*x*np.cos(x) + params[2]*x**3"
        " + params[3]*v**3 + params[4]*x*v\n")}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "eqforge", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_samples(samples: Path, count: int, proc: subprocess.Popen, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if samples.exists() and samples.read_text().count("\n") >= count:
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended early: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.05)
    pytest.fail("run did not reach the kill point in time")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes(tmp_path: Path, llmsr_data: Path, sig: int):
    resp = _responses(tmp_path / "resp.jsonl")
    run = tmp_path / "run"
    budget = 100
    args = ["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"),
            "--llm", f"replay:{resp}", "--samples", str(budget), "--out", str(run),
            "--workers", "1", "--quiet"]
    proc = _start(args, tmp_path)
    _wait_for_samples(run / "samples.jsonl", 20, proc)
    workers = _children(proc.pid)
    assert workers, "the run should have sandbox workers"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    # its sandbox workers notice the parent is gone and exit
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        summary = json.loads((run / "summary.json").read_text())
        assert summary["stopped"] == "interrupted"
    before = _rows(run)
    done = sum(r["source"] == "llm" for r in before)
    assert 0 < done < budget

    proc = _start(["run", "--resume", str(run), "--quiet"], tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    after = _rows(run)
    assert [r["index"] for r in after] == list(range(len(after)))
    assert sum(r["source"] == "llm" for r in after) == budget
    assert sum(r["source"] == "seed" for r in after) == 1
    assert after[: len(before)] == before  # nothing rewritten
    # the replay continues where it stopped: responses are consumed in file order
    resp_lines = [json.loads(x)["response"] for x in resp.read_text().splitlines()]
    llm = [r for r in after if r["source"] == "llm"]
    assert sorted(r["response"] for r in llm) == sorted(resp_lines[:budget])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["samples"] == budget
    assert summary["best"]["nmse"]["test_ood"] < 1e-6


def test_resume_needs_a_run_dir(tmp_path: Path):
    from eqforge.cli import main

    assert main(["run", "--resume", str(tmp_path / "nope")]) != 0
