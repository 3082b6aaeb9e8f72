"""One run of a sweep, in its own process: ``python -m eqforge.sweep.worker RUN_DIR``.

The sweep writes ``RUN_DIR/plan.json`` (the run's ``RunSpec`` and ``Config``) and starts
this; it starts the run, or resumes it from its records when an earlier session was
interrupted (Ctrl-C, a crash, ``kill -9``), or does nothing when it already finished. The run
directory's own lock (``RUN_DIR/.lock``, ``evaluator.rundir``; the one ``eqforge run`` takes)
keeps two processes from writing one run at once: the second waits for the first, then finds
the run finished or resumes it. The process dies with the
sweep that started it (``PR_SET_PDEATHSIG``) and turns SIGTERM into Ctrl-C, so an ended
sweep leaves no orphan run writing on, and an interrupted run records why it stopped. The
same ``run_planned`` is what a Ray task runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from eqforge.errors import EqforgeError
from eqforge.evaluator.rundir import RunBusy, RunDir
from eqforge.evaluator.rundir import lock as rundir_lock
from eqforge.textsafe import install_log_sanitizer, terminal_safe

log = logging.getLogger("eqforge.sweep")

OK, FAILED, BUSY = 0, 1, 75
PLAN = "plan.json"


@contextlib.contextmanager
def run_lock(run_dir: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold the run's lock. Another holder is a run still ending (the process of a killed
    sweep finishing its summary) or another sweep of the same directory: wait for it, then
    look again — most often it has finished the run. ``wait=False`` raises ``RunBusy``."""
    try:
        rundir_lock.acquire(run_dir, reentrant=False)
    except RunBusy:
        if not wait:
            raise
        log.info("%s: another process holds this run; waiting for it", run_dir.name)
        rundir_lock.acquire(run_dir, wait=True, reentrant=False)
    try:
        yield
    finally:
        rundir_lock.release(run_dir)


def run_planned(run_dir: str | Path, *, workers: int | None = None) -> dict:
    """Start, resume or skip the planned run in ``run_dir``; returns its summary."""
    from eqforge.agents.progress import QuietProgress
    from eqforge.api import RunSpec, discover, resume
    from eqforge.config import Config
    from eqforge.sweep.results import read_run

    run_dir = Path(run_dir)
    plan = json.loads((run_dir / PLAN).read_text(encoding="utf-8"))
    with run_lock(run_dir):
        state = read_run(plan, run_dir, curve=False).state
        if state == "done":
            return RunDir(run_dir).read_summary() or {}
        if state == "partial" and RunDir(run_dir).has_samples():
            log.info("%s: resuming", run_dir.name)
            return resume(run_dir, progress=QuietProgress())
        config = Config.model_validate(plan["config"])
        if workers:
            config = config.with_overrides({"evaluator": {"workers": workers}})
        log.info("%s: starting", run_dir.name)
        return discover(RunSpec(**plan["spec"]), config, out=run_dir, progress=QuietProgress())


def _die_with_parent(parent: int) -> None:
    """Get SIGTERM when the sweep process ends, however it ends (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the sweep died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eqforge.sweep.worker")
    ap.add_argument("run_dir")
    ap.add_argument("--parent", type=int, help="pid of the sweep; this process ends with it")
    ap.add_argument("--workers", type=int, help="sandbox workers for a new run")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_sanitizer()  # a run's log quotes model text: inert on the sweep's terminal
    # SIGTERM (the sweep ending) becomes Ctrl-C: the loop records "interrupted" and closes
    # its sandbox pool instead of vanishing mid-write.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    if args.parent:
        _die_with_parent(args.parent)
    try:
        run_planned(args.run_dir, workers=args.workers)
    except RunBusy as exc:
        print(terminal_safe(f"eqforge: {exc}"), file=sys.stderr)
        return BUSY
    except EqforgeError as exc:
        print(terminal_safe(f"eqforge: error: {exc}"), file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print("eqforge: interrupted", file=sys.stderr)
        return 130
    return OK


if __name__ == "__main__":
    sys.exit(main())
