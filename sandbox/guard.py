"""The attribute guard: every attribute read of a candidate goes through a trusted lookup.

Inside each candidate process, the module body runs with restricted builtins and a guarded
``__import__``. The code was compiled beforehand by the zygote (``compile_source``:
compiling never executes), after every attribute read ``a.b`` was rewritten into a guarded
lookup that refuses private names, modules outside the allowlist (numpy and scipy keep
references to ``inspect``, ``operator``, ``warnings``… that the static policy cannot see by
name), frames, code objects, tracebacks, cells, generators, ctypes/cffi handles and the
escape builtins.

The rewrite can only guard the attribute reads it sees, so ``compile_source`` is itself an
allowlist: it compiles only programs made of the syntax forms in ``GUARDED_NODES`` — forms
whose every attribute access is an explicit ``ast.Attribute`` load, which it rewrites. A
form that reads attributes another way (a ``match`` class pattern ``case C(attr=x)`` calls
``getattr`` by name; an attribute store or delete calls ``setattr``/``delattr``) or one
added to Python after this list was written is refused with ``policy:runtime`` before it
runs, whatever the static policy said.
"""

from __future__ import annotations

import ast
import builtins
import math
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from eqforge.sandbox.runtime import CandidateFailure, SandboxViolation

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

GUARD_NAME = "__eqforge_attr__"  # a dunder: the policy forbids candidates from naming it

# The syntax forms the rewrite knows: in these, every attribute read is an ``ast.Attribute``
# in ``Load`` context (rewritten into a guarded call), and no other attribute access by
# name happens. Reviewed for Python 3.11-3.13; anything else is refused.
GUARDED_NODES: frozenset[type] = frozenset({
    ast.Module, ast.FunctionDef, ast.ClassDef, ast.Return, ast.Delete, ast.Assign, ast.AugAssign,
    ast.AnnAssign, ast.For, ast.While, ast.If, ast.With, ast.Raise, ast.Try, ast.Assert, ast.Import,
    ast.ImportFrom, ast.Global, ast.Nonlocal, ast.Expr, ast.Pass, ast.Break, ast.Continue,
    ast.BoolOp, ast.NamedExpr, ast.BinOp, ast.UnaryOp, ast.Lambda, ast.IfExp, ast.Dict, ast.Set,
    ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Yield, ast.YieldFrom, ast.Compare,
    ast.Call, ast.FormattedValue, ast.JoinedStr, ast.Constant, ast.Attribute, ast.Subscript,
    ast.Starred, ast.Name, ast.List, ast.Tuple, ast.Slice,
    ast.Load, ast.Store, ast.Del, ast.And, ast.Or,
    ast.Add, ast.Sub, ast.Mult, ast.MatMult, ast.Div, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
    ast.BitOr, ast.BitXor, ast.BitAnd, ast.FloorDiv, ast.Invert, ast.Not, ast.UAdd, ast.USub,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn,
    ast.comprehension, ast.ExceptHandler, ast.arguments, ast.arg, ast.keyword, ast.alias, ast.withitem,
})

# Methods that read attributes by a name written in a string ("{0.__class__}".format(x)).
_FORMAT_METHODS = frozenset({"format", "format_map"})


def unguarded_form(tree: ast.AST) -> str | None:
    """Why the rewrite cannot guard ``tree`` (a syntax form it does not know, an attribute
    store or delete, a name of the guard's own), or None."""
    for node in ast.walk(tree):
        kind = type(node)
        if kind not in GUARDED_NODES:
            return f"syntax {kind.__name__} (line {getattr(node, 'lineno', 0)}) is not open to equations"
        if kind is ast.Attribute and type(node.ctx) is not ast.Load:  # type: ignore[attr-defined]
            return f"assignment to .{node.attr} (line {node.lineno})"  # type: ignore[attr-defined]
        if kind is ast.Name and node.id[:2] == "__" and node.id[-2:] == "__":  # type: ignore[attr-defined]
            return f"name {node.id} (line {node.lineno})"  # type: ignore[attr-defined]
    return None


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
        if name in _FORMAT_METHODS and isinstance(obj, str):
            raise refuse(f"str.{name} (reads attributes named in the string)")
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
    """Parse, refuse what the rewrite cannot guard, rewrite attribute reads into guarded
    lookups, and compile; never executes.

    Done once per job in the zygote (compiling is not running), so both children of a job
    inherit the code object instead of paying a copy-on-write-heavy compile each.
    """
    if len(code) > MAX_SOURCE_CHARS:
        raise CandidateFailure("policy:size", f"program has {len(code)} characters")
    try:
        tree = ast.parse(code, "<candidate>")
        if imports is not None:
            imports[:] = import_names(tree)  # for the factory, which imports them before forking
        if guard_attributes:
            why = unguarded_form(tree)
            if why is not None:
                raise CandidateFailure("policy:runtime", f"unguarded: {why}")
            tree = ast.fix_missing_locations(_GuardAttributes().visit(tree))
        return compile(tree, "<candidate>", "exec")
    except SyntaxError as exc:
        raise CandidateFailure("syntax", f"{exc.msg} (line {exc.lineno})") from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise CandidateFailure("syntax", f"cannot compile: {type(exc).__name__}: {exc}") from None


def candidate_namespace(allowed_imports: tuple[str, ...], violations: list[str] | None = None) -> dict[str, Any]:
    """The globals a candidate's module body runs in: restricted builtins, guarded imports.

    Refusals are appended to ``violations`` (the audit hook's in-process record, when there
    is one)."""
    gate = ModuleGate(allowed_imports)
    record: list[str] = [] if violations is None else violations
    guard = make_attribute_guard(gate, record)
    safe = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES if hasattr(builtins, name)}
    safe["__import__"] = _make_guarded_import(gate, guard, record)
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
    violations: list[str] | None = None,
    namespace: dict[str, Any] | None = None,
) -> Callable[..., Any]:
    """Execute the module body with restricted builtins, return ``entry``.

    Under the audit hook, ``code_obj`` must be one the hook was installed to allow.
    ``namespace``, from ``candidate_namespace``, may be built ahead.
    """
    if namespace is None:
        namespace = candidate_namespace(allowed_imports, violations)
    exec(code_obj, namespace)  # noqa: S102 - the whole point: isolated, policed, limited
    fn = namespace.get(entry)
    if not callable(fn):
        raise CandidateFailure("parse:no-equation", f"no function named {entry!r}")
    return fn


def compile_candidate(
    code: str,
    entry: str,
    allowed_imports: tuple[str, ...],
    violations: list[str] | None = None,
    guard_attributes: bool = True,
) -> Callable[..., Any]:
    """``compile_source`` then ``load_candidate``, in the calling process (no audit hook)."""
    return load_candidate(compile_source(code, guard_attributes), entry, allowed_imports, violations)
