"""The zygote: a long-lived trusted worker that runs jobs by talking to candidate processes.

Started by ``SandboxPool`` as ``python -m eqforge.sandbox.worker`` in an empty temporary
directory with a scrubbed environment, inside its own cgroups. In order:

1. it reads its ``Setup`` (inputs, runners, drivers, limits — nothing secret), builds its
   walls (``isolation``: network, mount, user and PID namespaces, an empty read-only root)
   and finds which confinements the kernel grants candidates (uid change, IPC namespace,
   seccomp), in throwaway children;
2. it forks the ``factory``, from which every candidate process will be forked;
3. only then does it read the ``TrustedData`` (the targets) and import the drivers.

It never executes untrusted code itself. A job names a *driver* (trusted code, handed in by
the caller, e.g. the evaluator's fitter) that talks to candidate processes through a
``Host``: ``host.open()`` forks a confined process loaded with the job's program, and
``session.call`` sends it a ``messages.Call`` and returns its checked ``messages.Reply``.
A job without a driver is one ``Call`` to one process (analysis code, FunSearch's
``Sandbox.run``). Whatever a candidate process sends back is decoded by ``messages`` with
hard limits; a malformed, oversized, late or missing reply fails that job with a reason, and
the zygote and the other jobs of its batch go on.

``Setup.harden=False`` skips every confinement; it exists for ``benchmarks/sandbox_overhead.py``.
"""

from __future__ import annotations

import marshal
import os
import pickle
import resource
import select
import signal
import struct
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np

from eqforge.sandbox import cgroups, factory, guard, isolation, messages, protocol, runtime

OUTPUT_LIMIT = 4096
UID_BASE = 2_000_000_000  # candidate uids: UID_BASE + (zygote pid << 8) + session counter
_LENGTH = struct.Struct("!I")


class ParentGone(Exception):
    """The process that feeds this one went away; stop."""


def candidate_uid(zygote_pid: int, counter: int) -> int:
    return UID_BASE + ((zygote_pid & 0x3FFFFF) << 8) + (counter & 0xFF)


class Session:
    """One confined candidate process, loaded with the job's program, answering ``Call``\\ s."""

    def __init__(self, host: Host, deadline: float) -> None:
        self.host = host
        z = host.zygote
        self.deadline = deadline
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.viol_r, viol_w = os.pipe()
        protocol.widen(rep_w)
        protocol.widen(self.req_w)
        z.counter += 1
        uid = candidate_uid(z.pid, z.counter) if z.uid_ok else None
        spawn = messages.Spawn(host.code, host.job.entry, host.job.runner, host.imports, uid,
                               int(max(0.0, deadline - time.perf_counter())) + 2)
        try:
            self.pid: int | None = z.factory_call(spawn, [req_r, rep_w, out_w, viol_w])
        finally:
            for fd in (req_r, rep_w, out_w, viol_w):
                os.close(fd)
        self.violations = bytearray()
        self.poller = select.poll()
        self.open_fds = {self.rep_r, self.out_r, self.viol_r}
        for fd in self.open_fds:
            self.poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        self.poller.register(z.proto_in, select.POLLHUP | select.POLLERR)

    def call(self, op: str, args: Mapping[str, Any] | None = None, arrays: Mapping[str, np.ndarray] | None = None,
             expect: Mapping[str, tuple[int, ...]] | None = None, refusable: bool = False) -> messages.Reply:
        """Send one ``Call``; its ``Reply`` (with exactly the ``expect``\\ ed arrays), or raise
        ``CandidateFailure`` with the reason the candidate failed (and end the process).

        With ``refusable`` a reply refusing the operation (reason ``refused``) is returned
        instead, and the process stays."""
        if self.pid is None:
            raise runtime.CandidateFailure("crash", "session is closed")
        try:
            protocol.write_frame(self.req_w, messages.encode(messages.Call(op, dict(args or {}), dict(arrays or {}))))
        except BrokenPipeError:
            pass  # it died: reading says how
        frame = self._read()
        try:
            reply = messages.decode(frame, messages.Reply)
        except messages.BadMessage as exc:
            self.close()
            raise runtime.CandidateFailure("crash", f"malformed reply: {exc}") from None
        self._check_violations()
        if reply.ok and expect is not None and {k: v.shape for k, v in reply.arrays.items()} != dict(expect):
            self.close()
            got = {k: v.shape for k, v in reply.arrays.items()}
            raise runtime.CandidateFailure("crash", f"malformed reply: arrays {got}, asked for {dict(expect)}"[:500])
        if not reply.ok:
            if refusable and reply.reason == "refused":
                return reply
            self.close()
            raise runtime.CandidateFailure(reply.reason or "crash", reply.detail)
        return reply

    def _read(self) -> bytearray:
        head, got, need, body = bytearray(_LENGTH.size), 0, _LENGTH.size, None
        buf = head
        while True:
            if got == need:
                if body is not None:
                    return body
                (n,) = _LENGTH.unpack(head)
                if n > messages.MAX_FRAME_BYTES:
                    self.close()
                    raise runtime.CandidateFailure("crash", f"oversized reply ({n} bytes)")
                body = buf = bytearray(n)
                got, need = 0, n
                if n == 0:
                    return body
                continue
            remaining = self.deadline - time.perf_counter()
            if remaining <= 0:
                self.close()
                raise runtime.CandidateFailure("timeout", "wall-clock limit reached")
            for fd, _event in self.poller.poll(max(1, int(remaining * 1000))):
                if fd == self.host.zygote.proto_in:
                    self.close()
                    raise ParentGone
                if fd == self.rep_r:
                    k = os.readv(fd, [memoryview(buf)[got:]])
                    if not k:
                        raise self._died()
                    if body is not None and got < 8 <= got + k:
                        try:  # a header too large to read is refused before its bytes arrive
                            messages.check_prefix(body)
                        except messages.BadMessage as exc:
                            self.close()
                            raise runtime.CandidateFailure("crash", f"malformed reply: {exc}") from None
                    got += k
                else:
                    self._drain(fd)

    def _drain(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            self.poller.unregister(fd)
            self.open_fds.discard(fd)
        elif fd == self.out_r:
            out = self.host.output
            if len(out) < OUTPUT_LIMIT:
                out.extend(chunk[: OUTPUT_LIMIT - len(out)])
        elif len(self.violations) < 4096:
            self.violations.extend(chunk)

    def _check_violations(self) -> None:
        while self.viol_r in self.open_fds and select.select([self.viol_r], [], [], 0)[0]:
            self._drain(self.viol_r)
        if self.violations:
            text = ", ".join(v for v in dict.fromkeys(self.violations.decode("utf-8", "replace").split("\n")) if v)
            self.close()
            raise runtime.CandidateFailure("policy:runtime", f"blocked: {text}"[:500])

    def _died(self) -> runtime.CandidateFailure:
        status = self.close()
        return self.host.zygote.interpret(status)

    def close(self) -> int:
        """Kill and reap the process (via the factory); its wait status. Idempotent."""
        if self.pid is None:
            return 0
        pid, self.pid = self.pid, None
        status, cpu = self.host.zygote.factory_call(messages.Reap(pid), [])
        self.host.cpu += cpu
        for fd in list(self.open_fds):
            self._drain(fd)
        for fd in (self.req_w, self.rep_r, self.out_r, self.viol_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.host.sessions.discard(self)
        return status


class Host:
    """What a driver gets for one job: trusted data, input sizes, and fresh candidate processes."""

    def __init__(self, zygote: Zygote, job: messages.Job, code: bytes, imports: tuple[str, ...]) -> None:
        self.zygote = zygote
        self.job = job
        self.code = code
        self.imports = imports
        self.start = time.perf_counter()
        self.deadline = self.start + float(job.timeout)
        self.trusted = zygote.trusted
        self.rows = zygote.rows
        self.output = bytearray()
        self.cpu = 0.0
        self.sessions: set[Session] = set()

    def open(self, grace: float = 0.0) -> Session:
        """A fresh candidate process; ``grace`` extends the job's deadline for this one."""
        session = Session(self, max(self.deadline, time.perf_counter() + grace))
        self.sessions.add(session)
        return session

    def close(self) -> None:
        for session in list(self.sessions):
            session.close()


class Zygote:
    def __init__(self, boot: messages.Boot, proto_in: int, proto_out: int) -> None:
        if boot.version != messages.VERSION:
            raise RuntimeError(f"boot version {boot.version}, expected {messages.VERSION}")
        mark = time.perf_counter()
        self.timings: dict[str, float] = {}  # where this zygote's start-up went, in seconds

        def lap(name: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            self.timings[name] = now - mark
            mark = now

        self.proto_in, self.proto_out = proto_in, proto_out
        self.pid = os.getpid()
        self.counter = 0
        self.layers: dict[str, Any] = {"harden": boot.harden}
        jail, self.uid_ok, ipc_ok, seccomp_ok = None, False, False, False
        if boot.harden:
            runtime.set_oom_score(-1000)  # candidates volunteer instead
            self.layers.update(isolation.enter(boot.isolate_network))
            jail = isolation.jail(self.layers.get("mount") == "private")
            self.layers["ro_root"] = jail.kind if jail else "none"
            lap("namespaces")
            probe = isolation.probe(jail.path if jail else None, candidate_uid(self.pid, 0))
            lap("probes")
            self.uid_ok, ipc_ok, seccomp_ok = probe["uid"], probe["ipc"], probe["seccomp"]
            self.layers.update(chroot=probe["chroot"], uid="distinct" if self.uid_ok else "shared",
                               ipc=ipc_ok, seccomp=seccomp_ok, pid=isolation.new_pid_namespace())
            jail_path = jail.path if jail and probe["chroot"] else None
        else:
            jail_path = None
        self.factory_pid, self.sock = factory.start(boot, jail_path, self.uid_ok, ipc_ok, seccomp_ok)
        lap("factory fork")
        self.layers["cgroup"] = bool(os.environ.get("EQFORGE_CGROUP_PROCS"))
        self.drivers = {name: factory._load(name) for name in boot.drivers}
        lap("driver imports")
        # Up to here nothing depended on the data: a prestarted zygote waits here.
        setup = protocol.recv(proto_in)
        if not isinstance(setup, messages.Setup) or messages.Boot.of(setup) != boot:
            raise RuntimeError("the setup does not match the boot message")
        self.setup = setup
        self.rows = {k: int(v[0].shape[0]) if len(v) else 0 for k, v in setup.inputs.items()}
        protocol.send(self.sock.fileno(), setup)  # the factory's inputs, allowed imports, limits
        lap("waiting for the setup")
        # Only now, with every future candidate process's ancestor forked, the secrets come.
        trusted = protocol.recv(proto_in, scrub=True)
        if not isinstance(trusted, messages.TrustedData):
            raise RuntimeError("expected the trusted data")
        self.trusted = dict(trusted.arrays)
        lap("trusted data")
        if setup.warmup:
            factory._load(setup.warmup)(self.trusted)
            lap("warmup")
        self.cgroup_procs = os.environ.get("EQFORGE_CGROUP_PROCS", "")
        self.oom_file = os.environ.get("EQFORGE_CGROUP_OOM", "")
        self.oom_seen = cgroups.oom_kills(self.oom_file)

    # the factory -------------------------------------------------------------------------
    def factory_call(self, request: messages.Spawn | messages.Reap, fds: list[int]) -> Any:
        import socket

        try:
            socket.send_fds(self.sock, [pickle.dumps(request)], fds)
            data = self.sock.recv(1 << 16)
        except OSError as exc:
            raise RuntimeError(f"the factory is gone ({exc})") from None
        if not data:
            raise RuntimeError("the factory is gone")
        return pickle.loads(data)

    def interpret(self, status: int) -> runtime.CandidateFailure:
        """Why a candidate process ended without a reply."""
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            count = cgroups.oom_kills(self.oom_file) if self.oom_file else None
            oom = None if count is None or not self.oom_file else count > self.oom_seen
            if count is not None:
                self.oom_seen = count
            if oom:
                return runtime.CandidateFailure("memory", "killed by the OOM killer")
            if sig == signal.SIGXCPU:
                return runtime.CandidateFailure("timeout", "CPU-time limit reached")
            if sig == signal.SIGKILL and oom is None:
                return runtime.CandidateFailure("memory", "killed (out of memory)")
            if sig == signal.SIGSYS:
                return runtime.CandidateFailure("policy:seccomp", "killed by the seccomp filter")
            return runtime.CandidateFailure("crash", f"killed by signal {sig}")
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        return runtime.CandidateFailure("crash", f"exited with status {code}")

    # one job -----------------------------------------------------------------------------
    def run_job(self, job: messages.Job) -> messages.Outcome:
        start = time.perf_counter()
        own = _own_cpu()
        host = None
        try:
            imports: list[str] = []
            code_obj = guard.compile_source(job.program, guard_attributes=self.setup.harden, imports=imports)
            host = Host(self, job, marshal.dumps(code_obj), tuple(imports))
            if job.driver is None:
                session = host.open()
                reply = session.call(job.op, job.args, job.arrays)
                session.close()
                payload: Mapping[str, Any] = {"arrays": dict(reply.arrays), "text": reply.text}
            else:
                if job.driver not in self.drivers:
                    raise runtime.CandidateFailure("crash", f"unknown driver {job.driver!r}")
                payload = self.drivers[job.driver](host, job)
            outcome: dict[str, Any] = dict(ok=True, payload=payload)
        except runtime.CandidateFailure as exc:
            outcome = dict(ok=False, reason=exc.reason, detail=exc.detail[:500])
        except (ParentGone, RuntimeError):
            raise
        except Exception as exc:  # noqa: BLE001 - a driver bug fails this job, not the worker
            where = traceback.format_exc(limit=-2).strip().splitlines()[-3:-1]
            detail = f"driver: {type(exc).__name__}: {exc} ({' '.join(where)})"
            outcome = dict(ok=False, reason="crash", detail=detail[:500])
        finally:
            if host is not None:
                host.close()
            self._kill_strays()
        cpu = _own_cpu() - own + (host.cpu if host else 0.0)
        output = host.output.decode("utf-8", "replace") if host else ""
        return messages.Outcome(id=job.id, seconds=time.perf_counter() - start, cpu=cpu, output=output, **outcome)

    def _kill_strays(self) -> None:
        """Kill anything in this worker's cgroup but the zygote and its factory."""
        if not self.cgroup_procs:
            return
        try:
            with open(self.cgroup_procs) as fh:
                pids = [int(p) for p in fh.read().split()]
        except (OSError, ValueError):
            return
        for p in pids:
            if p not in (self.pid,) and _parent_pid(p) != self.pid:
                try:
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def serve(self) -> None:
        protocol.send(self.proto_out, {"ready": True, "pid": self.pid, "layers": self.layers, "timings": self.timings,
                                       "factory": self.factory_pid, "rss": _rss_bytes() + _rss_bytes(self.factory_pid)})
        while True:
            try:
                msg = protocol.recv(self.proto_in)
            except (EOFError, OSError):
                return
            if not isinstance(msg, list):
                return  # stop
            try:
                for job in msg:
                    protocol.send(self.proto_out, self.run_job(job))
            except (ParentGone, OSError, EOFError, RuntimeError):
                return


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_bytes(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return int(stat[stat.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    try:
        boot = protocol.recv(proto_in)
        if not isinstance(boot, messages.Boot):
            raise RuntimeError("expected a Boot")
        zygote = Zygote(boot, proto_in, proto_out)
    except Exception:  # noqa: BLE001 - report any setup failure to the parent, then exit
        protocol.send(proto_out, {"ready": False, "error": traceback.format_exc(limit=3)})
        return
    zygote.serve()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
