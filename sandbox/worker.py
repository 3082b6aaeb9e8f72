"""The zygote: a long-lived, trusted worker that forks one fresh child per candidate.

Started by ``SandboxPool`` as ``python -m eqforge.sandbox.worker`` in an empty temporary
directory with a scrubbed environment. It imports numpy/scipy and the runner once, moves
into its own network namespace when the kernel allows, then for each job forks a child that
runs the candidate under limits (see ``runtime``). Forking gives every candidate a fresh
interpreter state at the cost of a copy-on-write fork (about a millisecond), and the zygote
itself never executes untrusted code, so it cannot be corrupted by one.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import select
import signal
import sys
import time
import traceback
from typing import Any

from eqforge.sandbox import codec, protocol, runtime

CLONE_NEWNET = 0x40000000
OUTPUT_LIMIT = 4096


def _isolate_network() -> str:
    """Enter a fresh network namespace (no interfaces up): no connection can be made."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) == 0:
            return "netns"
        return f"none (unshare errno {ctypes.get_errno()})"
    except (OSError, AttributeError) as exc:
        return f"none ({exc})"


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class Zygote:
    def __init__(self, setup: dict[str, Any], proto_in: int, proto_out: int) -> None:
        self.setup = setup
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.allowed = tuple(setup.get("allowed_imports", runtime_default_imports()))
        runtime.preload(self.allowed)
        self.runner = _load(setup["runner"])
        self.context = setup.get("context", {})
        warmup = setup.get("warmup")
        if warmup:
            _load(warmup)(self.context)
        self.memory_bytes = setup.get("memory_bytes")
        self.network = _isolate_network() if setup.get("isolate_network", True) else "off"

    # one job ---------------------------------------------------------------------------
    def run_job(self, job: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        timeout = float(job.get("timeout", 30.0))
        res_r, res_w = os.pipe()
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # ---- child: never returns
            try:
                os.close(res_r)
                os.close(out_r)
                self._child(job, res_w, out_w, timeout)
            finally:
                os._exit(70)
        os.close(res_w)
        os.close(out_w)
        result, output, status, timed_out = self._collect(pid, res_r, out_r, start + timeout)
        seconds = time.perf_counter() - start
        reply = self._interpret(result, status, timed_out)
        reply.update(id=job.get("id"), seconds=seconds, output=output)
        return reply

    def _child(self, job: dict[str, Any], res_w: int, out_w: int, timeout: float) -> None:
        os.setpgid(0, 0)
        for fd in (self.proto_in, self.proto_out):
            try:
                os.close(fd)
            except OSError:
                pass
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.close(out_w)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        arm = runtime.install_audit_hook()
        runtime.apply_limits(self.memory_bytes, int(timeout) + 2)
        try:
            fn = runtime.compile_candidate(
                job["code"], job.get("entry", "equation"), self.allowed, arm
            )
            payload = self.runner(fn, self.context, job.get("options", {}))
            msg: dict[str, Any] = {"status": "ok", "payload": payload}
        except runtime.CandidateFailure as exc:
            msg = {"status": "fail", "reason": exc.reason, "detail": exc.detail[:500]}
        except MemoryError:
            msg = {"status": "fail", "reason": "memory", "detail": "memory limit reached"}
        except RecursionError:
            msg = {"status": "fail", "reason": "exception:RecursionError", "detail": "recursion too deep"}
        except runtime.SandboxViolation as exc:
            msg = {"status": "fail", "reason": "policy:runtime", "detail": str(exc)[:500]}
        except BaseException as exc:  # noqa: BLE001 - anything a candidate raises is a result
            msg = {
                "status": "fail",
                "reason": f"exception:{type(exc).__name__}",
                "detail": str(exc)[:500],
            }
        try:
            data = codec.encode(msg)
        except (TypeError, ValueError, MemoryError) as exc:
            data = codec.encode({"status": "fail", "reason": "crash", "detail": f"encode: {exc}"})
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        view = memoryview(data)
        while view:
            view = view[os.write(res_w, view):]
        os._exit(0)

    def _collect(
        self, pid: int, res_r: int, out_r: int, deadline: float
    ) -> tuple[bytes | None, str, int, bool]:
        chunks: list[bytes] = []
        output = bytearray()
        open_fds = {res_r, out_r}
        timed_out = False
        while open_fds:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select(list(open_fds), [], [], remaining)
            for fd in ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    open_fds.discard(fd)
                elif fd == res_r:
                    chunks.append(chunk)
                elif len(output) < OUTPUT_LIMIT:
                    output.extend(chunk[: OUTPUT_LIMIT - len(output)])
        # Kill the child's whole process group (anything it started) and reap it.
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _, status = os.waitpid(pid, 0)
        os.close(res_r)
        os.close(out_r)
        data = b"".join(chunks) if chunks else None
        return data, output.decode("utf-8", "replace"), status, timed_out

    def _interpret(self, data: bytes | None, status: int, timed_out: bool) -> dict[str, Any]:
        if data:
            try:
                msg = codec.decode(data)
                if isinstance(msg, dict) and msg.get("status") in ("ok", "fail"):
                    return msg
            except (ValueError, UnicodeDecodeError):
                pass
            return {"status": "fail", "reason": "crash", "detail": "malformed result"}
        if timed_out:
            return {"status": "fail", "reason": "timeout", "detail": "wall-clock limit reached"}
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU:
                return {"status": "fail", "reason": "timeout", "detail": "CPU-time limit reached"}
            if sig == signal.SIGKILL:
                return {"status": "fail", "reason": "memory", "detail": "killed (out of memory)"}
            return {"status": "fail", "reason": "crash", "detail": f"killed by signal {sig}"}
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        return {"status": "fail", "reason": "crash", "detail": f"exited with status {code}"}

    # main loop -------------------------------------------------------------------------
    def serve(self) -> None:
        protocol.send(self.proto_out, {"ready": True, "pid": os.getpid(), "network": self.network})
        while True:
            try:
                msg = protocol.recv(self.proto_in)
            except EOFError:
                return
            if msg.get("stop"):
                return
            for job in msg["jobs"]:
                protocol.send(self.proto_out, self.run_job(job))


def runtime_default_imports() -> tuple[str, ...]:
    from eqforge.sandbox.policy import DEFAULT_IMPORTS

    return DEFAULT_IMPORTS


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    try:
        setup = protocol.recv(proto_in)
        zygote = Zygote(setup, proto_in, proto_out)
    except Exception:  # noqa: BLE001 - report any setup failure to the parent, then exit
        protocol.send(proto_out, {"ready": False, "error": traceback.format_exc(limit=3)})
        return
    zygote.serve()


if __name__ == "__main__":
    main()
