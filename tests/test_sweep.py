"""``eqforge sweep``: the sweep file, resumable execution, tables, plots and the HTML report.

Sweeps here are tiny (a few samples per run, the ``terms:`` and replay backends, one sandbox
worker per run): the machine running the tests is small and shared.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eqforge.cli import main
from eqforge.errors import ConfigError
from eqforge.sweep.results import CSV_COLUMNS, run_state
from eqforge.sweep.spec import expand_problem, load_sweep_file, parse_llm, resolve

RESPONSES = Path(__file__).parent / "data" / "oscillator1_responses.jsonl"


def write_sweep(path: Path, *, samples: int = 6, seeds=(0, 1), problems=("oscillator1",),
                strategies=("llmsr",), llms=("terms:",), extra: str = "") -> Path:
    def arr(xs) -> str:  # noqa: ANN001
        return "[" + ", ".join(json.dumps(x) for x in xs) + "]"

    path.write_text(f"""
[sweep]
samples = {samples}
seeds = {arr(seeds)}
problems = {arr(problems)}
strategies = {arr(strategies)}
llms = {arr(llms)}
[overrides]
evaluator = {{ timeout = 20, workers = 1 }}
{extra}
""")
    return path


# -- the sweep file ------------------------------------------------------------------------


@pytest.mark.parametrize("edit, message", [
    ({"extra": "[sweeep]\nx = 1"}, "sweeep: unknown key"),
    ({"problems": ("oscilator1",)}, "did you mean oscillator1"),
    ({"problems": ("nosuch-*",)}, "matches no built-in problem"),
    ({"strategies": ("llmsr", "residual")}, "unknown strategy 'residual'"),
    ({"llms": ("gpt4",)}, "unknown kind"),
    ({"llms": ("openai-compatible@http://127.0.0.1:9/v1",)}, "openai-compatible@URL#MODEL"),
    ({"extra": "database = { islandz = 2 }"}, "overrides.database.islandz: unknown key"),
    ({"extra": "nosection = { a = 1 }"}, "overrides.nosection: unknown Config section"),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path: Path, capsys, edit, message) -> None:  # noqa: ANN001
    f = write_sweep(tmp_path / "s.toml", **edit)
    out = tmp_path / "out"
    assert main(["sweep", str(f), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not out.exists()  # nothing started


def test_unknown_key_in_sweep_section(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('[sweep]\nsample = 3\nproblems = ["oscillator1"]\nllms = ["terms:"]\n')
    with pytest.raises(ConfigError, match=r"sweep.sample: unknown key; known: samples"):
        load_sweep_file(f)


def test_problem_entries_expand(tmp_path: Path) -> None:
    import numpy as np

    from eqforge.problems.spec import Problem

    X = np.random.default_rng(0).uniform(1, 2, (60, 2))
    assert expand_problem("feynman-I.12.[12]", tmp_path) == ["feynman-I.12.1", "feynman-I.12.2"]
    assert "oscillator2" in expand_problem("oscillator*", tmp_path)
    folder = tmp_path / "mine"
    for name in ("a", "b"):
        Problem.from_arrays(X, X[:, 0] * X[:, 1], names=["x", "z"], description="A toy law.").save(folder / name)
    assert expand_problem("mine", tmp_path) == [str((folder / "a").resolve()), str((folder / "b").resolve())]
    assert expand_problem("mine/a/", tmp_path) == [str((folder / "a").resolve())]
    assert parse_llm("openai-compatible@http://h:1/v1#Qwen/Q-7B", tmp_path) == (
        "openai-compatible", {"base_url": "http://h:1/v1", "model": "Qwen/Q-7B"})
    assert parse_llm("replay:r.jsonl", tmp_path)[0] == f"replay:{(tmp_path / 'r.jsonl').resolve()}"


def test_plan_is_the_cross_product(tmp_path: Path) -> None:
    f = write_sweep(tmp_path / "s.toml", problems=("feynman-I.12.*",), seeds=(0, 1, 2),
                    strategies=("llmsr", "scores"), llms=("terms:", f"replay:{RESPONSES}"))
    resolved = resolve(load_sweep_file(f), base=tmp_path)
    problems = resolved.file.sweep.problems
    assert len(problems) >= 5 and all(p.startswith("feynman-I.12.") for p in problems)
    assert len(resolved.runs) == len(problems) * 2 * 2 * 3
    assert {r.config["sampler"]["strategy"] for r in resolved.runs} == {"llmsr", "scores"}
    assert len({r.run_id for r in resolved.runs}) == len(resolved.runs)
    run = resolved.runs[0]
    assert run.config["run"]["samples"] == 6 and run.config["evaluator"]["timeout"] == 20
    assert [b["spec"] for b in run.config["llm"]["backends"]] == ["terms:"]


# -- running, resuming, tables -------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("sweep")
    f = write_sweep(base / "sweep.toml", samples=6, seeds=(0, 1),
                    problems=("oscillator1", "feynman-I.12.1"), llms=("terms:", f"replay:{RESPONSES}"))
    out = base / "out"
    assert main(["sweep", str(f), "--out", str(out), "--parallel", "2", "--quiet"]) == 0
    return out


def test_sweep_writes_runs_tables_plots(finished_sweep: Path) -> None:
    out = finished_sweep
    for name in ("sweep.toml", "plan.jsonl", "versions.json", "results.csv", "results.md",
                 "curves.png", "curves-problems.png", "report.html", "strategies.csv", "comparisons.csv",
                 "comparison.png"):
        assert (out / name).is_file(), name
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 8
    for d in runs:
        assert run_state(d, 6) == "done"
        summary = json.loads((d / "summary.json").read_text())
        assert summary["samples"] == 6
        assert json.loads((d / "config.json").read_text())["config"]["run"]["seed"] in (0, 1)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 4 and all(r["seeds"] == "2" and r["samples"] == "12" for r in rows)
    replay_osc = next(r for r in rows if r["problem"] == "oscillator1" and r["llm"].startswith("replay:"))
    assert float(replay_osc["best_nmse_test_ood_median"]) < 1e-6 and replay_osc["sa"] == "1.0"
    md = (out / "results.md").read_text()
    assert "## Strategies" in md and "median_rank" in md and "## Paired comparisons" in md
    assert replay_osc["sa_recovered"] == "2" and replay_osc["sa_unknown"] == "0"
    assert replay_osc["acc01_all_id"] == "1.0" and replay_osc["cache_hits"] in ("", "0")
    assert float(replay_osc["strategy_median_rank"]) >= 1 and replay_osc["strategy_tokens_per_solved"] != ""
    # the replayed oscillator answers cannot model I.12.1: the summary says it loses to terms:
    assert "does not beat the terms: baseline on 1 of 2 problems (feynman-I.12.1)" in md
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
    versions = json.loads((out / "versions.json").read_text())
    assert "numpy" in versions and "eqforge" in versions


def test_rerun_skips_finished_and_table_is_stable(finished_sweep: Path, capsys) -> None:  # noqa: ANN001
    out = finished_sweep
    before = {d.name: (d / "samples.jsonl").stat().st_mtime_ns for d in (out / "runs").iterdir()}
    table = (out / "results.csv").read_text()
    header = (out / "sweep.toml").read_text().splitlines()[0]
    assert main(["sweep", str(out), "--quiet"]) == 0  # continue in place from sweep.toml
    assert (out / "sweep.toml").read_text().splitlines()[0] == header  # still names the original file
    after = {d.name: (d / "samples.jsonl").stat().st_mtime_ns for d in (out / "runs").iterdir()}
    assert before == after
    assert (out / "results.csv").read_text() == table
    capsys.readouterr()
    assert main(["sweep", str(out), "--table"]) == 0
    assert "best_nmse_test_ood_median" in capsys.readouterr().out


def test_changed_sweep_is_refused(finished_sweep: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    f = write_sweep(tmp_path / "s.toml", samples=7, seeds=(0, 1),
                    problems=("oscillator1", "feynman-I.12.1"), llms=("terms:", f"replay:{RESPONSES}"))
    assert main(["sweep", str(f), "--out", str(finished_sweep), "--quiet"]) == 2
    assert "config.run.samples: 6 -> 7" in capsys.readouterr().err


def _wait(predicate, timeout: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def _llm_lines(d: Path) -> list[dict]:
    path = d / "samples.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    return [r for r in rows if r.get("source") == "llm"]


@pytest.mark.slow
def test_kill_9_and_resume(tmp_path: Path) -> None:
    """kill -9 the sweep while its second run is under way; the re-run leaves the first
    alone, resumes the second from its records and starts the third."""
    f = write_sweep(tmp_path / "s.toml", samples=30, seeds=(0, 1, 2))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "eqforge", "sweep", str(f), "--out", str(out), "--parallel", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        runs = lambda: sorted((out / "runs").glob("*")) if (out / "runs").exists() else []  # noqa: E731
        _wait(lambda: len(runs()) >= 2 and len(_llm_lines(runs()[1])) >= 3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    first, second = runs()[:2]
    _wait(lambda: not _locked(second), timeout=60)  # the orphaned worker ends with its sweep
    assert run_state(first, 30) == "done" and run_state(second, 30) == "partial"
    kept = (first / "samples.jsonl").read_bytes()
    partial = [r["index"] for r in _llm_lines(second)]
    assert main(["sweep", str(f), "--out", str(out), "--parallel", "1", "--quiet"]) == 0
    assert (first / "samples.jsonl").read_bytes() == kept
    resumed = _llm_lines(second)
    assert [r["index"] for r in resumed][:len(partial)] == partial
    assert len(resumed) == 30 and [r["index"] for r in resumed] == list(range(1, 31))
    assert all(run_state(d, 30) == "done" for d in runs()) and len(runs()) == 3


def _locked(run_dir: Path) -> bool:
    import fcntl

    with (run_dir / ".lock").open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def test_response_cache_rerun_makes_no_model_calls(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from openai_stub import OpenAIStub

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with OpenAIStub() as stub:
        f = write_sweep(tmp_path / "s.toml", samples=4, seeds=(0,),
                        llms=(f"openai-compatible@{stub.base_url}#stub-model",))
        first = tmp_path / "first"
        assert main(["sweep", str(f), "--out", str(first), "--quiet"]) == 0
        calls = stub.calls
        assert calls > 0 and any((first / "cache").rglob("*.json"))
        again = tmp_path / "again"
        assert main(["sweep", str(first), "--out", str(again), "--quiet"]) == 0
        assert stub.calls == calls  # every response came from the copied cache

    def table(d: Path) -> list[dict]:
        timing = {"wall_seconds", "cpu_seconds", "strategy_cpu_per_solved", "strategy_wall_per_solved",
                  "cache_hits"}  # how long it took, and how much the cache served, differ by design
        return [{k: v for k, v in r.items() if k not in timing}
                for r in csv.DictReader((d / "results.csv").open())]

    assert table(again) == table(first)


@pytest.mark.browser
def test_sweep_report_opens_in_chromium(finished_sweep: Path, tmp_path: Path) -> None:
    from test_report_browser import _browser, open_page

    binary = _browser()
    errors, png, info = open_page(binary, (finished_sweep / "report.html").resolve().as_uri(),
                                  tmp_path / "profile")
    assert errors == [], errors
    assert "eqforge sweep" in info["title"]
    assert info["images"] and all(w > 0 for _alt, w in info["images"]), info["images"]
    for text in ("Results", "Strategies", "best_nmse_test_ood_median", "oscillator1", "Sweep file",
                 "Paired comparisons", "Wilcoxon", "sa_recovered"):
        assert text in info["text"]
    assert png.startswith(b"\x89PNG")


def test_ray_missing_is_a_one_line_error(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    f = write_sweep(tmp_path / "s.toml", samples=2, seeds=(0,))
    assert main(["sweep", str(f), "--out", str(tmp_path / "out"), "--ray", "local"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs the ray package" in err and "eqforge[ray]" in err and "\n" not in err


def test_progress_views(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    import io
    import logging

    from rich.console import Console

    from eqforge.sweep.execute import SweepState
    from eqforge.sweep.progress import LiveSweepProgress, PlainSweepProgress

    run = tmp_path / "r1"
    run.mkdir()
    (run / "samples.jsonl").write_text('{"index": 0}\n{"index": 1}\n{"index": 2}\n')
    state = SweepState(total=5, done=2, skipped=1, running=[run], left=2, finished_this_session=1)
    buf = io.StringIO()
    live = LiveSweepProgress(Console(file=buf, force_terminal=True, width=120), samples=10)
    live.start(state)
    live.update(state)
    live.stop(state, interrupted=False)
    text = buf.getvalue()
    assert "2/5 runs" in text and "r1: 2/10 samples" in text and "1 running, 2 left" in text
    with caplog.at_level(logging.INFO, logger="eqforge.sweep"):
        plain = PlainSweepProgress()
        plain.finished(state, run, True)
    assert "runs 2/5 done, 1 running, 2 left" in caplog.text and "remaining ~" in caplog.text


def test_run_lock_waits_for_the_holder(tmp_path: Path) -> None:
    import threading

    from eqforge.sweep.worker import RunBusy, run_lock

    order = []
    with run_lock(tmp_path):
        with pytest.raises(RunBusy):
            with run_lock(tmp_path, wait=False):
                pass

        def second() -> None:
            with run_lock(tmp_path):
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
        order.append("first done")
    t.join(10)
    assert order == ["first done", "second"]


def test_lsrbench_entries_expand(tmp_path: Path) -> None:
    from test_problems import _make_lsrbench  # skips without h5py

    root = _make_lsrbench(tmp_path / "llm-srbench")
    everything = expand_problem(f"lsrbench:{root}", tmp_path)
    assert everything == [f"lsrbench:{root}#lsr_synth/matsci/MatSci0", f"lsrbench:{root}#lsr_transform/I.12.2_1"]
    assert expand_problem(f"lsrbench:{root}#MatSci*", tmp_path) == everything[:1]
    assert expand_problem("lsrbench:llm-srbench#lsr_transform/*", tmp_path) == everything[1:]  # relative path
    with pytest.raises(ConfigError, match="matches no LLM-SRBench problem"):
        expand_problem(f"lsrbench:{root}#chem*", tmp_path)
    f = write_sweep(tmp_path / "s.toml", problems=(f"lsrbench:{root}#*",), seeds=(0,))
    assert len(resolve(load_sweep_file(f), base=tmp_path).runs) == 2  # each one loaded before start


def test_llm_judge_records_verdicts_and_lists_disagreements(finished_sweep: Path, tmp_path: Path) -> None:
    """A replayed judge that calls every law different disagrees exactly where sympy recovered."""
    judge = tmp_path / "judge.jsonl"
    judge.write_text(json.dumps({"response": "They differ in form.\nDIFFERENT"}) + "\n")
    out = finished_sweep
    assert main(["sweep", str(out), "--table", "--judge", f"replay:{judge}"]) == 0
    records = [json.loads(x) for x in (out / "judge.jsonl").read_text().splitlines()]
    assert records and all(r["prompt"].startswith("You compare") and "DIFFERENT" in r["response"] for r in records)
    recovered = [r for r in records if r["sympy"] == "recovered"]
    assert recovered and all(r["judge"] is False for r in records)
    md = (out / "judge.md").read_text()
    # one line per run (two runs with the same law and truth share one recorded verdict)
    assert md.count("sympy says *recovered*, the judge says a different law") >= len(recovered)
    assert "sympy says *not recovered*" not in md
    assert "judge vs sympy on oscillator1" in (out / "report.html").read_text()
    lines = len(records)
    assert main(["sweep", str(out), "--table", "--judge", f"replay:{judge}"]) == 0
    assert len((out / "judge.jsonl").read_text().splitlines()) == lines  # verdicts on record are reused


def test_relative_replay_path_survives_continuing_from_the_directory(tmp_path: Path) -> None:
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "r.jsonl").write_text(RESPONSES.read_text())
    f = write_sweep(tmp_path / "study" / "sweep.toml", samples=1, seeds=(0,), llms=("replay:r.jsonl",))
    first = resolve(load_sweep_file(f), base=f.parent)
    stored = tmp_path / "elsewhere" / "sweep.toml"
    stored.parent.mkdir()
    stored.write_text(first.file.to_toml())
    again = resolve(load_sweep_file(stored), base=stored.parent)
    assert [r.run_id for r in again.runs] == [r.run_id for r in first.runs]
    assert again.runs[0].llm == f"replay:{(tmp_path / 'study' / 'r.jsonl').resolve()}"
