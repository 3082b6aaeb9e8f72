"""The factory: a small trusted process that forks one confined process per candidate session.

The zygote forks the factory at start-up, *before* it receives the data only trusted code may
hold (the targets), so no candidate process — all of them are the factory's children — ever
has them in its memory, freed or not. The factory never runs candidate code; it holds the
inputs candidates may see, the imported runners and numpy, and answers two requests on a
Unix socket from its zygote:

* ``Spawn`` (with the child's three pipe ends passed as file descriptors): fork a child,
  confine it (``candidate``), reply with its pid;
* ``Reap``: kill that child's process group and reap it, reply with its wait status and
  CPU time.

Every child is forked from the same clean factory, so the process that makes the scored
predictions shares no memory with the one that ran while the constants were fitted; each
gets its own uid (when the kernel grants uid changes), its own IPC namespace, its own open
file descriptions (fresh pipes from the zygote, a /dev/null opened in the child — none
shared with the factory, a sibling or the scoring process), and the zygote starts the
scoring child only after the fitting one is reaped.
"""

from __future__ import annotations

import gc
import importlib
import marshal
import os
import pickle
import resource
import signal
import socket
import sys
from typing import Any

from eqforge.sandbox import guard, messages, protocol, runtime, seccomp

CLONE_NEWIPC = 0x08000000


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class Factory:
    def __init__(self, boot: messages.Boot, sock: socket.socket, jail: str | None, uid_ok: bool,
                 ipc_ok: bool, seccomp_ok: bool) -> None:
        self.sock = sock
        self.jail, self.uid_ok, self.ipc_ok, self.seccomp_ok = jail, uid_ok, ipc_ok, seccomp_ok
        self.runners = {name: _load(name) for name in boot.runners}
        runtime.preload(("numpy", "math"))
        # the rest of the setup (inputs, allowed imports, limits) comes once it exists
        setup = protocol.recv(sock.fileno())
        if not isinstance(setup, messages.Setup):
            raise RuntimeError("expected the setup")
        self.setup = setup
        self.inputs = {k: list(v) for k, v in setup.inputs.items()}
        for cols in self.inputs.values():
            for c in cols:
                c.flags.writeable = False
        self.gate = guard.ModuleGate(tuple(setup.allowed_imports))
        self.memory = setup.memory_bytes if setup.address_space_limit else None
        self.filter = seccomp.Filter() if seccomp_ok and setup.seccomp else None
        gc.collect()
        gc.freeze()

    def serve(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 1 << 22, 4)
            except OSError:
                return
            if not data:
                return
            request = pickle.loads(data)
            if isinstance(request, messages.Spawn):
                pid = self._spawn(request, fds)
                reply: Any = pid
            else:
                for fd in fds:
                    os.close(fd)
                reply = self._reap(request.pid)
            try:
                self.sock.sendall(pickle.dumps(reply))
            except OSError:
                return

    def _reap(self, pid: int) -> tuple[int, float]:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            _, status, usage = os.wait4(pid, 0)
        except ChildProcessError:
            return 0, 0.0
        return status, usage.ru_utime + usage.ru_stime

    def _spawn(self, spawn: messages.Spawn, fds: list[int]) -> int:
        new = False
        for name in spawn.imports:  # trusted imports, before forking, for what the program names
            if name not in sys.modules and self.gate(name):
                try:
                    importlib.import_module(name)
                    new = True
                except Exception:  # noqa: BLE001 - not a module, or broken: the child will say
                    continue
        if new:
            gc.freeze()
        plan = runtime.limit_plan(self.memory, spawn.cpu_seconds) if self.setup.harden else []
        pid = os.fork()
        if pid == 0:  # ---- the candidate process: never returns
            code = 70
            try:
                self.sock.close()
                self._child(spawn, fds, plan)
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        return pid

    def _child(self, spawn: messages.Spawn, fds: list[int], plan: list[tuple[int, int]]) -> None:
        req_r, rep_w, out_w, viol_w = fds
        os.setpgid(0, 0)
        # Descriptors of its own: its output pipe on 1 and 2, a /dev/null opened here on 0
        # (never the factory's: a flag such as O_NONBLOCK set on a shared open file
        # description would be seen by the next candidate), its three pipes, nothing else.
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        keep = sorted({req_r, rep_w, viol_w})
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1 << 16)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        violations: list[str] | None = None
        failure: messages.Reply | None = None
        code_obj = None
        try:
            code_obj = marshal.loads(spawn.code)  # compiled by the zygote; loaded before the hook
        except BaseException as exc:  # noqa: BLE001 - a result, reported on the first call
            failure = runtime.failure_reply(exc)
        if self.setup.harden:
            runtime.set_oom_score(1000)
            runtime.set_limits(plan)
            if self.ipc_ok and runtime.libc().unshare(CLONE_NEWIPC) != 0:
                os._exit(74)
            try:
                runtime.confine(self.jail, spawn.uid if self.uid_ok else None, os.getppid())
                if spawn.uid is None or not self.uid_ok:
                    runtime.drop_capabilities()
                if self.filter is not None:
                    self.filter.install()
            except OSError:
                os._exit(72)
            if self.setup.audit_hook:
                # Armed from here on; it lets exactly this code object be executed.
                violations = runtime.install_audit_hook(viol_w, (code_obj,) if code_obj is not None else ())
        runner = self.runners[spawn.runner]
        fn = None
        if code_obj is not None:
            try:
                fn = guard.load_candidate(code_obj, spawn.entry, tuple(self.setup.allowed_imports), violations)
            except BaseException as exc:  # noqa: BLE001 - anything the module body raises is a result
                failure = runtime.failure_reply(exc)
        state: dict[str, Any] = {}
        while True:
            frame = protocol.read_frame(req_r)
            if frame is None:
                os._exit(0)
            if failure is not None:
                reply = failure
            else:
                try:
                    call = messages.decode(frame, messages.Call)
                    reply = runner(fn, self.inputs, call, state)
                except BaseException as exc:  # noqa: BLE001 - anything a candidate raises is a result
                    reply = runtime.failure_reply(exc)
            if violations:
                # The candidate tried something forbidden and swallowed the refusal.
                reply = messages.Reply(False, reason="policy:runtime",
                                       detail=f"blocked: {', '.join(dict.fromkeys(violations))}"[:500])
            try:
                data = messages.encode(reply)
            except Exception as exc:  # noqa: BLE001 - an unencodable reply is a failure
                data = messages.encode(messages.Reply(False, reason="crash", detail=f"encode: {exc}"[:200]))
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            protocol.write_frame(rep_w, data)


def start(boot: messages.Boot, jail: str | None, uid_ok: bool, ipc_ok: bool, seccomp_ok: bool,
          ) -> tuple[int, socket.socket]:
    """Fork the factory from the calling (trusted, target-free) process; returns (pid, socket)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            ours.close()
            runtime.libc().prctl(runtime.PR_SET_PDEATHSIG, 9, 0, 0, 0)
            if os.getppid() not in (parent, 0):  # 0: the factory is init of its own PID namespace
                os._exit(0)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            Factory(boot, theirs, jail, uid_ok, ipc_ok, seccomp_ok).serve()
        except BaseException:  # noqa: BLE001 - a broken factory makes the zygote fail its jobs
            code = 1
        finally:
            os._exit(code)
    theirs.close()
    return pid, ours
