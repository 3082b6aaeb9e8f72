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


# -- issue 20: the kernel allowlist, descriptors, acting on the factory ----------------------

_libc.syscall.restype = ctypes.c_long
EPERM = 1


def _raw(nr: int, *args: int) -> tuple[int, int]:
    """A raw system call with integer arguments: (return value, errno)."""
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return int(ret), ctypes.get_errno()


def sweep(fn: Any, inputs: Any, call: Any, state: dict[str, Any]) -> Reply:
    """Every system call number in ``call.args["numbers"]``, with zero arguments; the text is
    {number: "ret errno"} for each one that did not fail with EPERM."""
    through = {}
    for nr in json.loads(str(call.args["numbers"])):
        ret, err = _raw(int(nr), 0, 0, 0, 0, 0, 0)
        if not (ret == -1 and err == EPERM):
            through[str(nr)] = f"{ret} {err}"
    return Reply(True, text=json.dumps(through))


def raw_call(fn: Any, inputs: Any, call: Any, state: dict[str, Any]) -> Reply:
    """One raw call (``call.args["nr"]``); reaching the reply means it was not killed."""
    ret, err = _raw(int(call.args["nr"]))
    return Reply(True, text=f"{ret} {err}")


class _Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_ulong), ("max", ctypes.c_ulong)]


def act_on_factory(fn: Any, inputs: Any, call: Any, state: dict[str, Any]) -> Reply:
    """Everything a process sharing the factory's uid could do to it (or to its host)
    without root; the text is {attempt: "refused errno" | "allowed"}."""
    ppid = os.getppid()
    zero = _Rlimit(0, 0)
    attempts: dict[str, Any] = {
        "prlimit64 the factory's NOFILE to 0": lambda: _raw(302, ppid, 7, ctypes.addressof(zero), 0),
        "prlimit64 the factory's NPROC to 0": lambda: _raw(302, ppid, 6, ctypes.addressof(zero), 0),
        "setrlimit own NOFILE": lambda: _raw(160, 7, ctypes.addressof(zero)),
        "setpriority the factory": lambda: _raw(141, 0, ppid, 19),
        "kill the factory": lambda: _raw(62, ppid, 0),
        "tgkill the factory": lambda: _raw(234, ppid, ppid, 0),
        "kill the process group": lambda: _raw(62, 0, 0),
        "kill every process": lambda: _raw(62, -1 & 0xFFFFFFFF, 0),
        "ptrace attach the factory": lambda: _raw(101, 16, ppid, 0, 0),
        "process_vm_readv the factory": lambda: _raw(310, ppid, 0, 0, 0, 0, 0),
        "pidfd_open the factory": lambda: _raw(434, ppid, 0),
        "open /proc/<factory>/oom_score_adj": lambda: _raw(2, ctypes.addressof(_PROC_PATH), 1),
        "utime /dev/null (fd 0)": lambda: _raw(280, 0, 0, 0, 0),
        "futimesat /dev/null": lambda: _raw(261, 0, ctypes.addressof(_DEV_NULL), 0),
        "utime /dev/null": lambda: _raw(132, ctypes.addressof(_DEV_NULL), 0),
        "utimes /dev/null": lambda: _raw(235, ctypes.addressof(_DEV_NULL), 0),
        "fchmod fd 0": lambda: _raw(91, 0, 0o777),
        "fchown fd 0": lambda: _raw(93, 0, 0, 0),
        "fcntl F_SETFL fd 0": lambda: _raw(72, 0, 4, os.O_NONBLOCK),
        "ioctl FIONBIO fd 1": lambda: _raw(16, 1, 0x5421, ctypes.addressof(_ONE)),
        "sched_setaffinity the factory": lambda: _raw(203, ppid, 8, ctypes.addressof(_ONE)),
        "fork": lambda: _raw(57),
        "clone": lambda: _raw(56, 17, 0, 0, 0, 0),
    }
    results = {}
    for name, attempt in attempts.items():
        ret, err = attempt()
        results[name] = f"refused {err}" if ret == -1 else f"allowed {ret}"
    return Reply(True, text=json.dumps(results))


_DEV_NULL = ctypes.create_string_buffer(b"/dev/null")
_PROC_PATH = ctypes.create_string_buffer(b"/proc/1/oom_score_adj")
_ONE = ctypes.c_ulong(1)


def fd_flags(fn: Any, inputs: Any, call: Any, state: dict[str, Any]) -> Reply:
    """``set``: put O_NONBLOCK on every descriptor it has (raw fcntl: the audit hook's view
    of Python's ``fcntl`` is not the point); ``get``: which of its descriptors carry it."""
    found = []
    for fd in range(64):
        ret, _ = _raw(72, fd, 3)  # F_GETFL
        if ret == -1:
            continue
        if call.op == "set":
            if _raw(72, fd, 4, ret | os.O_NONBLOCK)[0] == 0:  # F_SETFL
                found.append(fd)
        elif ret & os.O_NONBLOCK:
            found.append(fd)
    return Reply(True, text=json.dumps(found))


def fit_then_score(host: Any, job: Any) -> dict[str, Any]:
    """A driver shaped like the fitter's: one process while "fitting" (it sets flags), a
    fresh one for "scoring" (it reports the flags it sees)."""
    fitting = host.open()
    flagged = json.loads(fitting.call("set").text)
    fitting.close()
    scoring = host.open()
    seen = json.loads(scoring.call("get").text)
    scoring.close()
    return {"text": json.dumps({"set": flagged, "seen": seen})}


def fork_bomb(fn: Any, inputs: Any, call: Any, state: dict[str, Any]) -> Reply:
    """Fork as often as it can (raw fork, then os.fork): the text is how many succeeded."""
    made = 0
    for _ in range(200):
        ret, _err = _raw(57)
        if ret == 0:
            os._exit(0)
        if ret > 0:
            made += 1
    return Reply(True, text=str(made))
