"""The program policy: what a candidate may contain, checked on its AST before it runs.

An equation needs arithmetic, numpy/math functions and perhaps a helper function. It never
needs I/O, introspection, dunder attributes, dynamic code or global state, so those are
rejected with a ``policy:<rule>`` reason before any code executes. The syntax itself is an
allowlist (``ALLOWED_NODES``): a form not reviewed for what it can reach is refused. The policy is data
(a pydantic model) so a problem can widen it, e.g. allow another import.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

DEFAULT_IMPORTS = (
    "numpy",
    "math",
    "cmath",
    "scipy.special",
    "scipy.constants",
    "numpy.polynomial",
)

# Builtins that let a program escape the equation: code execution, introspection, I/O.
DENIED_CALLS = (
    "eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars",
    "getattr", "setattr", "delattr", "input", "breakpoint", "memoryview", "help",
    "exit", "quit", "type", "object", "super", "classmethod", "staticmethod", "property",
    "dir", "id", "hasattr",
)

# Attributes that reach frames, code, the interpreter or the file system, whatever the
# object: introspection (frames, tracebacks, generators), array internals and numpy I/O.
DENIED_ATTRIBUTES = (
    "f_back", "f_locals", "f_globals", "f_builtins", "f_code", "f_trace", "f_lineno",
    "tb_frame", "tb_next", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame",
    "ag_code", "co_code", "co_consts", "func_globals", "mro",
    "format", "format_map", "register_at_fork",
    "tofile", "dump", "dumps", "ctypes", "setflags", "flags", "base", "data",
    "load", "loads", "loadtxt", "genfromtxt", "fromfile", "fromregex", "save", "savez",
    "savez_compressed", "savetxt", "memmap", "DataSource", "lib", "f2py", "distutils",
    "testing", "ctypeslib", "os", "sys", "builtins", "set_printoptions", "seterr",
    "seterrcall", "geterrobj", "seterrobj", "show_config", "info", "source", "who",
    "_core", "core", "frombuffer", "from_dlpack",
    # more introspection handles, raw-memory and foreign-function doors
    "cell_contents", "f_trace_lines", "f_trace_opcodes", "gi_yieldfrom", "cr_await",
    "ag_await", "co_names", "co_varnames", "co_filename", "tb_lasti", "tb_lineno",
    "func_closure", "func_code", "im_func", "im_self", "cffi", "stride_tricks", "as_strided",
    "npyio", "subclasses",
    # file access reachable from numpy's public namespaces
    "fromtextfile", "open_memmap", "read_array", "write_array", "NpzFile", "openfile",
    "load_library", "temppath", "tempfile", "pathlib", "fileinput", "build_and_import_extension",
)


_DUNDER_TEXT = re.compile(r"__[A-Za-z]\w*__")

# The syntax an equation may use: an allowlist, so a form added to Python later (or one not
# reviewed, like ``match`` statements, whose class patterns read attributes by name) is
# refused as ``policy:syntax-form`` until it has been reviewed and listed here. Forms with
# a rule of their own (``global``, classes, async code, generators) are in ``_RULED``.
ALLOWED_NODES: frozenset[type] = frozenset({
    ast.Module, ast.FunctionDef, ast.Return, ast.Delete, ast.Assign, ast.AugAssign, ast.AnnAssign,
    ast.For, ast.While, ast.If, ast.With, ast.Raise, ast.Try, ast.Assert, ast.Import, ast.ImportFrom,
    ast.Expr, ast.Pass, ast.Break, ast.Continue,
    ast.BoolOp, ast.NamedExpr, ast.BinOp, ast.UnaryOp, ast.Lambda, ast.IfExp, ast.Dict, ast.Set,
    ast.ListComp, ast.SetComp, ast.DictComp, ast.Compare, ast.Call, ast.FormattedValue, ast.JoinedStr,
    ast.Constant, ast.Attribute, ast.Subscript, ast.Starred, ast.Name, ast.List, ast.Tuple, ast.Slice,
    ast.Load, ast.Store, ast.Del, ast.And, ast.Or,
    ast.Add, ast.Sub, ast.Mult, ast.MatMult, ast.Div, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
    ast.BitOr, ast.BitXor, ast.BitAnd, ast.FloorDiv, ast.Invert, ast.Not, ast.UAdd, ast.USub,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn,
    ast.comprehension, ast.ExceptHandler, ast.arguments, ast.arg, ast.keyword, ast.alias, ast.withitem,
})
_RULED: frozenset[type] = frozenset({
    ast.Global, ast.Nonlocal, ast.ClassDef, ast.AsyncFunctionDef, ast.Await, ast.Yield, ast.YieldFrom,
    ast.GeneratorExp,
})


class Policy(BaseModel):
    """What candidates may do. Widen per problem with ``allowed_imports``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_imports: tuple[str, ...] = DEFAULT_IMPORTS
    denied_calls: tuple[str, ...] = DENIED_CALLS
    denied_attributes: tuple[str, ...] = DENIED_ATTRIBUTES
    allow_classes: bool = False
    allow_async: bool = False
    max_source_chars: int = 20_000
    # A program must not carry data back: the agent's analyze tool shows the model the
    # training targets, and a table of them written into a program would score perfectly.
    # Honest skeletons hold a dozen literals (params indices, exponents, a few constants).
    max_literals: int = 64  # numeric (and boolean) constants in the program
    max_literal_chars: int = 640  # their total size, as written by repr
    max_string_chars: int = 512  # strings other than docstrings, in total

    def widened(self, imports: tuple[str, ...] | list[str]) -> Policy:
        return self.model_copy(
            update={"allowed_imports": tuple(dict.fromkeys([*self.allowed_imports, *imports]))}
        )

    def import_allowed(self, module: str) -> bool:
        return any(
            module == allowed or module.startswith(allowed + ".")
            for allowed in self.allowed_imports
        )


@dataclass(frozen=True)
class Violation:
    rule: str
    detail: str
    line: int = 0

    @property
    def reason(self) -> str:
        return "syntax" if self.rule == "syntax" else f"policy:{self.rule}"


class _Checker(ast.NodeVisitor):
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.violations: list[Violation] = []
        self.literals = self.literal_chars = self.string_chars = 0
        self.docstrings: set[int] = set()

    def literal_violation(self) -> Violation | None:
        """The bound on the data a program may carry in its constants."""
        p = self.policy
        hint = "programs may not carry data tables; fitted constants belong in params"
        if self.literals > p.max_literals:
            return Violation("literals", f"{self.literals} numeric literals (at most {p.max_literals}): {hint}")
        if self.literal_chars > p.max_literal_chars:
            return Violation("literals", f"numeric literals of {self.literal_chars} characters in total "
                             f"(at most {p.max_literal_chars}): {hint}")
        if self.string_chars > p.max_string_chars:
            return Violation("literals", f"string constants of {self.string_chars} characters in total "
                             f"(at most {p.max_string_chars}, docstrings aside): {hint}")
        return None

    def flag(self, rule: str, detail: str, node: ast.AST) -> None:
        self.violations.append(Violation(rule, detail, getattr(node, "lineno", 0)))

    # imports -------------------------------------------------------------------------
    def _module_path_ok(self, module: str) -> bool:
        """Allowed root, and no private or denied part (``numpy.lib.stride_tricks``)."""
        if not self.policy.import_allowed(module):
            return False
        parts = module.split(".")[1:]
        return not any(p.startswith("_") or p in self.policy.denied_attributes for p in parts)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not self._module_path_ok(alias.name):
                self.flag("import", f"import {alias.name} is not allowed", node)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        # ``from scipy import special`` names allowed submodules of a package that is not
        # itself allowed: fine when every imported name is an allowed module path.
        submodules_ok = all(self._module_path_ok(f"{module}.{a.name}") for a in node.names)
        if node.level or not (self._module_path_ok(module) or submodules_ok):
            self.flag("import", f"from {module} import ... is not allowed", node)
        for alias in node.names:
            if alias.name == "*":
                self.flag("import", "star imports are not allowed", node)
            elif alias.name.startswith("_"):
                self.flag("import", f"importing private name {alias.name}", node)
            elif alias.name in self.policy.denied_attributes or alias.name in self.policy.denied_calls:
                self.flag("import", f"importing {alias.name} is not allowed", node)
        self.generic_visit(node)

    # names and attributes --------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if node.id.startswith("__") and node.id.endswith("__"):
            self.flag("dunder", f"name {node.id}", node)
        elif node.id in self.policy.denied_calls:
            self.flag("builtin", f"{node.id} is not allowed", node)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_"):
            self.flag("dunder", f"private attribute .{node.attr}", node)
        elif node.attr in self.policy.denied_attributes:
            self.flag("attribute", f"attribute .{node.attr} is not allowed", node)
        if isinstance(node.ctx, ast.Store | ast.Del):
            # Equations never need it, and it is how numpy or the evaluator would be patched.
            self.flag("attribute-assignment", f"assignment to .{node.attr}", node)
        self.generic_visit(node)

    # statements ------------------------------------------------------------------------
    def visit_Global(self, node: ast.Global) -> None:
        self.flag("global", "global statements are not allowed", node)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.flag("global", "nonlocal statements are not allowed", node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if not self.policy.allow_classes:
            self.flag("class", f"class {node.name} is not allowed", node)
        self.generic_visit(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.flag("async", "async code is not allowed", node)

    def visit_Await(self, node: ast.Await) -> None:
        self.flag("async", "async code is not allowed", node)

    def visit_Yield(self, node: ast.Yield) -> None:
        self.flag("generator", "generators are not allowed in equations", node)

    def visit_YieldFrom(self, node: ast.YieldFrom) -> None:
        self.flag("generator", "generators are not allowed in equations", node)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        # Generator expressions expose gi_frame; list comprehensions do the same job.
        self.flag("generator", "generator expressions are not allowed; use a list", node)

    def visit_FormattedValue(self, node: ast.FormattedValue) -> None:
        # f"{x:.3f}" is fine; a spec computed from expressions (f"{x:{y}}") is not reviewed.
        spec = node.format_spec
        if spec is not None and not (
            isinstance(spec, ast.JoinedStr) and all(isinstance(v, ast.Constant) for v in spec.values)
        ):
            self.flag("syntax-form", "a format spec computed from expressions", node)
            return
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, bool | int | float | complex):
            self.literals += 1
            self.literal_chars += len(repr(node.value))
        elif isinstance(node.value, str | bytes) and id(node) not in self.docstrings:
            self.string_chars += len(node.value)
        if isinstance(node.value, str | bytes):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            if len(text) > 5000:
                self.flag("size", "string constant too long", node)
            elif _DUNDER_TEXT.search(text):
                # Names like "__globals__" only matter to code that looks attributes up by
                # string, which is exactly what an equation never does.
                self.flag("dunder", "string naming a dunder attribute", node)


MAX_DEPTH = 200  # AST nesting; honest equations stay under 20
MAX_NODES = 20_000


def _shape_violation(tree: ast.AST) -> Violation | None:
    """Too deep or too large an AST, measured without recursion."""
    stack, count = [(tree, 0)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            return Violation("depth", f"expressions nested deeper than {MAX_DEPTH}", getattr(node, "lineno", 0))
        if count > MAX_NODES:
            return Violation("size", f"more than {MAX_NODES} syntax nodes")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return None


def check(code: str, policy: Policy | None = None) -> Violation | None:
    """The first violation in ``code`` (syntax errors included), or None if it may run.

    Survives any text: the source length is bounded first, the parse's own failures on
    pathological nesting (``RecursionError``, ``MemoryError``…) become ``policy:depth``, the
    tree's depth and size are bounded without recursion before the (recursive) policy walk.
    """
    policy = policy or Policy()
    if not isinstance(code, str):
        return Violation("syntax", "program is not text")
    if len(code) > policy.max_source_chars:
        return Violation("size", f"program has {len(code)} characters")
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return Violation("syntax", f"{exc.msg} (line {exc.lineno})", exc.lineno or 0)
    except (RecursionError, MemoryError, ValueError, OverflowError) as exc:
        return Violation("depth", f"cannot parse: {type(exc).__name__}")
    shape = _shape_violation(tree)
    if shape is not None:
        return shape
    try:
        return _check_tree(tree, policy)
    except (RecursionError, MemoryError) as exc:
        return Violation("depth", f"cannot check: {type(exc).__name__}")


def _check_tree(tree: ast.Module, policy: Policy) -> Violation | None:
    for stmt in tree.body:
        if not isinstance(
            stmt, ast.FunctionDef | ast.Import | ast.ImportFrom | ast.Expr | ast.Assign
            | ast.AnnAssign
        ):
            return Violation("toplevel", f"{type(stmt).__name__} at module level", stmt.lineno)
    for node in ast.walk(tree):
        kind = type(node)
        if kind not in ALLOWED_NODES and kind not in _RULED:
            return Violation("syntax-form", f"{kind.__name__} is not allowed in equations",
                             getattr(node, "lineno", 0))
    checker = _Checker(policy)
    for node in ast.walk(tree):  # docstrings are documentation, not data
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.FunctionDef) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            checker.docstrings.add(id(body[0].value))
    checker.visit(tree)
    if checker.violations:
        return checker.violations[0]
    return checker.literal_violation()
