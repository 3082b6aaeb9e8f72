"""What happens inside the short-lived process that runs one candidate.

The zygote forks a fresh child per candidate (so nothing a candidate does survives it),
and the child: moves into its own process group, applies resource limits, closes the
door on I/O, processes, sockets and introspection with an audit hook, compiles the
candidate with restricted builtins and hands the resulting function to the trusted runner
(e.g. the evaluator's fitter). Failures become ``CandidateFailure(reason, detail)``.
"""

from __future__ import annotations

import builtins
import importlib
import math
import resource
import sys
from collections.abc import Callable
from typing import Any

import numpy as np


class CandidateFailure(Exception):
    """A candidate failed in a way with a machine-readable reason (``nonfinite``, ``shape``…)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_SAFE_BUILTIN_NAMES = (
    "abs", "all", "any", "bool", "complex", "dict", "divmod", "enumerate", "filter", "float",
    "frozenset", "int", "isinstance", "len", "list", "map", "max", "min", "pow", "print",
    "range", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
    "ArithmeticError", "AssertionError", "Exception", "FloatingPointError", "IndexError",
    "KeyError", "NotImplementedError", "OverflowError", "RuntimeError", "TypeError",
    "ValueError", "ZeroDivisionError", "True", "False", "None",
)

# Audit events a candidate must never trigger (checked by prefix). Raising from the hook
# aborts the operation before it happens.
_BLOCKED_EVENTS = (
    "open", "os.", "subprocess.", "socket.", "shutil.", "ctypes.", "sys._getframe",
    "sys._current_frames", "sys.setrecursionlimit", "sys.settrace", "sys.setprofile",
    "sys.addaudithook", "gc.", "marshal.", "pickle.", "code.__new__", "function.__new__",
    "compile", "exec", "urllib.", "http.", "ftplib.", "smtplib.", "webbrowser.",
    "signal.", "resource.setrlimit", "import", "object.__getattr__", "object.__setattr__",
    "object.__delattr__", "sqlite3.", "mmap.", "fcntl.", "syslog.", "pty.", "winreg.",
    "builtins.input", "builtins.breakpoint", "cpython.", "sys.monitoring",
)


class SandboxViolation(PermissionError):
    """Raised by the audit hook when a candidate attempts a blocked operation."""


def _make_guarded_import(allowed: tuple[str, ...]) -> Callable[..., Any]:
    real_import = builtins.__import__

    def guarded(name: str, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        if level or not any(name == a or name.startswith(a + ".") for a in allowed):
            raise ImportError(f"import of {name!r} is not allowed in equations")
        module = sys.modules.get(name)
        if module is None:
            raise ImportError(f"module {name!r} is not preloaded in the sandbox")
        if fromlist:
            return module
        return sys.modules[name.split(".")[0]]

    del real_import
    return guarded


def preload(modules: tuple[str, ...]) -> None:
    """Import allowed modules in the zygote so candidates never trigger imports."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    # numpy loads some submodules lazily on attribute access; touch the common ones.
    for sub in ("linalg", "fft", "polynomial", "random", "ma", "emath"):
        getattr(np, sub, None)


def apply_limits(memory_bytes: int | None, cpu_seconds: int, max_open_files: int = 64) -> None:
    """Per-process limits, set in the child so the zygote keeps its own."""
    def setlim(kind: int, value: int) -> None:
        try:
            soft, hard = resource.getrlimit(kind)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(kind, (value, hard if hard != resource.RLIM_INFINITY else value))
        except (ValueError, OSError):
            pass

    if memory_bytes:
        setlim(resource.RLIMIT_AS, _current_vm_bytes() + memory_bytes)
    setlim(resource.RLIMIT_CPU, max(1, cpu_seconds))
    setlim(resource.RLIMIT_FSIZE, 1 << 20)
    setlim(resource.RLIMIT_NOFILE, max_open_files)
    setlim(resource.RLIMIT_CORE, 0)
    setlim(resource.RLIMIT_NPROC, 0)  # effective for non-root; root relies on the pids cgroup


def _current_vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * resource.getpagesize()
    except OSError:
        return 0


def install_audit_hook() -> Callable[..., None]:
    """Block dangerous events; returns a switch so trusted code can run one exec first."""
    state = {"armed": False, "exec_allowed": 0}

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not state["armed"]:
            return
        if event == "exec" and state["exec_allowed"] > 0:
            state["exec_allowed"] -= 1
            return
        for prefix in _BLOCKED_EVENTS:
            if event == prefix or (prefix.endswith(".") and event.startswith(prefix)):
                raise SandboxViolation(f"blocked: {event}")

    sys.addaudithook(hook)

    def arm(on: bool, allow_exec: int = 0) -> None:
        state["armed"] = on
        state["exec_allowed"] = allow_exec

    return arm


def compile_candidate(
    code: str, entry: str, allowed_imports: tuple[str, ...], arm: Callable[..., None]
) -> Callable[..., Any]:
    """Compile the candidate with restricted builtins, arm the audit hook, return ``entry``."""
    safe = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES if hasattr(builtins, name)}
    safe["__import__"] = _make_guarded_import(allowed_imports)
    namespace: dict[str, Any] = {
        "__builtins__": safe,
        "__name__": "candidate",
        "np": np,
        "numpy": np,
        "math": math,
    }
    try:
        code_obj = compile(code, "<candidate>", "exec")
    except SyntaxError as exc:
        raise CandidateFailure("syntax", f"{exc.msg} (line {exc.lineno})") from None
    arm(True, allow_exec=1)  # from here on, only this one exec is allowed
    exec(code_obj, namespace)  # noqa: S102 - the whole point: isolated, policed, limited
    fn = namespace.get(entry)
    if not callable(fn):
        raise CandidateFailure("parse:no-equation", f"no function named {entry!r}")
    return fn
