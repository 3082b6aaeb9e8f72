"""Running a resolved sweep into a sweep directory, resumably.

Layout of ``DIR``::

    sweep.toml      the resolved sweep file (every problem spelled out; re-runnable)
    plan.jsonl      one line per planned run (cell, seed, run directory)
    versions.json   package versions of the session that last ran the sweep
    cache/          the response cache every run reads and writes
    runs/<id>/      one run directory per run (eqforge run's records, plus plan.json)
    results.csv, results.md, curves*.png, report.html

Re-running on the same ``DIR`` skips finished runs (they are only read), resumes the
interrupted ones from their records and starts the rest; a run directory whose plan does
not match the sweep file is a one-line error before anything starts. Runs execute in
parallel local processes (``worker``), or as Ray tasks (``eqforge.sweep.ray``); both feed
the same loop here, which keeps the progress view and writes the tables at the end.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from eqforge.errors import ConfigError, EqforgeError
from eqforge.sweep.spec import PlannedRun, ResolvedSweep
from eqforge.sweep.worker import BUSY, OK, PLAN

log = logging.getLogger("eqforge.sweep")

PLAN_FILE = "plan.jsonl"
WORKER_LOG = "sweep-worker.log"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def identity(plan: dict[str, Any]) -> dict[str, Any]:
    """What a run computes (not how it runs: sandbox workers, where the cache lives)."""
    data = json.loads(json.dumps(plan))
    data.get("config", {}).get("evaluator", {}).pop("workers", None)
    data.get("config", {}).get("llm", {}).pop("cache_dir", None)
    return data


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    return f"{path}: {a!r} -> {b!r}"


@dataclass
class SweepDir:
    """A sweep directory and the plan of its runs."""

    path: Path

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.path / "cache"

    def run_dir(self, run: PlannedRun) -> Path:
        return self.runs_dir / run.run_id

    def plan_of(self, run: PlannedRun, *, workers: int | None = None) -> dict[str, Any]:
        plan = run.to_json()
        plan["config"] = {**plan["config"], "llm": {**plan["config"]["llm"],
                                                    "cache_dir": str(self.cache_dir.resolve())}}
        if workers:
            plan["config"] = {**plan["config"],
                              "evaluator": {**plan["config"]["evaluator"], "workers": workers}}
        plan["run_id"] = run.run_id
        return plan

    def prepare(self, resolved: ResolvedSweep) -> None:
        """Check existing run directories against the plan, then write the sweep's files."""
        for run in resolved.runs:
            stored = self.run_dir(run) / PLAN
            if stored.is_file():
                old = identity(json.loads(stored.read_text(encoding="utf-8")))
                new = identity(self.plan_of(run))
                old.pop("run_id", None)
                new.pop("run_id", None)
                if old != new:
                    raise ConfigError(
                        f"{stored.parent}: this run was made with other settings "
                        f"({_first_difference(old, new)}); use another --out for a changed sweep")
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(exist_ok=True)
        header = f"# resolved from {resolved.source}; re-run with: eqforge sweep {self.path}\n"
        own = self.path / "sweep.toml"
        if own.is_file() and Path(resolved.source).resolve() == own.resolve():  # continued in place
            first = own.read_text(encoding="utf-8").partition("\n")[0]
            header = first + "\n" if first.startswith("# resolved from") else header
        _write(own, header + resolved.file.to_toml())
        _write(self.path / PLAN_FILE, "".join(
            json.dumps({"run_id": r.run_id, "problem": r.problem, "strategy": r.strategy,
                        "llm": r.llm, "seed": r.seed}) + "\n" for r in resolved.runs))
        _write(self.path / "versions.json", json.dumps(versions(), indent=2))

    def planned(self) -> list[dict[str, Any]]:
        """The plan lines, with each run's full plan where the run has started."""
        path = self.path / PLAN_FILE
        if not path.is_file():
            raise EqforgeError(f"{self.path}: no {PLAN_FILE} here; is this a sweep directory?", exit_code=2)
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                stored = self.runs_dir / entry["run_id"] / PLAN
                if stored.is_file():
                    entry = {**json.loads(stored.read_text(encoding="utf-8")), **entry}
                out.append(entry)
        return out


def versions() -> dict[str, str]:
    from importlib import metadata

    from eqforge.evaluator.rundir import package_versions

    out = package_versions()
    for name in ("rich", "matplotlib", "ray"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# -- executors ---------------------------------------------------------------------------


class Executor(Protocol):
    capacity: int

    def start(self, run_dir: Path, workers: int) -> None: ...

    def poll(self, timeout: float) -> list[tuple[Path, int, str]]:
        """Runs that ended since the last call: (run directory, exit status, message)."""

    def stop(self) -> None: ...


class LocalExecutor:
    """Each run in its own ``python -m eqforge.sweep.worker`` process."""

    def __init__(self, parallel: int) -> None:
        self.capacity = max(1, parallel)
        self.procs: dict[Path, subprocess.Popen] = {}

    def start(self, run_dir: Path, workers: int) -> None:
        logfile = (run_dir / WORKER_LOG).open("ab")
        try:
            self.procs[run_dir] = subprocess.Popen(
                [sys.executable, "-m", "eqforge.sweep.worker", str(run_dir), "--parent", str(os.getpid()),
                 "--workers", str(workers)],
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, close_fds=True)
        finally:
            logfile.close()

    def poll(self, timeout: float) -> list[tuple[Path, int, str]]:
        deadline = time.monotonic() + timeout
        while True:
            done = [(d, p.returncode) for d, p in self.procs.items() if p.poll() is not None]
            if done or time.monotonic() >= deadline:
                break
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        out = []
        for d, rc in done:
            del self.procs[d]
            out.append((d, rc, "" if rc == OK else _last_line(d / WORKER_LOG)))
        return out

    def stop(self) -> None:
        import signal

        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


# -- the loop ----------------------------------------------------------------------------


@dataclass
class SweepState:
    """What the progress view shows."""

    total: int
    done: int = 0
    failed: int = 0
    busy: int = 0
    skipped: int = 0  # finished before this session
    running: list[Path] = field(default_factory=list)
    left: int = 0
    start: float = field(default_factory=time.monotonic)
    finished_this_session: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def eta(self) -> float | None:
        if not self.finished_this_session:
            return None
        per_run = self.elapsed / self.finished_this_session
        return per_run * (self.left + len(self.running) * 0.5)


def run_sweep(resolved: ResolvedSweep, out: Path, executor: Executor, *, workers: int,
              progress: Any = None) -> SweepState:
    from eqforge.sweep.progress import PlainSweepProgress

    progress = progress or PlainSweepProgress()
    sweep_dir = SweepDir(out)
    sweep_dir.prepare(resolved)
    from eqforge.sweep.results import read_run

    state = SweepState(total=len(resolved.runs))
    todo: list[PlannedRun] = []
    for run in resolved.runs:
        d = sweep_dir.run_dir(run)
        plan = sweep_dir.plan_of(run, workers=workers)
        if (d / PLAN).is_file() and read_run(plan, d, curve=False).state == "done":
            state.skipped += 1
            state.done += 1
        else:
            todo.append(run)
    state.left = len(todo)
    progress.start(state)
    by_dir: dict[Path, PlannedRun] = {}
    try:
        while todo or state.running:
            while todo and len(state.running) < executor.capacity:
                run = todo.pop(0)
                d = sweep_dir.run_dir(run)
                d.mkdir(parents=True, exist_ok=True)
                if not (d / PLAN).is_file():
                    _write(d / PLAN, json.dumps(sweep_dir.plan_of(run, workers=workers), indent=2))
                executor.start(d, workers)
                by_dir[d] = run
                state.running.append(d)
                state.left = len(todo)
                progress.started(state, d)
            for d, rc, message in executor.poll(0.5):
                state.running.remove(d)
                state.finished_this_session += 1
                run = by_dir[d]
                plan = json.loads((d / PLAN).read_text(encoding="utf-8"))
                if rc == BUSY:
                    state.busy += 1
                    state.failures.append(f"{d.name}: busy in another process")
                elif rc == OK and read_run(plan, d, curve=False).state == "done":
                    state.done += 1
                else:
                    state.failed += 1
                    state.failures.append(f"{d.name}: {message or f'exit status {rc}'}")
                progress.finished(state, d, rc == OK)
            progress.update(state)
    except BaseException:
        executor.stop()
        progress.stop(state, interrupted=True)
        raise
    progress.stop(state, interrupted=False)
    return state
