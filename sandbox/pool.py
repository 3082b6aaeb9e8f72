"""A pool of sandbox zygotes, used from the main process.

Each zygote is a long-lived ``eqforge.sandbox.worker`` process; one thread per zygote feeds
it batches of jobs from a shared queue and resolves their futures. A zygote that dies or
stops answering is killed, replaced, and its in-flight jobs are reported as ``crash`` —
the pool (and the run) goes on.

Every zygote (with its factory and candidate processes, see ``worker``) gets its own cgroups (see ``cgroups``): a
small ``pids.max`` and a memory limit of their resident size plus the per-candidate budget.
Retiring a zygote kills everything in its cgroups. Nothing outlives the pool: ``close`` (or
the ``atexit`` hook, or the zygote noticing that its stdin pipe hung up when the main
process dies) ends the zygotes; factories and candidate processes die with their parent
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
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

from eqforge.sandbox import protocol
from eqforge.sandbox.cgroups import CgroupSet
from eqforge.sandbox.messages import Boot, Job, Outcome, Setup, TrustedData

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
# A zygote and its factory are one thread each; at most one candidate process runs at a time
# (and one confinement probe at start-up). Anything beyond this is a fork bomb.
PIDS_MAX = 8
# Memory a zygote may use beyond its resident size at start plus the candidate budget.
MEMORY_SLACK = 64 * 1024 * 1024

_live_pools: weakref.WeakSet[SandboxPool] = weakref.WeakSet()


_prestarted: list[_Worker] = []
_prestart_lock = threading.Lock()


@atexit.register
def _close_all_pools() -> None:
    """Last resort: a program that forgot ``close`` still leaves no process behind."""
    for pool in list(_live_pools):
        pool.close(wait=False)
    with _prestart_lock:
        while _prestarted:
            _prestarted.pop().kill()


def prestart(workers: int, boot: Boot) -> None:
    """Start zygotes now, before the data exists, for the next pool with this ``boot``.

    Their interpreter start, imports, namespaces, probes and the factory's fork overlap
    with whatever the caller does meanwhile (importing, loading CSV files); the pool that
    takes them only sends the data. Best effort: failures are left to that pool.
    """

    def one(i: int) -> None:
        try:
            w = _Worker(boot, -1 - i)
        except (RuntimeError, OSError):
            return
        with _prestart_lock:
            _prestarted.append(w)

    for i in range(max(0, workers)):
        threading.Thread(target=one, args=(i,), daemon=True).start()


def _take_prestarted(boot: Boot) -> _Worker | None:
    with _prestart_lock:
        for k, w in enumerate(_prestarted):
            if w.boot == boot and w.proc.poll() is None:
                return _prestarted.pop(k)
    return None


def scrubbed_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
    env.update(_SINGLE_THREAD)
    env["HOME"] = home
    env["TMPDIR"] = home
    return env


def _layers_line(layers: dict[str, Any]) -> str:
    order = ("user", "network", "mount", "pid", "ipc", "ro_root", "chroot", "uid", "seccomp", "cgroup")
    return ", ".join(f"{k}={layers.get(k)}" for k in order if k in layers) + ", rlimits, audit hook"


def kernel_walls(layers: dict[str, Any]) -> bool:
    """Whether anything but the in-process guard stands between a candidate and the host."""
    return bool(layers.get("seccomp") or layers.get("chroot") or layers.get("network") == "netns")


class _Worker:
    """One zygote process and its private temporary directory."""

    def __init__(self, boot: Boot, index: int) -> None:
        """Start the zygote process; it gets ready as far as it can without data."""
        self.index = index
        self.boot = boot
        self.tmpdir = tempfile.mkdtemp(prefix=f"eqforge-w{index}-")
        self.cgroup = CgroupSet.create(f"w{index}", PIDS_MAX) if boot.harden else None
        self.started = time.perf_counter()
        env = scrubbed_env(self.tmpdir)
        if self.cgroup is not None:
            env.update(EQFORGE_CGROUP_PROCS=self.cgroup.procs_file, EQFORGE_CGROUP_OOM=self.cgroup.oom_file)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "eqforge.sandbox.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=self.tmpdir,
                env=env,
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
            except OSError as exc:
                log.warning("sandbox: could not enter the worker cgroup (%s); relying on rlimits", exc)
                self.cgroup.close()
                self.cgroup = None
        try:
            protocol.send(self.wfd, boot)
        except OSError as exc:
            self.kill()
            raise RuntimeError(f"sandbox worker failed to start: {exc}") from None

    def configure(self, setup: Setup, trusted: TrustedData) -> None:
        """Send the data; wait until the zygote is ready for jobs."""
        try:
            protocol.send(self.wfd, setup)
            protocol.send(self.wfd, trusted)  # read by the zygote only after its factory is forked
            hello = self._recv(timeout=120.0)
        except (OSError, EOFError):
            hello = None
        if not hello or not hello.get("ready"):
            err = (hello or {}).get("error", "no answer")
            self.kill()
            raise RuntimeError(f"sandbox worker failed to start: {err}")
        self.factory_pid: int | None = hello.get("factory")
        self.timings: dict[str, float] = {"process start and imports": time.perf_counter() - self.started,
                                          **dict(hello.get("timings", {}))}
        self.timings["process start and imports"] -= sum(v for k, v in self.timings.items()
                                                         if k != "process start and imports")
        self.isolation: dict[str, Any] = dict(hello.get("layers", {}))
        if self.cgroup is None:
            self.isolation["cgroup"] = False
        memory = setup.memory_bytes
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

    def run(self, jobs: list[Job], futures: list[Future]) -> bool:
        """Send a batch; resolve futures as results arrive. False if the zygote failed."""
        try:
            protocol.send(self.wfd, jobs)
        except OSError:
            return False
        for job, fut in zip(jobs, futures, strict=True):
            # The zygote enforces each job's timeout; allow it generous slack before
            # deciding the zygote itself is stuck.
            try:
                reply = self._recv(timeout=float(job.timeout) * 2 + 30.0)
            except (EOFError, OSError, pickle.UnpicklingError):
                reply = None
            if not isinstance(reply, Outcome) or reply.id != job.id:
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
            protocol.send(self.wfd, "stop")
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class SandboxPool:
    r"""Run ``Job``\ s in sandboxed workers; each resolves to an ``Outcome``.

    ``setup`` (``messages.Setup``) is sent to every zygote first, ``trusted`` (data only
    trusted drivers may hold) after its factory has been forked. A hardened pool logs the
    layers in force once, and refuses to start when no kernel wall is available (no seccomp,
    no chroot, no network namespace) unless ``accept_risk`` (or ``EQFORGE_ACCEPT_RISK=1``)
    says to run behind the in-process guard alone.
    """

    _announced = False

    def __init__(self, setup: Setup, trusted: TrustedData | None = None, workers: int = 1, batch: int = 4,
                 accept_risk: bool = False) -> None:
        self.setup = setup
        self.trusted = trusted or TrustedData()
        self.batch = max(1, batch)
        self.size = max(1, workers)
        self._queue: queue.Queue[tuple[Job, Future] | None] = queue.Queue()
        self._closed = False
        self.restarts = 0
        self._threads: list[threading.Thread] = []
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
        layers = self.isolation
        if setup.harden:
            if not kernel_walls(layers) and not (accept_risk or os.environ.get("EQFORGE_ACCEPT_RISK") == "1"):
                self.close()
                raise RuntimeError(
                    "sandbox: no kernel isolation is available here (no seccomp, no namespaces, no chroot), "
                    "so candidate programs would run behind the in-process guard alone; set EQFORGE_ACCEPT_RISK=1 "
                    "to accept that risk")
            if not SandboxPool._announced:
                SandboxPool._announced = True
                log.info("sandbox layers in force: %s", _layers_line(layers))
        for i in range(self.size):
            t = threading.Thread(target=self._serve, args=(i,), daemon=True, name=f"sandbox-{i}")
            t.start()
            self._threads.append(t)
        _live_pools.add(self)

    def _start(self, i: int) -> None:
        try:
            w = _take_prestarted(Boot.of(self.setup)) or _Worker(Boot.of(self.setup), i)
            try:
                w.configure(self.setup, self.trusted)
            except RuntimeError:
                if not w.index < 0:
                    raise
                w = _Worker(Boot.of(self.setup), i)  # a prestarted one that went stale: a fresh one
                w.configure(self.setup, self.trusted)
            w.index = i
            self._workers[i] = w
        except (RuntimeError, OSError) as exc:
            log.error("sandbox worker %d failed to start: %s", i, exc)

    def run(self, program: str, entry: str, runner: str, *, op: str = "run",
            args: dict[str, Any] | None = None, arrays: dict[str, Any] | None = None,
            timeout: float = 30.0) -> Outcome:
        """FunSearch's ``Sandbox.run``: one call of ``entry`` in ``program`` by ``runner``
        (one of ``setup.runners``) in a fresh confined process; blocks for its ``Outcome``."""
        job = Job(id=("run", time.monotonic_ns()), program=program, entry=entry, runner=runner, op=op,
                  args=args or {}, arrays=arrays or {}, timeout=timeout)
        return self.submit(job).result()

    @property
    def network_isolation(self) -> str:
        return str(self.isolation.get("network", "?"))

    @property
    def isolation(self) -> dict[str, Any]:
        """What the first zygote reports it could enforce (netns, chroot, uid, cgroups…)."""
        w = self._workers[0]
        return dict(w.isolation) if w else {}

    def worker_pids(self) -> list[int]:
        """The zygotes' pids (each zygote's factory is its child)."""
        return [w.proc.pid for w in self._workers if w is not None]

    def startup_timings(self) -> dict[str, float]:
        """Where the first zygote's start-up went (seconds): process start and imports,
        namespaces, probes, the factory's fork, driver imports…"""
        w = self._workers[0]
        return dict(w.timings) if w else {}

    def factory_pids(self) -> list[int]:
        return [w.factory_pid for w in self._workers if w is not None and w.factory_pid]

    def submit(self, job: Job) -> Future:
        fut: Future = Future()
        if self._closed:
            fut.set_exception(RuntimeError("sandbox pool is closed"))
            return fut
        self._queue.put((job, fut))
        return fut

    def map(self, jobs: list[Job]) -> list[Outcome]:
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
                        fut.set_result(Outcome(id=job.id, ok=False, reason="crash",
                                               detail="sandbox worker died"))
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
        # With the queue drained nothing in a zygote is worth a graceful stop: kill them all
        # at once, in parallel (each kill waits for its cgroup to empty).
        workers = [w for w in self._workers if w is not None]
        self._workers = [None] * self.size
        killers = [threading.Thread(target=w.kill) for w in workers]
        for t in killers:
            t.start()
        for t in killers:
            t.join()
        _live_pools.discard(self)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
