"""A pool of sandbox zygotes, used from the main process.

Each zygote is a long-lived ``eqforge.sandbox.worker`` process; one thread per zygote feeds
it batches of jobs from a shared queue and resolves their futures. A zygote that dies or
stops answering is killed, replaced, and its in-flight jobs are reported as ``crash`` —
the pool (and the run) goes on.
"""

from __future__ import annotations

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
from concurrent.futures import Future
from typing import Any

from eqforge.sandbox import protocol

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


def scrubbed_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
    env.update(_SINGLE_THREAD)
    env["HOME"] = home
    env["TMPDIR"] = home
    return env


class _Worker:
    """One zygote process and its private temporary directory."""

    def __init__(self, setup: dict[str, Any], index: int) -> None:
        self.index = index
        self.tmpdir = tempfile.mkdtemp(prefix=f"eqforge-w{index}-")
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
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        protocol.send(self.wfd, setup)
        hello = self._recv(timeout=120.0)
        if not hello or not hello.get("ready"):
            err = (hello or {}).get("error", "no answer")
            self.kill()
            raise RuntimeError(f"sandbox worker failed to start: {err}")
        self.network = hello.get("network", "?")

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
            fut.set_result(reply)
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
    child as ``runner(fn, context, options)``), ``context`` (data the runner needs),
    ``allowed_imports`` and ``memory_bytes``.
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

    def _start(self, i: int) -> None:
        try:
            self._workers[i] = _Worker(self.setup, i)
        except (RuntimeError, OSError) as exc:
            log.error("sandbox worker %d failed to start: %s", i, exc)

    @property
    def network_isolation(self) -> str:
        w = self._workers[0]
        return w.network if w else "?"

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

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=60)
        for w in self._workers:
            if w is not None:
                w.stop()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
