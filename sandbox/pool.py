"""A pool of sandbox zygotes, used from the main process.

Each zygote is a long-lived ``eqforge.sandbox.worker`` process; one thread per zygote feeds
it batches of jobs from a shared queue and resolves their futures. A zygote that dies or
stops answering is killed, replaced, and its in-flight jobs are reported as ``crash`` —
the pool (and the run) goes on.

Every zygote (with its scorer, see ``worker``) gets its own cgroups (see ``cgroups``): a
small ``pids.max`` and a memory limit of their resident size plus the per-candidate budget.
Retiring a zygote kills everything in its cgroups. Nothing outlives the pool: ``close`` (or
the ``atexit`` hook, or the zygote noticing that its stdin pipe hung up when the main
process dies) ends the zygotes; scorers and candidate children die with their parent
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future
from typing import Any

from eqforge.sandbox import codec, protocol
from eqforge.sandbox.cgroups import CgroupSet

log = logging.getLogger(__name__)

# Environment variables a worker keeps; everything else (API keys, tokens) is dropped.
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_SINGLE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONNOUSERSITE": "1",
}
# A zygote and its scorer are one thread each; at most one candidate child runs at a time
# (and one confinement probe at start-up). Anything beyond this is a fork bomb.
PIDS_MAX = 8
# Memory a zygote may use beyond its resident size at start plus the candidate budget.
MEMORY_SLACK = 64 * 1024 * 1024

_live_pools: weakref.WeakSet[SandboxPool] = weakref.WeakSet()


@atexit.register
def _close_all_pools() -> None:
    """Last resort: a program that forgot ``close`` still leaves no process behind."""
    for pool in list(_live_pools):
        pool.close(wait=False)


def scrubbed_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
    env.update(_SINGLE_THREAD)
    env["HOME"] = home
    env["TMPDIR"] = home
    return env


def _unpack_scoring_result(reply: dict[str, Any]) -> dict[str, Any]:
    """Decode the scoring child's result, forwarded untouched by the scorer and the zygote.

    It comes from a process that ran untrusted code, so it is parsed by the safe codec
    here, and anything but a dict of predictions makes the job fail.
    """
    payload = reply.get("payload")
    if reply.get("status") != "ok" or not isinstance(payload, dict) or "scoring_result" not in payload:
        return reply
    raw = payload.pop("scoring_result")
    try:
        msg = codec.decode(raw) if isinstance(raw, bytes | bytearray) else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        msg = None
    inner = msg.get("payload") if isinstance(msg, dict) else None
    predictions = inner.get("predictions") if isinstance(inner, dict) else None
    if not isinstance(predictions, dict):
        return {**reply, "status": "fail", "reason": "crash", "detail": "malformed scoring result", "payload": None}
    payload["predictions"] = predictions
    return reply


class _Worker:
    """One zygote process and its private temporary directory."""

    def __init__(self, setup: dict[str, Any], index: int) -> None:
        self.index = index
        self.tmpdir = tempfile.mkdtemp(prefix=f"eqforge-w{index}-")
        harden = bool(setup.get("harden", True))
        self.cgroup = CgroupSet.create(f"w{index}", PIDS_MAX) if harden else None
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "eqforge.sandbox.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=self.tmpdir,
                env=scrubbed_env(self.tmpdir),
                start_new_session=True,
                close_fds=True,
            )
        except OSError:
            if self.cgroup is not None:
                self.cgroup.close()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        protocol.widen(self.rfd)
        if self.cgroup is not None:
            try:
                self.cgroup.add(self.proc.pid)
                setup = {**setup, "cgroup": {"procs": self.cgroup.procs_file, "oom": self.cgroup.oom_file}}
            except OSError as exc:
                log.warning("sandbox: could not enter the worker cgroup (%s); relying on rlimits", exc)
                self.cgroup.close()
                self.cgroup = None
        try:
            protocol.send(self.wfd, setup)
            hello = self._recv(timeout=120.0)
        except (OSError, EOFError):
            hello = None
        if not hello or not hello.get("ready"):
            err = (hello or {}).get("error", "no answer")
            self.kill()
            raise RuntimeError(f"sandbox worker failed to start: {err}")
        self.network = hello.get("network", "?")
        self.scorer_pid: int | None = hello.get("scorer")
        self.isolation: dict[str, Any] = dict(hello.get("isolation", {}))
        memory = setup.get("memory_bytes")
        if self.cgroup is not None and memory:
            try:
                self.cgroup.set_memory_limit(int(hello.get("rss", 0)) + int(memory) + MEMORY_SLACK)
                self.isolation["cgroup_memory"] = True
            except OSError as exc:
                log.warning("sandbox: could not set the cgroup memory limit (%s)", exc)

    def _recv(self, timeout: float) -> Any:
        ready, _, _ = select.select([self.rfd], [], [], timeout)
        if not ready:
            return None
        return protocol.recv(self.rfd)

    def run(self, jobs: list[dict[str, Any]], futures: list[Future]) -> bool:
        """Send a batch; resolve futures as results arrive. False if the zygote failed."""
        try:
            protocol.send(self.wfd, {"jobs": jobs})
        except OSError:
            return False
        for job, fut in zip(jobs, futures, strict=True):
            # The zygote enforces each job's timeout; allow it generous slack before
            # deciding the zygote itself is stuck.
            try:
                reply = self._recv(timeout=float(job.get("timeout", 30.0)) * 2 + 30.0)
            except (EOFError, OSError):
                reply = None
            if reply is None:
                return False
            fut.set_result(_unpack_scoring_result(reply))
        return True

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.cgroup is not None:
            self.cgroup.close()  # whatever the zygote started, wherever it went
            self.cgroup = None
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def stop(self) -> None:
        try:
            protocol.send(self.wfd, {"stop": True})
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class SandboxPool:
    """Run jobs (``{"id", "code", "entry", "options", "timeout"}``) in sandboxed workers.

    ``setup`` is sent once to every zygote: ``runner`` (``"module:function"`` called in the
    child as ``runner(fn, context, options)``), ``context`` (data the runner needs; its
    ``y_train`` is zeroed in scoring children), ``warmup``, ``allowed_imports`` and
    ``memory_bytes``. ``harden`` (default True) exists only for the overhead benchmark;
    ``address_space_limit`` (default True) can be turned off by tests that exercise the
    cgroup memory limit.
    """

    def __init__(self, setup: dict[str, Any], workers: int = 1, batch: int = 4) -> None:
        self.setup = setup
        self.batch = max(1, batch)
        self.size = max(1, workers)
        self._queue: queue.Queue[tuple[dict[str, Any], Future] | None] = queue.Queue()
        self._closed = False
        self.restarts = 0
        self._threads = []
        self._workers: list[_Worker | None] = [None] * self.size
        # Start the zygotes in parallel: each imports numpy/scipy once.
        starters = [threading.Thread(target=self._start, args=(i,)) for i in range(self.size)]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if any(w is None for w in self._workers):
            self.close()
            raise RuntimeError("could not start the sandbox workers")
        for i in range(self.size):
            t = threading.Thread(target=self._serve, args=(i,), daemon=True, name=f"sandbox-{i}")
            t.start()
            self._threads.append(t)
        _live_pools.add(self)

    def _start(self, i: int) -> None:
        try:
            self._workers[i] = _Worker(self.setup, i)
        except (RuntimeError, OSError) as exc:
            log.error("sandbox worker %d failed to start: %s", i, exc)

    @property
    def network_isolation(self) -> str:
        w = self._workers[0]
        return w.network if w else "?"

    @property
    def isolation(self) -> dict[str, Any]:
        """What the first zygote reports it could enforce (netns, chroot, uid, cgroups…)."""
        w = self._workers[0]
        return dict(w.isolation) if w else {}

    def worker_pids(self) -> list[int]:
        """The zygotes' pids (each zygote's scorer, when there is one, is its child)."""
        return [w.proc.pid for w in self._workers if w is not None]

    def scorer_pids(self) -> list[int]:
        return [w.scorer_pid for w in self._workers if w is not None and w.scorer_pid]

    def submit(self, job: dict[str, Any]) -> Future:
        fut: Future = Future()
        if self._closed:
            fut.set_exception(RuntimeError("sandbox pool is closed"))
            return fut
        self._queue.put((job, fut))
        return fut

    def map(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [f.result() for f in [self.submit(j) for j in jobs]]

    def _serve(self, i: int) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            jobs = [j for j, _ in batch]
            futs = [f for _, f in batch]
            worker = self._workers[i]
            ok = worker is not None and worker.run(jobs, futs)
            if not ok:
                for job, fut in batch:
                    if not fut.done():
                        fut.set_result(
                            {"id": job.get("id"), "status": "fail", "reason": "crash",
                             "detail": "sandbox worker died", "seconds": 0.0, "output": ""}
                        )
                self._restart(i)

    def _restart(self, i: int) -> None:
        old = self._workers[i]
        if old is not None:
            old.kill()
        self._workers[i] = None
        if self._closed:
            return
        self.restarts += 1
        log.warning("sandbox worker %d died; starting a replacement", i)
        for attempt in range(3):
            self._start(i)
            if self._workers[i] is not None:
                return
            time.sleep(0.5 * (attempt + 1))

    def close(self, wait: bool = True) -> None:
        """Stop the zygotes. ``wait=False`` kills them at once, abandoning queued jobs."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for t in self._threads:
                t.join(timeout=60)
        for i, w in enumerate(self._workers):
            if w is not None:
                if wait:
                    w.stop()
                else:
                    w.kill()
                self._workers[i] = None
        _live_pools.discard(self)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
