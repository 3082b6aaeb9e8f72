"""Candidate-side runners that act as a candidate which has beaten the in-process guard.

Imported by the sandbox factory (``tests/`` on its ``PYTHONPATH``) before any candidate
runs, so they hold real ``os``, ``socket`` and ``ctypes`` handles: what a program that
reached the real builtins (attack class 1) would hold. What they try shows what the kernel
layers refuse on their own. Keep this module free of side effects but the hook capture.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
from typing import Any

from eqforge.evaluator.in_sandbox import predict
from eqforge.sandbox import runtime
from eqforge.sandbox.messages import Reply

_libc = ctypes.CDLL(None, use_errno=True)
_records: list[list[str]] = []
_frames: list[Any] = []
_install = runtime.install_audit_hook


def _capture(*args: Any, **kw: Any) -> Any:
    """The hook installed as the factory installs it, its in-process record kept where a
    runner can reach it: a candidate that found the factory's locals (attack class 3)."""
    _frames.append(sys._getframe(1))  # the factory's frame that installs it (before the hook)
    record = _install(*args, **kw)
    _records.append(record)
    return record


runtime.install_audit_hook = _capture


def _c(ret: int) -> int:
    if ret < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return ret


def _fork() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return pid


def escape(fn: Any, inputs: Any, call: Any, state: dict[str, Any]) -> Reply:
    """Try every way out; the text is {attempt: "refused ..." | "allowed ..."}."""
    marker, secret, victim = str(call.args["marker"]), str(call.args["secret"]), int(call.args["victim"])
    attempts = {
        "write a file on the host": lambda: os.open(marker, os.O_WRONLY | os.O_CREAT, 0o644),
        "create a file in its root": lambda: os.open("/x", os.O_WRONLY | os.O_CREAT, 0o644),
        "read the test targets": lambda: os.open(secret, os.O_RDONLY),
        "open a socket": lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM),
        "open a unix socket": lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM),
        "create SysV shared memory": lambda: _c(_libc.shmget(0, 4096, 0o1666)),
        "attach SysV shared memory": lambda: _c(_libc.shmat(0, None, 0)),
        "signal the zygote": lambda: os.kill(victim, 0),
        "signal the factory": lambda: os.kill(os.getppid(), 0),
        "ptrace the factory": lambda: _c(_libc.ptrace(16, os.getppid(), None, None)),
        "fork": _fork,
        "new user namespace": lambda: _c(_libc.unshare(0x10000000)),
        "new IPC namespace": lambda: _c(_libc.unshare(0x08000000)),
        "mkdir": lambda: os.mkdir("/d"),
        "chroot out": lambda: os.chroot("/"),
    }
    results = {}
    for name, attempt in attempts.items():
        try:
            results[name] = f"allowed: {attempt()!r}"[:80]
        except OSError as exc:
            results[name] = f"refused: errno {exc.errno}"
        except Exception as exc:  # noqa: BLE001 - the audit hook or another in-process refusal
            results[name] = f"refused: {type(exc).__name__}"
    return Reply(True, text=json.dumps(results))


def switch_off(fn: Any, inputs: Any, call: Any, state: dict[str, Any]) -> Reply:
    """Get refused, erase the in-process record, try to switch the hook off through every
    frame and local it can reach (the traceback of the refusal leads into the hook's own
    frame and, through ``f_back``, to the factory's), then make a second forbidden call and
    answer honestly. The zygote must see both refusals: the second one shows the hook was
    still armed."""
    try:
        open("/etc/hostname")  # noqa: SIM115 - refused by the hook, and recorded outside the process
    except Exception:  # noqa: BLE001
        pass
    frames, f = [], (_frames[0] if _frames else None)
    while f is not None:  # the factory's frame and every frame above it
        frames.append(f)
        try:
            f = f.f_back
        except Exception:  # noqa: BLE001 - refused
            break
    for frame in frames:
        try:
            local = dict(frame.f_locals)
        except Exception:  # noqa: BLE001 - refused
            continue
        for name, value in local.items():
            if callable(value) and not isinstance(value, type) and name not in ("fn", "runner"):
                for arg in (False, 0):  # an arming switch, if one is still lying around
                    try:
                        value(arg)
                    except Exception:  # noqa: BLE001 - anything goes
                        pass
            if isinstance(value, list):
                value.clear()
    for record in _records:
        record.clear()
    try:
        os.listdir("/")  # the second forbidden call: refused and recorded if the hook holds
    except Exception:  # noqa: BLE001
        pass
    return predict.serve(fn, inputs, call, state)
