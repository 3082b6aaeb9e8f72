"""What happens inside the short-lived process that runs one candidate.

The zygote forks a fresh child per candidate (so nothing a candidate does survives it),
and the child, before any candidate code exists in it:

* moves into its own process group, lowers its resource limits (address space, CPU time,
  file size, open files, core dumps, processes) and volunteers for the OOM killer;
* ``confine``: chroots into an empty read-only directory (no file on the machine, data
  included, can be named any more), drops to an unprivileged uid of its own (so
  ``RLIMIT_NPROC`` = 0 forbids any new process, and the zygote, the main process and other
  candidates cannot be signalled or ptraced), and asks to be killed if the zygote dies;
* installs the seccomp filter (``seccomp``: an allowlist of system calls);
* installs an audit hook, armed for good from that moment (no switch exists, so candidate
  code cannot turn it off), that refuses I/O, processes, sockets, imports, dynamic code and
  the introspection events CPython reports (``sys._getframe``, ``object.__getattr__`` for
  ``__code__``/``tb_frame``/``gi_frame``, ``gc.*``), and records every refusal on a pipe
  the zygote reads, so that a candidate which swallows the exception still fails with
  ``policy:runtime``;
* runs the module body under the attribute guard (``guard``) and hands the resulting
  function to the trusted runner (the evaluator's ``predict.serve``).

Failures become ``CandidateFailure(reason, detail)``.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import resource
import sys
import types
from typing import Any

import numpy as np


class CandidateFailure(Exception):
    """A candidate failed in a way with a machine-readable reason (``nonfinite``, ``shape``…)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SandboxViolation(PermissionError):
    """Raised by the audit hook or the attribute guard when a candidate oversteps."""


# Audit events a candidate must never trigger (checked by prefix). Raising from the hook
# aborts the operation before it happens.
_BLOCKED_EVENTS = (
    "open", "os.", "subprocess.", "socket.", "shutil.", "ctypes.", "sys._getframe",
    "sys._current_frames", "sys.setrecursionlimit", "sys.settrace", "sys.setprofile",
    "sys.addaudithook", "sys._clear_type_cache", "gc.", "marshal.", "pickle.",
    "code.__new__", "function.__new__", "compile", "exec", "urllib.", "http.", "ftplib.",
    "smtplib.", "webbrowser.", "signal.", "resource.", "import", "object.__getattr__",
    "object.__setattr__", "object.__delattr__", "sqlite3.", "mmap.", "fcntl.", "syslog.",
    "pty.", "winreg.", "builtins.input", "builtins.breakpoint", "cpython.",
    "sys.monitoring", "glob.", "tempfile.", "msvcrt.", "_posixsubprocess.",
)

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38


def preload(modules: tuple[str, ...]) -> None:
    """Import allowed modules in the zygote so candidates never trigger imports."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    # numpy loads some submodules lazily on attribute access; touch the common ones.
    for sub in ("linalg", "fft", "polynomial", "random", "ma", "emath", "char", "rec", "strings"):
        getattr(np, sub, None)


def limit_plan(memory_bytes: int | None, cpu_seconds: int, max_open_files: int = 64) -> list[tuple[int, int]]:
    """The rlimits a child sets, worked out in the zygote (cheaper there than in each child).

    Address space: what the process maps now plus ``memory_bytes``. No file may grow past
    64 KiB, no core dumps, no locked memory or message queues, at most ``max_open_files``
    descriptors and no new process (``RLIMIT_NPROC`` counts per uid, so it bites once the
    child runs as its unprivileged uid; root would ignore it).
    """
    wanted = [
        (resource.RLIMIT_CPU, max(1, cpu_seconds)),
        (resource.RLIMIT_FSIZE, 1 << 16),
        (resource.RLIMIT_NOFILE, max_open_files),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, 0),
        (resource.RLIMIT_MEMLOCK, 0),
        (resource.RLIMIT_MSGQUEUE, 0),
    ]
    if memory_bytes:
        wanted.insert(0, (resource.RLIMIT_AS, _current_vm_bytes() + memory_bytes))
    plan = []
    for kind, value in wanted:
        try:
            hard = resource.getrlimit(kind)[1]
        except (ValueError, OSError):
            continue
        plan.append((kind, value if hard == resource.RLIM_INFINITY else min(value, hard)))
    return plan


def set_limits(plan: list[tuple[int, int]]) -> None:
    """Apply a ``limit_plan`` (soft = hard, so the candidate cannot raise them again)."""
    for kind, value in plan:
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass


def apply_limits(memory_bytes: int | None, cpu_seconds: int, max_open_files: int = 64) -> None:
    """Per-process limits, set in the child so the zygote keeps its own."""
    set_limits(limit_plan(memory_bytes, cpu_seconds, max_open_files))


def _current_vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * resource.getpagesize()
    except OSError:
        return 0


_OOM_SCORE_FILE = "/proc/self/oom_score_adj"


def set_oom_score(value: int) -> bool:
    """Make this process the OOM killer's first (1000) or last (-1000) choice."""
    try:
        fd = os.open(_OOM_SCORE_FILE, os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, str(value).encode())
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


_libc: Any = None


def libc() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def confine(jail: str | None, uid: int | None, parent: int) -> None:
    """Chroot into ``jail``, drop to ``uid``, die with ``parent``. Raises OSError if refused."""
    if jail:
        os.chroot(jail)
        os.chdir("/")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    lib = libc()
    lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # Set after the uid change (which clears it); then close the race with the parent's death.
    lib.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(71)


def install_audit_hook(report_fd: int | None = None, allow_exec: tuple[types.CodeType, ...] = ()) -> list[str]:
    """Install the hook, armed from this moment for the life of the process; returns its
    in-process record of refusals.

    The hook allows ``exec`` only of the code objects in ``allow_exec`` (the candidate's
    module body, compiled by the trusted zygote), by identity. It has no switch: there is no
    armed flag, no counter, nothing mutable it consults, so no Python code in the process —
    whatever it reaches, frames included — can turn it off. What it checks comes from its
    own constants and default arguments (bound afresh on every call from a function nobody
    holds a reference to: only the interpreter's hook list does); refusals are written at
    once to ``report_fd`` (a pipe whose other end the trusted zygote holds), so the record is
    outside the candidate's reach even if it clears the returned list or swallows the
    exception.
    """
    violations: list[str] = []

    def hook(event: str, args: tuple[Any, ...], _allowed: tuple[Any, ...] = tuple(allow_exec),
             _record: list[str] = violations, _fd: int | None = report_fd, _write: Any = os.write,
             _exact: frozenset[str] = frozenset(p for p in _BLOCKED_EVENTS if not p.endswith(".")),
             _prefixes: tuple[str, ...] = tuple(p for p in _BLOCKED_EVENTS if p.endswith(".")),
             _refusal: type[Exception] = SandboxViolation, _oserror: type[Exception] = OSError) -> None:
        # No global or builtin name is looked up here (those dictionaries are reachable and
        # writable from a frame); only arguments, literals and methods of built-in types.
        if event == "exec" and args:
            for code in _allowed:
                if args[0] is code:
                    return
        if event in _exact or event.startswith(_prefixes):
            if _record.__len__() < 20:
                _record.append(event)
            if _fd is not None:
                try:
                    _write(_fd, (event[:80] + "\n").encode())
                except _oserror:
                    pass
            raise _refusal("blocked: " + event)

    sys.addaudithook(hook)
    return violations


def failure_reply(exc: BaseException) -> Any:
    """The ``messages.Reply`` a candidate process sends for an exception in candidate code."""
    from eqforge.sandbox.messages import Reply

    if isinstance(exc, CandidateFailure):
        return Reply(False, reason=exc.reason, detail=exc.detail[:500])
    if isinstance(exc, MemoryError):
        return Reply(False, reason="memory", detail="memory limit reached")
    if isinstance(exc, RecursionError):
        return Reply(False, reason="exception:RecursionError", detail="recursion too deep")
    if isinstance(exc, SandboxViolation):
        return Reply(False, reason="policy:runtime", detail=str(exc)[:500])
    return Reply(False, reason=f"exception:{type(exc).__name__}"[:64], detail=str(exc)[:500])


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


PR_CAPBSET_DROP = 24


def drop_capabilities() -> None:
    """Drop every capability (bounding set, then effective/permitted/inheritable).

    For candidates that keep uid 0 — inside a user namespace, where no other uid is mapped.
    """
    lib = libc()
    for cap in range(64):
        if lib.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:
            break  # EINVAL: past the last capability
    data = (_CapData * 2)()
    if lib.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset refused")


