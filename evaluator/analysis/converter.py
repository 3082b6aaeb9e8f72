"""The AST interpreter that turns a candidate's source into sympy (``skeleton`` drives it).

The candidate is untrusted, so it is never executed here: ``to_sympy`` walks its AST with
the whitelist of ``functions``, inlining intermediate variables, helper functions and
lambdas. ``params[i]`` becomes the symbol ``c<i>`` (the *skeleton*). Anything whose value
depends on the data in a way a formula cannot state (loops, ``if`` on data, indexing the
data, reductions, unknown calls) raises ``NotConvertible`` with a short reason; nothing is
guessed. Size limits bound the walk (``functions.MAX_*``, ``complexity``), which is what
lets a caller convert in-process. ``parse_truth`` reads a problem's ground truth the same way.
"""

from __future__ import annotations

import ast
from typing import Any

import sympy as sp

from eqforge.evaluator.analysis.complexity import complexity
from eqforge.evaluator.analysis.functions import (
    _BUILTINS,
    _CONST_NAMES,
    _TRUTH_NAMES,
    MAX_INLINE_DEPTH,
    NotConvertible,
    _apply,
    _as_expr,
    _Builtin,
    _Func,
    _Module,
    _number,
    _Params,
    _pow,
    _qualified,
    _Return,
    _slice_params,
    bounded,
)

#: env key of the names whose object another name (or the caller) may also hold
SHARED = "\x00shared"
#: calls that may hand back their argument itself (numpy views, helpers returning a parameter)
_PASSTHROUGH = frozenset({"asarray", "asanyarray", "float64", "float32", "positive", "real"})


def shared_names(env: dict[str, Any]) -> set[str]:
    """The set of possibly aliased names of a scope (created on first use)."""
    names = env.get(SHARED)
    if not isinstance(names, set):
        names = set()
        env[SHARED] = names
    return names


def _alias_sources(node: ast.expr) -> set[str]:
    """Names whose object an assigned value may *be* (not a new value computed from them):
    ``b = a``, ``b = np.asarray(a)``, ``b = t[0]``, ``b = f(a)`` for a helper ``f``.
    Arithmetic makes a new object, so ``b = a * 2`` aliases nothing."""
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Tuple | ast.List):
        return set().union(*(_alias_sources(e) for e in node.elts)) if node.elts else set()
    if isinstance(node, ast.IfExp):
        return _alias_sources(node.body) | _alias_sources(node.orelse)
    if isinstance(node, ast.Subscript | ast.Starred):
        return _alias_sources(node.value)
    if isinstance(node, ast.Call):
        fn = node.func
        attr = fn.attr if isinstance(fn, ast.Attribute) else None
        if attr is not None and attr not in _PASSTHROUGH:
            return set()  # np.sin(a), np.exp(a): new arrays
        out: set[str] = set()
        for a in node.args:
            out |= _alias_sources(a)
        return out
    return set()


class _Converter:
    def __init__(self, truth_mode: bool = False, exact: bool = True) -> None:
        self.truth_mode = truth_mode
        self.exact = exact  # False: float literals stay floats (for display)
        self.depth = 0

    # -- names ----------------------------------------------------------------------------
    def resolve_attr(self, node: ast.AST, env: dict[str, Any]) -> Any:
        """``np.sin`` / ``scipy.special.erf`` / ``np.pi`` -> a builtin, module or constant."""
        if isinstance(node, ast.Name):
            return self.name(node.id, env)
        if isinstance(node, ast.Attribute):
            base = self.resolve_attr(node.value, env)
            if isinstance(base, _Module):
                return _qualified(f"{base.name}.{node.attr}")
            if isinstance(base, sp.Basic) and node.attr in ("real",):
                return base
            raise NotConvertible("unsupported", f"attribute .{node.attr}")
        if not isinstance(node, ast.expr):
            raise NotConvertible("unsupported", f"{type(node).__name__} node")
        return self.expr(node, env)

    def name(self, ident: str, env: dict[str, Any]) -> Any:
        if ident in env:
            return env[ident]
        if self.truth_mode and ident in _TRUTH_NAMES:
            return _TRUTH_NAMES[ident]
        if ident in ("np", "numpy"):
            return _Module("numpy")
        if ident == "math":
            return _Module("math")
        if ident in _BUILTINS:
            return _Builtin(f"builtins.{ident}")
        raise NotConvertible("unknown-name", ident)

    # -- statements -----------------------------------------------------------------------
    def block(self, body: list[ast.stmt], env: dict[str, Any]) -> None:
        for stmt in body:
            self.stmt(stmt, env)

    def stmt(self, node: ast.stmt, env: dict[str, Any]) -> None:
        if isinstance(node, ast.Return):
            if node.value is None:
                raise NotConvertible("unsupported", "return without a value")
            raise _Return(self.expr(node.value, env))
        if isinstance(node, ast.Assign):
            value = self.expr(node.value, env)
            self.track_aliases(node.targets, node.value, env)
            for target in node.targets:
                self.assign(target, value, env)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.track_aliases([node.target], node.value, env)
                self.assign(node.target, self.expr(node.value, env), env)
        elif isinstance(node, ast.AugAssign):
            if not isinstance(node.target, ast.Name):
                raise NotConvertible("assignment", "augmented assignment into an element")
            if node.target.id in shared_names(env):
                raise NotConvertible(
                    "aliasing", f"in-place {type(node.op).__name__} on {node.target.id!r}, which "
                    "another name (or the caller) may hold too: numpy updates every holder of an "
                    "array, Python rebinds a number, and the program does not say which it is")
            current = self.name(node.target.id, env)
            env[node.target.id] = self.binop(node.op, current, self.expr(node.value, env))
        elif isinstance(node, ast.Expr):
            if not isinstance(node.value, ast.Constant):  # docstrings and stray literals
                raise NotConvertible("side-effect", "expression statement")
        elif isinstance(node, ast.Pass | ast.Assert):
            pass
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    env[alias.asname] = _Module(alias.name)
                else:
                    env[alias.name.split(".")[0]] = _Module(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                env[alias.asname or alias.name] = _qualified(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.FunctionDef):
            env[node.name] = _Func(node, env)
        elif isinstance(node, ast.If):
            test = self.expr(node.test, env)
            if test in (True, sp.true):
                self.block(node.body, env)
            elif test in (False, sp.false):
                self.block(node.orelse, env)
            else:
                raise NotConvertible("branch", "an if statement whose test depends on the data "
                                     "or the constants")
        elif isinstance(node, ast.For | ast.While | ast.AsyncFor):
            raise NotConvertible("loop", "a loop")
        else:
            raise NotConvertible("unsupported", f"{type(node).__name__} statement")

    def track_aliases(self, targets: list[ast.expr], value: ast.expr,
                      env: dict[str, Any]) -> None:
        """Mark names that may share one object after this assignment (see ``SHARED``)."""
        shared = shared_names(env)
        names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        sources = {n for n in _alias_sources(value) if n in env or n in shared}
        if sources or len(targets) > 1 or any(isinstance(t, ast.Tuple | ast.List) for t in targets):
            shared |= names | sources
        else:
            shared -= names  # a fresh value: the name holds an object of its own

    def assign(self, target: ast.expr, value: Any, env: dict[str, Any]) -> None:
        _check_size(value)
        if isinstance(target, ast.Name):
            env[target.id] = value
            return
        if isinstance(target, ast.Tuple | ast.List):
            items = self.unpack(value, len(target.elts),
                                any(isinstance(e, ast.Starred) for e in target.elts))
            starred = [i for i, e in enumerate(target.elts) if isinstance(e, ast.Starred)]
            if starred:
                k = starred[0]
                n_after = len(target.elts) - k - 1
                head, rest = items[:k], items[k:]
                middle = rest[: len(rest) - n_after] if n_after else rest
                tail = rest[len(rest) - n_after:] if n_after else []
                for t, v in zip(target.elts[:k], head, strict=True):
                    self.assign(t, v, env)
                star = target.elts[k]
                assert isinstance(star, ast.Starred)
                self.assign(star.value, tuple(middle), env)
                for t, v in zip(target.elts[k + 1:], tail, strict=True):
                    self.assign(t, v, env)
                return
            for t, v in zip(target.elts, items, strict=True):
                self.assign(t, v, env)
            return
        raise NotConvertible("assignment", f"assignment to {type(target).__name__}")

    def unpack(self, value: Any, n: int, starred: bool) -> list[Any]:
        if isinstance(value, _Params):
            if value.symbols is None:
                if starred:
                    raise NotConvertible("params", "starred unpacking of params")
                return [value.item(i) for i in range(n)]
            items: list[Any] = list(value.symbols)
        elif isinstance(value, tuple | list):
            items = list(value)
        else:
            raise NotConvertible("unsupported", "unpacking a non-sequence")
        if (not starred and len(items) != n) or (starred and len(items) < n - 1):
            raise NotConvertible("unsupported", "unpacking with the wrong number of values")
        return items

    # -- expressions ----------------------------------------------------------------------
    def expr(self, node: ast.expr, env: dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool):
                return node.value
            if isinstance(node.value, float) and not self.exact:
                return sp.Float(node.value)
            if isinstance(node.value, int | float):
                return _number(node.value)
            raise NotConvertible("unsupported", f"{type(node.value).__name__} literal")
        if isinstance(node, ast.Name):
            return self.name(node.id, env)
        if isinstance(node, ast.BinOp):
            return self.binop(node.op, self.expr(node.left, env), self.expr(node.right, env))
        if isinstance(node, ast.UnaryOp):
            operand = self.expr(node.operand, env)
            if isinstance(node.op, ast.USub):
                return bounded(-_as_expr(operand))
            if isinstance(node.op, ast.UAdd):
                return _as_expr(operand)
            if isinstance(node.op, ast.Not) and operand in (True, False, sp.true, sp.false):
                return not bool(operand)
            raise NotConvertible("unsupported", f"unary {type(node.op).__name__}")
        if isinstance(node, ast.Subscript):
            return self.subscript(node, env)
        if isinstance(node, ast.Call):
            return self.call(node, env)
        if isinstance(node, ast.Attribute):
            value = self.resolve_attr(node, env)
            if isinstance(value, _Builtin) and value.qualname in _CONST_NAMES:
                return _CONST_NAMES[value.qualname]
            return value
        if isinstance(node, ast.Tuple | ast.List):
            if any(isinstance(e, ast.Starred) for e in node.elts):
                raise NotConvertible("unsupported", "starred expression")
            return tuple(self.expr(e, env) for e in node.elts)
        if isinstance(node, ast.Compare):
            return self.compare(node, env)
        if isinstance(node, ast.BoolOp):
            values = [self.expr(v, env) for v in node.values]
            return sp.And(*values) if isinstance(node.op, ast.And) else sp.Or(*values)
        if isinstance(node, ast.IfExp):
            test = self.expr(node.test, env)
            if test in (True, sp.true):
                return self.expr(node.body, env)
            if test in (False, sp.false):
                return self.expr(node.orelse, env)
            raise NotConvertible("branch", "a conditional expression on the data or constants")
        if isinstance(node, ast.Lambda):
            return _Func(node, env)
        raise NotConvertible("unsupported", f"{type(node).__name__} expression")

    def binop(self, op: ast.operator, a: Any, b: Any) -> sp.Expr:
        if self.truth_mode and isinstance(op, ast.BitXor):
            return _pow(_as_expr(a), _as_expr(b))
        return bounded(self._binop(op, _as_expr(a), _as_expr(b)))

    def _binop(self, op: ast.operator, a: sp.Expr, b: sp.Expr) -> sp.Expr:
        if isinstance(op, ast.Add):
            return a + b
        if isinstance(op, ast.Sub):
            return a - b
        if isinstance(op, ast.Mult):
            return a * b
        if isinstance(op, ast.Div):
            if b == 0:
                raise NotConvertible("numeric", "division by zero")
            return a / b
        if isinstance(op, ast.Pow):
            return _pow(a, b)
        if isinstance(op, ast.FloorDiv):
            return sp.floor(a / b)
        if isinstance(op, ast.Mod):
            return sp.Mod(a, b)
        raise NotConvertible("unsupported", f"operator {type(op).__name__}")

    def compare(self, node: ast.Compare, env: dict[str, Any]) -> Any:
        ops = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge,
               ast.Eq: sp.Eq, ast.NotEq: sp.Ne}
        left = _as_expr(self.expr(node.left, env))
        parts = []
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _as_expr(self.expr(comp, env))
            rel = ops.get(type(op))
            if rel is None:
                raise NotConvertible("unsupported", f"comparison {type(op).__name__}")
            parts.append(rel(left, right))
            left = right
        return sp.And(*parts) if len(parts) > 1 else parts[0]

    def subscript(self, node: ast.Subscript, env: dict[str, Any]) -> Any:
        value = self.expr(node.value, env)
        idx = node.slice
        if isinstance(value, _Params):
            if isinstance(idx, ast.Slice):
                return _slice_params(value, self._slice_bound(idx.lower, env),
                                     self._slice_bound(idx.upper, env),
                                     self._slice_bound(idx.step, env))
            i = self.expr(idx, env)
            if not (isinstance(i, sp.Integer)):
                raise NotConvertible("params", "params indexed by a computed value")
            return value.item(int(i))
        if isinstance(value, tuple):
            i = self.expr(idx, env)
            if isinstance(i, sp.Integer) and -len(value) <= int(i) < len(value):
                return value[int(i)]
        raise NotConvertible("indexing", "indexing the data or an intermediate array")

    def _slice_bound(self, node: ast.expr | None, env: dict[str, Any]) -> int | None:
        if node is None:
            return None
        v = self.expr(node, env)
        if not isinstance(v, sp.Integer):
            raise NotConvertible("params", "params sliced with a computed bound")
        return int(v)

    def call(self, node: ast.Call, env: dict[str, Any]) -> Any:
        func = self.resolve_attr(node.func, env) if isinstance(
            node.func, ast.Attribute | ast.Name) else self.expr(node.func, env)
        if isinstance(func, _Func):
            return self.inline(func, node, env)
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise NotConvertible("unsupported", "starred call arguments")
        args = [self.expr(a, env) for a in node.args]
        kwargs = {k.arg: self.expr(k.value, env) for k in node.keywords if k.arg is not None}
        if any(k.arg is None for k in node.keywords):
            raise NotConvertible("unsupported", "** call arguments")
        kwargs.pop("dtype", None)
        if kwargs:
            raise NotConvertible("unsupported", f"keyword arguments {sorted(kwargs)}")
        if self.truth_mode and callable(func) and not isinstance(func, _Builtin):
            return func(*[_as_expr(a) for a in args])
        if not isinstance(func, _Builtin):
            raise NotConvertible("unknown-call", ast.unparse(node.func))
        return _apply(func.qualname, args)

    def inline(self, func: _Func, node: ast.Call, env: dict[str, Any]) -> Any:
        if self.depth >= MAX_INLINE_DEPTH:
            raise NotConvertible("recursion", "helper calls nest too deeply")
        fn = func.node
        a = fn.args
        if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs:
            raise NotConvertible("unsupported", "helper with *args, **kwargs or keyword-only "
                                 "arguments")
        names = [p.arg for p in a.args]
        local = dict(func.closure)
        local[SHARED] = set(names)  # arguments are the caller's objects
        defaults = a.defaults
        for name, default in zip(names[len(names) - len(defaults):], defaults, strict=True):
            local[name] = self.expr(default, func.closure)
        if len(node.args) > len(names):
            raise NotConvertible("unsupported", "too many arguments to a helper")
        for name, arg in zip(names, node.args, strict=False):
            local[name] = self.expr(arg, env)
        for kw in node.keywords:
            if kw.arg not in names:
                raise NotConvertible("unsupported", f"unknown keyword {kw.arg}")
            local[kw.arg] = self.expr(kw.value, env)
        if any(n not in local for n in names):
            raise NotConvertible("unsupported", "missing argument to a helper")
        self.depth += 1
        try:
            if isinstance(fn, ast.Lambda):
                return _check_size(self.expr(fn.body, local))
            try:
                self.block(fn.body, local)
            except _Return as ret:
                return _check_size(ret.value)
            raise NotConvertible("unsupported", f"helper {fn.name} returns nothing")
        finally:
            self.depth -= 1



def _check_size(value: Any) -> Any:
    """Inlining can grow a tree exponentially (``t = t*t + t`` repeated): stop early, before
    anything walks the tree without sharing."""
    if isinstance(value, sp.Basic):
        complexity(value)
    elif isinstance(value, tuple):
        for item in value:
            _check_size(item)
    return value
