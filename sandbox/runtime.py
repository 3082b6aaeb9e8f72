"""What happens inside the short-lived process that runs one candidate.

The zygote forks a fresh child per candidate (so nothing a candidate does survives it),
and the child, before any candidate code exists in it:

* moves into its own process group, lowers its resource limits (address space, CPU time,
  file size, open files, core dumps, processes) and volunteers for the OOM killer;
* ``confine``: chroots into an empty read-only directory (no file on the machine, data
  included, can be named any more), drops to an unprivileged uid of its own (so
  ``RLIMIT_NPROC`` = 0 forbids any new process, and the zygote, the main process and other
  candidates cannot be signalled or ptraced), and asks to be killed if the zygote dies;
* installs an audit hook that refuses I/O, processes, sockets, imports, dynamic code and
  the introspection events CPython reports (``sys._getframe``, ``object.__getattr__`` for
  ``__code__``/``tb_frame``/``gi_frame``, ``gc.*``), and records every refusal so that a
  candidate which swallows the exception still fails with ``policy:runtime``;
* runs the module body with restricted builtins and a guarded ``__import__``. The code was
  compiled beforehand by the zygote (``compile_source``: compiling never executes), after
  every attribute read ``a.b`` was rewritten into a guarded lookup that refuses modules
  outside the allowlist (numpy and scipy keep references to ``inspect``, ``operator``,
  ``warnings``… that the static policy cannot see by name), frames, code objects,
  tracebacks, ctypes/cffi handles and the escape builtins;
* hands the resulting function to the trusted runner (the evaluator's fitter, or
  ``scoring.predict``).

Failures become ``CandidateFailure(reason, detail)``.
"""

from __future__ import annotations

import ast
import builtins
import ctypes
import importlib
import math
import os
import resource
import sys
import types
from collections.abc import Callable
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


_SAFE_BUILTIN_NAMES = (
    "abs", "all", "any", "bool", "complex", "dict", "divmod", "enumerate", "filter", "float",
    "frozenset", "int", "isinstance", "len", "list", "map", "max", "min", "pow", "print",
    "range", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
    "callable", "iter", "next", "repr", "chr", "ord", "hex", "bin", "oct", "hash",
    "issubclass", "format", "ascii", "bytes", "Ellipsis", "NotImplemented",
    "ArithmeticError", "AssertionError", "AttributeError", "Exception", "FloatingPointError",
    "IndexError", "KeyError", "LookupError", "NotImplementedError", "OverflowError",
    "RuntimeError", "StopIteration", "TypeError", "ValueError", "ZeroDivisionError",
    "True", "False", "None",
)

# Builtins and types that reach code execution, introspection or I/O; the attribute guard
# refuses them wherever they are found (a module attribute, a re-export…).
_ESCAPE_BUILTINS = tuple(
    getattr(builtins, name)
    for name in (
        "eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars",
        "getattr", "setattr", "delattr", "input", "breakpoint", "help", "dir", "id",
        "type", "object", "super", "memoryview", "classmethod", "staticmethod", "property",
        "exit", "quit",
    )
    if hasattr(builtins, name)
)

# Objects that expose frames, code or interpreter internals: refused by type.
_ESCAPE_TYPES = frozenset({
    types.FrameType, types.CodeType, types.TracebackType, types.CellType,
    types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType,
})

# Objects of types defined here are foreign-function or raw-memory handles.
_ESCAPE_TYPE_MODULES = frozenset({"ctypes", "_ctypes", "cffi", "_cffi_backend"})

# Module name parts the guard refuses even under an allowed package: raw memory access,
# file I/O, compilers and test helpers (which read files and frames).
RUNTIME_DENIED_MODULE_PARTS = frozenset({
    "ctypeslib", "testing", "f2py", "distutils", "stride_tricks", "npyio", "format",
    "_datasource", "_npyio_impl", "_format_impl", "_stride_tricks_impl", "_utils_impl",
    "utils", "_internal", "multiarray", "ctypes", "os", "sys", "io", "mmap",
})

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

GUARD_NAME = "__eqforge_attr__"  # a dunder: the policy forbids candidates from naming it

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38


class ModuleGate:
    """Which modules a candidate may reach: the import allowlist minus denied parts."""

    def __init__(self, allowed: tuple[str, ...], denied_parts: frozenset[str] = RUNTIME_DENIED_MODULE_PARTS):
        self.allowed = tuple(allowed)
        self.denied_parts = denied_parts
        self._cache: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        ok = self._cache.get(name)
        if ok is None:
            ok = any(name == a or name.startswith(a + ".") for a in self.allowed) and not any(
                part in self.denied_parts for part in name.split(".")[1:]
            )
            self._cache[name] = ok
        return ok


def _is_escape_type(t: type) -> bool:
    """Frames, code, tracebacks, generators, and anything from ctypes or cffi."""
    if t in _ESCAPE_TYPES:
        return True
    module = str(getattr(t, "__module__", "") or "")
    if module.split(".")[0] in _ESCAPE_TYPE_MODULES:
        return True
    return module == "numpy._core._internal" and t.__name__ == "_ctypes"


def make_attribute_guard(
    gate: ModuleGate, violations: list[str] | None = None
) -> Callable[[Any, str], Any]:
    """``guard(obj, name)``: ``getattr`` that refuses what leads out of the sandbox.

    Refusals are appended to ``violations`` (when given) so that a candidate catching the
    exception is still reported.
    """
    module_type = types.ModuleType
    builtin_type = types.BuiltinFunctionType
    escape_values = frozenset(_ESCAPE_BUILTINS)
    record = violations if violations is not None else []
    escape_type: dict[type, bool] = {}  # classification cache: one dict lookup per access
    # Module attributes that passed, by (module, name): ``np.exp`` is read on every call
    # of a candidate, hundreds of times per fit. Candidates cannot rebind module
    # attributes (the policy rejects the assignment, and ``setattr`` is not a builtin here).
    allowed_module_attrs: dict[tuple[Any, str], Any] = {}

    def refuse(what: str) -> SandboxViolation:
        if len(record) < 20:
            record.append(what)
        return SandboxViolation(f"blocked: {what}")

    def guard(obj: Any, name: str) -> Any:
        from_module = type(obj) is module_type
        if from_module:
            value = allowed_module_attrs.get((obj, name), refuse)
            if value is not refuse:
                return value
        if name[:1] == "_":
            raise refuse(f"attribute .{name}")
        value = getattr(obj, name)
        t = type(value)
        bad = escape_type.get(t)
        if bad is None:
            bad = escape_type[t] = _is_escape_type(t)
        if bad:
            raise refuse(f"{t.__name__} (.{name})")
        if t is module_type:
            if not gate(value.__name__):
                raise refuse(f"module {value.__name__} (.{name})")
        elif (t is builtin_type or t is type) and value in escape_values:
            raise refuse(f"builtin .{name}")
        if from_module:
            allowed_module_attrs[(obj, name)] = value
        return value

    return guard


class _GuardAttributes(ast.NodeTransformer):
    """Rewrite each attribute read ``a.b`` into ``__eqforge_attr__(a, "b")``."""

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if not isinstance(node.ctx, ast.Load):
            return node  # stores and deletes are rejected by the policy
        call = ast.Call(
            func=ast.Name(GUARD_NAME, ast.Load()),
            args=[node.value, ast.Constant(node.attr)],
            keywords=[],
        )
        return ast.copy_location(call, node)


def _make_guarded_import(
    gate: ModuleGate, guard: Callable[[Any, str], Any], violations: list[str]
) -> Callable[..., Any]:
    def guarded(name: str, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        # ``from scipy import special``: the package is reachable only for allowed submodules.
        submodules_ok = bool(fromlist) and all(
            isinstance(item, str) and gate(f"{name}.{item}") and f"{name}.{item}" in sys.modules
            for item in fromlist
        )
        if level or not (gate(name) or submodules_ok):
            if len(violations) < 20:
                violations.append(f"import {name}")
            raise ImportError(f"import of {name!r} is not allowed in equations")
        module = sys.modules.get(name)
        if module is None:
            raise ImportError(f"module {name!r} is not preloaded in the sandbox")
        if fromlist:
            for item in fromlist:
                if not isinstance(item, str):
                    raise ImportError("bad import")
                try:
                    guard(module, item)  # ``from m import x`` must obey the same guard
                except AttributeError:
                    pass  # the import itself will raise ImportError
                except SandboxViolation:
                    raise ImportError(f"importing {item!r} from {name!r} is not allowed") from None
            return module
        return sys.modules[name.split(".")[0]]

    return guarded


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


def install_audit_hook(report_fd: int | None = None) -> Callable[..., None]:
    """Block dangerous events; returns ``arm(on, allow_exec)``.

    Every refused event is written at once to ``report_fd`` (a pipe whose other end the
    trusted zygote holds), so what a candidate was refused is on record outside its reach
    even if it later clears ``arm.violations`` or swallows the exception. Once armed with
    ``allow_exec`` the hook allows exactly that one ``exec`` of the candidate's module body.
    """
    state: dict[str, Any] = {"armed": False, "exec_allowed": 0}
    violations: list[str] = []
    blocked_exact = frozenset(p for p in _BLOCKED_EVENTS if not p.endswith("."))
    blocked_prefixes = tuple(p for p in _BLOCKED_EVENTS if p.endswith("."))
    write = os.write

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not state["armed"]:
            return
        if event == "exec" and state["exec_allowed"] > 0:
            state["exec_allowed"] -= 1
            return
        if event in blocked_exact or event.startswith(blocked_prefixes):
            if len(violations) < 20:
                violations.append(event)
            if report_fd is not None:
                try:
                    write(report_fd, (event[:80] + "\n").encode())
                except OSError:
                    pass
            raise SandboxViolation(f"blocked: {event}")

    sys.addaudithook(hook)

    def arm(on: bool, allow_exec: int = 0) -> None:
        state["armed"] = on
        state["exec_allowed"] = allow_exec

    arm.violations = violations  # type: ignore[attr-defined]
    return arm


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


MAX_SOURCE_CHARS = 200_000  # the policy allows far less; this guards direct pool users


def import_names(tree: ast.AST) -> list[str]:
    """The modules (and ``from`` items that may be modules) a parsed program imports."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def compile_source(code: str, guard_attributes: bool = True, imports: list[str] | None = None) -> types.CodeType:
    """Parse, rewrite attribute reads into guarded lookups, and compile; never executes.

    Done once per job in the zygote (compiling is not running), so both children of a job
    inherit the code object instead of paying a copy-on-write-heavy compile each.
    """
    if len(code) > MAX_SOURCE_CHARS:
        raise CandidateFailure("policy:size", f"program has {len(code)} characters")
    try:
        tree = ast.parse(code, "<candidate>")
        if imports is not None:
            imports[:] = import_names(tree)  # for the scorer, which imports them before forking
        if guard_attributes:
            tree = ast.fix_missing_locations(_GuardAttributes().visit(tree))
        return compile(tree, "<candidate>", "exec")
    except SyntaxError as exc:
        raise CandidateFailure("syntax", f"{exc.msg} (line {exc.lineno})") from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise CandidateFailure("syntax", f"cannot compile: {type(exc).__name__}: {exc}") from None


def candidate_namespace(allowed_imports: tuple[str, ...], arm: Callable[..., None] | None) -> dict[str, Any]:
    """The globals a candidate's module body runs in: restricted builtins, guarded imports."""
    gate = ModuleGate(allowed_imports)
    violations: list[str] = getattr(arm, "violations", [])
    guard = make_attribute_guard(gate, violations)
    safe = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES if hasattr(builtins, name)}
    safe["__import__"] = _make_guarded_import(gate, guard, violations)
    return {
        "__builtins__": safe,
        "__name__": "candidate",
        "np": np,
        "numpy": np,
        "math": math,
        GUARD_NAME: guard,
    }


def load_candidate(
    code_obj: types.CodeType,
    entry: str,
    allowed_imports: tuple[str, ...],
    arm: Callable[..., None] | None,
    namespace: dict[str, Any] | None = None,
) -> Callable[..., Any]:
    """Execute the module body with restricted builtins (hook armed), return ``entry``.

    ``namespace``, from ``candidate_namespace`` with the same ``arm``, may be built ahead.
    """
    if namespace is None:
        namespace = candidate_namespace(allowed_imports, arm)
    if arm is not None:
        arm(True, allow_exec=1)  # from here on, only this one exec is allowed
    exec(code_obj, namespace)  # noqa: S102 - the whole point: isolated, policed, limited
    fn = namespace.get(entry)
    if not callable(fn):
        raise CandidateFailure("parse:no-equation", f"no function named {entry!r}")
    return fn


def compile_candidate(
    code: str,
    entry: str,
    allowed_imports: tuple[str, ...],
    arm: Callable[..., None] | None,
    guard_attributes: bool = True,
) -> Callable[..., Any]:
    """``compile_source`` then ``load_candidate``, in the calling process."""
    return load_candidate(compile_source(code, guard_attributes), entry, allowed_imports, arm)
