"""From program to closed form: a candidate's source turned into a sympy expression.

The candidate is untrusted, so it is never executed here: ``to_sympy`` walks its AST with
a whitelist of numpy/math/scipy.special functions that have sympy equivalents, inlining
intermediate variables, helper functions and lambdas. ``params[i]`` becomes the symbol
``c<i>`` (the *skeleton*); substituting the fitted values gives the *fitted* form. Anything
whose value depends on the data in a way a formula cannot state (loops, ``if`` on data,
indexing the data, reductions, unknown calls) raises ``NotConvertible`` with a short
reason; nothing is guessed.

sympy itself can take unbounded time (simplify, expand, printing huge trees), so the
costly steps run in a helper process with a per-call deadline (``SymbolicWorker``); when
the deadline passes the process is killed and the caller keeps the unsimplified result.
Conversion alone is bounded by limits on the program's size and the expression's node
count, which is what lets the live view call ``closed_form`` in-process.
"""

from __future__ import annotations

import ast
import math
import multiprocessing as mp
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy as sp

MAX_AST_NODES = 3000
MAX_EXPR_NODES = 2_000
MAX_INLINE_DEPTH = 16
SIG_DIGITS = 6

# ---------------------------------------------------------------------------------------
# the whitelist: qualified function name -> sympy builder


def _real_cbrt(a: sp.Expr) -> sp.Expr:
    if a.is_number and a.is_real:
        return sp.real_root(a, 3)
    return sp.sign(a) * sp.Abs(a) ** sp.Rational(1, 3)


_UNARY: dict[str, Callable[[sp.Expr], sp.Expr]] = {
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan,
    "arcsin": sp.asin, "asin": sp.asin, "arccos": sp.acos, "acos": sp.acos,
    "arctan": sp.atan, "atan": sp.atan,
    "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh,
    "arcsinh": sp.asinh, "asinh": sp.asinh, "arccosh": sp.acosh, "acosh": sp.acosh,
    "arctanh": sp.atanh, "atanh": sp.atanh,
    "exp": sp.exp, "expm1": lambda a: sp.exp(a) - 1, "exp2": lambda a: sp.Integer(2) ** a,
    "log": sp.log, "log2": lambda a: sp.log(a) / sp.log(2),
    "log10": lambda a: sp.log(a) / sp.log(10), "log1p": lambda a: sp.log(1 + a),
    "sqrt": sp.sqrt, "cbrt": _real_cbrt, "square": lambda a: a**2,
    "abs": sp.Abs, "absolute": sp.Abs, "fabs": sp.Abs, "sign": sp.sign,
    "reciprocal": lambda a: 1 / a, "negative": lambda a: -a, "positive": lambda a: a,
    "floor": sp.floor, "ceil": sp.ceiling,
    "deg2rad": lambda a: a * sp.pi / 180, "radians": lambda a: a * sp.pi / 180,
    "rad2deg": lambda a: a * 180 / sp.pi, "degrees": lambda a: a * 180 / sp.pi,
    "erf": sp.erf, "erfc": sp.erfc, "gamma": sp.gamma, "lgamma": sp.loggamma,
    "gammaln": sp.loggamma, "expit": lambda a: 1 / (1 + sp.exp(-a)),
    "sinc": lambda a: sp.sinc(sp.pi * a),  # numpy's sinc is the normalised one
    # value-preserving conversions
    "asarray": lambda a: a, "array": lambda a: a, "float64": lambda a: a,
    "float32": lambda a: a, "asanyarray": lambda a: a, "copy": lambda a: a,
    "ones_like": lambda a: sp.Integer(1), "zeros_like": lambda a: sp.Integer(0),
}
_BINARY: dict[str, Callable[[sp.Expr, sp.Expr], sp.Expr]] = {
    "power": lambda a, b: _pow(a, b), "pow": lambda a, b: _pow(a, b),
    "float_power": lambda a, b: _pow(a, b),
    "arctan2": sp.atan2, "atan2": sp.atan2,
    "hypot": lambda a, b: sp.sqrt(a**2 + b**2),
    "maximum": sp.Max, "fmax": sp.Max, "minimum": sp.Min, "fmin": sp.Min,
    "add": lambda a, b: a + b, "subtract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b, "divide": lambda a, b: a / b,
    "true_divide": lambda a, b: a / b,
    "logaddexp": lambda a, b: sp.log(sp.exp(a) + sp.exp(b)),
    "heaviside": lambda a, b: sp.Heaviside(a, b),
    "full_like": lambda a, b: b,
}
_CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "e": sp.E, "tau": 2 * sp.pi}
_MODULES = ("numpy", "math", "scipy.special")
_BUILTINS: dict[str, Callable[..., sp.Expr]] = {
    "abs": sp.Abs, "float": lambda a: a,
    "pow": lambda a, b: _pow(a, b), "min": lambda *a: sp.Min(*a), "max": lambda *a: sp.Max(*a),
}
# names of the ground-truth mini-language (sympy style, bare functions)
_TRUTH_NAMES: dict[str, Any] = {
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "asin": sp.asin, "acos": sp.acos,
    "atan": sp.atan, "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "exp": sp.exp,
    "log": sp.log, "ln": sp.log, "sqrt": sp.sqrt, "Abs": sp.Abs, "abs": sp.Abs,
    "sign": sp.sign, "erf": sp.erf, "pi": sp.pi, "E": sp.E, "Max": sp.Max, "Min": sp.Min,
    "atan2": sp.atan2, "gamma": sp.gamma,
}


class NotConvertible(Exception):
    """The program has no closed form we can state faithfully."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _pow(a: Any, b: Any) -> sp.Expr:
    a, b = sp.sympify(a), sp.sympify(b)
    if a.is_Number and b.is_Number:
        # exact powers of numbers can be astronomically large: keep them small or float
        if b.is_Integer and abs(int(b)) <= 64 and (not a.is_Rational or _small_rational(a)):
            return a**b
        try:
            return sp.Float(math.pow(float(a), float(b)))
        except (OverflowError, ValueError):
            raise NotConvertible("numeric", f"{a}**{b} is not a finite real number") from None
    if b.is_Number and abs(float(b)) > 1000:
        raise NotConvertible("numeric", f"exponent {b} is too large")
    return sp.Pow(a, b)


def _small_rational(r: sp.Rational) -> bool:
    return abs(r.p) < 10**12 and abs(r.q) < 10**12


def _number(value: int | float) -> sp.Expr:
    if isinstance(value, bool):
        raise NotConvertible("unsupported", "boolean value in arithmetic")
    if isinstance(value, int):
        if abs(value) > 10**30:
            return sp.Float(value)
        return sp.Integer(value)
    if not math.isfinite(value):
        raise NotConvertible("numeric", f"literal {value!r} is not finite")
    if value.is_integer() and abs(value) < 1e15:
        return sp.Integer(int(value))
    r = sp.Rational(repr(value))  # 0.5 -> 1/2 (so x**0.5 is sqrt), 9.81 stays a float
    return r if r.q <= 4 else sp.Float(value)


# ---------------------------------------------------------------------------------------
# values manipulated by the AST walk besides sympy expressions


@dataclass(frozen=True)
class _Params:
    """The ``params`` vector (or a slice of it): indexing yields constant symbols."""

    symbols: tuple[sp.Symbol, ...] | None  # None: length unknown
    make: Callable[[int], sp.Symbol]
    offset: int = 0

    def item(self, index: int) -> sp.Symbol:
        if self.symbols is None:
            if index < 0:
                raise NotConvertible("params", "negative params index with unknown length")
            return self.make(self.offset + index)
        try:
            return self.symbols[index]
        except IndexError:
            raise NotConvertible("params", f"params index {index} out of range") from None


@dataclass(frozen=True)
class _Func:
    """A helper ``def`` or ``lambda`` from the program, inlined where called."""

    node: ast.FunctionDef | ast.Lambda
    closure: dict[str, Any]


@dataclass(frozen=True)
class _Module:
    name: str


@dataclass(frozen=True)
class _Builtin:
    qualname: str


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


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
            for target in node.targets:
                self.assign(target, value, env)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.assign(node.target, self.expr(node.value, env), env)
        elif isinstance(node, ast.AugAssign):
            if not isinstance(node.target, ast.Name):
                raise NotConvertible("assignment", "augmented assignment into an element")
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
                return -_as_expr(operand)
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
        a, b = _as_expr(a), _as_expr(b)
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


_CONST_NAMES = {f"{m}.{k}": v for m in ("numpy", "math") for k, v in _CONSTANTS.items()}


def _qualified(name: str) -> Any:
    """``numpy.sin`` -> a builtin; ``numpy.pi`` -> a constant; modules stay modules."""
    mod, _, attr = name.rpartition(".")
    if mod in ("scipy", "numpy.polynomial") or name in ("scipy.special", "numpy", "math"):
        return _Module(name)
    if f"{mod}.{attr}" in _CONST_NAMES:
        return _Builtin(f"{mod}.{attr}")
    if mod in _MODULES and (attr in _UNARY or attr in _BINARY or attr in ("clip", "where")):
        return _Builtin(name)
    raise NotConvertible("unknown-call", name)


def _apply(qualname: str, args: list[Any]) -> Any:
    if qualname in _CONST_NAMES:
        raise NotConvertible("unsupported", f"calling {qualname}")
    mod, _, attr = qualname.rpartition(".")
    if mod == "builtins":
        return _BUILTINS[attr](*[_as_expr(a) for a in args])
    if attr == "where":
        if len(args) != 3:
            raise NotConvertible("unsupported", "where() needs three arguments")
        cond, a, b = args
        if cond in (True, sp.true):
            return _as_expr(a)
        if cond in (False, sp.false):
            return _as_expr(b)
        if not _is_condition(cond):
            raise NotConvertible("unsupported", "where() on a non-boolean condition")
        return sp.Piecewise((_as_expr(a), cond), (_as_expr(b), True))
    if attr == "clip":
        if len(args) != 3:
            raise NotConvertible("unsupported", "clip() needs three arguments")
        x, lo, hi = (_as_expr(a) for a in args)
        return sp.Min(sp.Max(x, lo), hi)
    if (attr in ("asarray", "array", "asanyarray", "copy") and len(args) == 1
            and isinstance(args[0], _Params | tuple)):
        return args[0]  # np.asarray(params), np.array([a, b]): still indexable
    exprs = [_as_expr(a) for a in args]
    if len(exprs) == 1 and attr in _UNARY:
        return _UNARY[attr](exprs[0])
    if len(exprs) == 2 and attr in _BINARY:
        return _BINARY[attr](*exprs)
    if mod == "math" and attr == "log" and len(exprs) == 2:
        return sp.log(exprs[0]) / sp.log(exprs[1])
    raise NotConvertible("unsupported", f"{qualname} with {len(exprs)} argument(s)")


def _check_size(value: Any) -> Any:
    """Inlining can grow a tree exponentially (``t = t*t + t`` repeated): stop early, before
    anything walks the tree without sharing."""
    if isinstance(value, sp.Basic):
        complexity(value)
    elif isinstance(value, tuple):
        for item in value:
            _check_size(item)
    return value


def _is_condition(value: Any) -> bool:
    """A relation or logical combination (a sympy Symbol is a Boolean too: not that)."""
    from sympy.logic.boolalg import BooleanAtom, BooleanFunction

    return isinstance(value, sp.core.relational.Relational | BooleanFunction | BooleanAtom)


def _as_expr(value: Any) -> sp.Expr:
    if isinstance(value, sp.Expr):
        return value
    if isinstance(value, bool):
        raise NotConvertible("unsupported", "boolean value in arithmetic")
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, _Builtin) and value.qualname in _CONST_NAMES:
        return _CONST_NAMES[value.qualname]
    if isinstance(value, _Params):
        raise NotConvertible("params", "the params vector used as a whole")
    if isinstance(value, tuple):
        raise NotConvertible("unsupported", "a sequence used as a number")
    raise NotConvertible("unsupported", f"{type(value).__name__} used as a number")


def _slice_params(p: _Params, lo: int | None, hi: int | None, step: int | None) -> _Params:
    if p.symbols is not None:
        return _Params(tuple(p.symbols[lo:hi:step]), p.make)
    if (step not in (None, 1)) or (lo is not None and lo < 0) or hi is None or hi < 0:
        raise NotConvertible("params", "params slice needs known bounds")
    lo = lo or 0
    return _Params(tuple(p.item(i) for i in range(lo, hi)), p.make)


# ---------------------------------------------------------------------------------------
# public API


def input_symbols(names: list[str]) -> dict[str, sp.Symbol]:
    return {n: sp.Symbol(n, real=True) for n in names}


def constant_symbol(i: int, taken: set[str] | frozenset[str] = frozenset()) -> sp.Symbol:
    name = f"c{i}"
    while name in taken:
        name = "_" + name
    return sp.Symbol(name, real=True)


def _function(tree: ast.Module, entry: str) -> ast.FunctionDef:
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    for f in fns:
        if f.name == entry:
            return f
    versions = [f for f in fns if f.name.startswith(entry)]
    if versions:
        return versions[-1]
    raise NotConvertible("no-equation", f"no function named {entry}")


def to_sympy(code: str, input_names: list[str], *, n_params: int | None = None,
             entry: str = "equation") -> sp.Expr:
    """The skeleton of ``code``: inputs as real symbols, ``params[i]`` as ``c<i>``."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError) as exc:
        raise NotConvertible("syntax", str(exc)) from None
    except (RecursionError, MemoryError):
        raise NotConvertible("too-large", "the program nests too deeply") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_AST_NODES:
        raise NotConvertible("too-large", f"more than {MAX_AST_NODES} syntax nodes")
    fn = _function(tree, entry)
    for node in ast.walk(tree):
        if isinstance(node, ast.For | ast.While | ast.AsyncFor | ast.ListComp | ast.SetComp
                      | ast.DictComp | ast.GeneratorExp):
            raise NotConvertible("loop", "the program loops (a for/while loop or a "
                                 "comprehension)")
        if isinstance(node, ast.Try | ast.With):
            raise NotConvertible("unsupported", f"{type(node).__name__} statement")
    conv = _Converter()
    env: dict[str, Any] = {}
    for stmt in tree.body:  # module level: imports, helpers, constants
        if isinstance(stmt, ast.FunctionDef):
            env[stmt.name] = _Func(stmt, env)
        elif isinstance(stmt, ast.Import | ast.ImportFrom | ast.Assign | ast.AnnAssign):
            try:
                conv.stmt(stmt, env)
            except NotConvertible:
                continue  # an unusable module-level name only matters if the equation uses it
    args = fn.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
        raise NotConvertible("signature", "equation has *args/**kwargs or keyword-only args")
    if len(args.args) != len(input_names) + 1:
        raise NotConvertible("signature", f"equation takes {len(args.args)} arguments, "
                             f"expected {len(input_names) + 1}")
    symbols = input_symbols(input_names)
    local = dict(env)
    for a, name in zip(args.args, input_names, strict=False):
        local[a.arg] = symbols[name]
    taken = frozenset(input_names)
    make = lambda i: constant_symbol(i, taken)  # noqa: E731
    consts = tuple(make(i) for i in range(n_params)) if n_params else None
    local[args.args[-1].arg] = _Params(consts, make)
    try:
        conv.block(fn.body, local)
    except _Return as ret:
        result = _as_expr(ret.value)
    except RecursionError:
        raise NotConvertible("too-large", "expression nests too deeply") from None
    else:
        raise NotConvertible("unsupported", "equation returns nothing")
    if not isinstance(result, sp.Expr) or _is_condition(result):
        raise NotConvertible("unsupported", "equation does not return a number")
    complexity(result)  # first: raises when the tree is too large to walk, print or analyse
    if result.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
        raise NotConvertible("numeric", "the expression is not finite")
    return result


def parse_truth(text: str, input_names: list[str], *, exact: bool = True) -> sp.Expr:
    """A ground-truth expression (Python/sympy syntax, bare function names) without eval.

    ``exact``: decimal literals become exact rationals (for comparison); otherwise they stay
    floats, which prints the law the way it was declared."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise NotConvertible("syntax", f"ground truth: {exc}") from None
    env: dict[str, Any] = dict(input_symbols(input_names))
    return _as_expr(_Converter(truth_mode=True, exact=exact).expr(tree.body, env))


# -- complexity ---------------------------------------------------------------------------


def complexity(expr: sp.Basic, cap: int = MAX_EXPR_NODES) -> int:
    """Node count of the expression as a binary operator tree, the way PySR counts.

    Every variable, constant, operator and function counts 1. sympy's n-ary ``Add``/``Mul``
    count as n-1 binary operators; ``a - b`` and ``a / b`` are one operator (not a
    multiplication by -1 or a power -1), ``sqrt`` is a unary function and a lone negation
    is one node.
    """
    total = 0
    stack: list[tuple[sp.Basic, bool]] = [(expr, False)]
    while stack:
        e, in_sum = stack.pop()
        if total > cap:
            raise NotConvertible("too-large", f"more than {cap} expression nodes")
        if e.is_Atom:
            total += 1
            continue
        if e.is_Add:
            total += len(e.args) - 1
            for a in e.args:
                coeff, rest = a.as_coeff_Mul()
                if coeff == -1 and rest != 1:
                    stack.append((rest, True))
                else:
                    stack.append((a, True))
            continue
        if e.is_Mul:
            coeff, rest = e.as_coeff_Mul()
            factors = list(sp.Mul.make_args(rest))
            if coeff == -1:
                if not in_sum:
                    total += 1  # unary minus
            elif coeff != 1:
                factors.insert(0, coeff)
            num = [f for f in factors if not (f.is_Pow and f.exp.is_Number and f.exp < 0)]
            den = [f for f in factors if f.is_Pow and f.exp.is_Number and f.exp < 0]
            n_ops = len(num) + len(den) - 1 if num else len(den)
            total += n_ops + (0 if num else 1)  # 1/(...) needs the constant 1
            stack.extend((f, False) for f in num)
            for d in den:
                stack.append((d.base if d.exp == -1 else sp.Pow(d.base, -d.exp), False))
            continue
        if e.is_Pow:
            if e.exp == sp.Rational(1, 2):
                total += 1
                stack.append((e.base, False))
            elif e.exp.is_Number and e.exp < 0:
                total += 2  # 1 / ...
                stack.append((e.base if e.exp == -1 else sp.Pow(e.base, -e.exp), False))
            else:
                total += 1
                stack.extend([(e.base, False), (e.exp, False)])
            continue
        if isinstance(e, sp.Min | sp.Max):
            total += len(e.args) - 1
        else:
            total += 1
        stack.extend((a, False) for a in e.args)
    return total


# -- closed forms --------------------------------------------------------------------------


@dataclass
class ClosedForm:
    """A program's closed form, or why it has none."""

    ok: bool
    reason: str | None = None
    detail: str = ""
    skeleton: sp.Expr | None = None
    fitted: sp.Expr | None = None  # constants substituted (full precision)
    display: sp.Expr | None = None  # constants rounded to SIG_DIGITS for printing
    constants: dict[str, float] = field(default_factory=dict)
    complexity: int | None = None
    simplified: bool = False

    @property
    def text(self) -> str:
        return _sstr(self.display) if self.display is not None else ""

    @property
    def skeleton_text(self) -> str:
        return _sstr(self.skeleton) if self.skeleton is not None else ""

    @property
    def latex(self) -> str:
        return sp.latex(self.display) if self.display is not None else ""

    @property
    def skeleton_latex(self) -> str:
        return sp.latex(self.skeleton) if self.skeleton is not None else ""

    def mathml(self) -> str:
        return sp.mathml(self.display, printer="presentation") if self.display is not None else ""

    def to_json(self) -> dict[str, Any]:
        if not self.ok:
            return {"convertible": False, "reason": self.reason, "detail": self.detail}
        return {
            "convertible": True,
            "equation": self.text,
            "latex": self.latex,
            "skeleton": self.skeleton_text,
            "skeleton_latex": self.skeleton_latex,
            "constants": self.constants,
            "complexity": self.complexity,
            "simplified": self.simplified,
        }


def _sstr(e: sp.Basic) -> str:
    return sp.sstr(e, full_prec=False)


def round_sig(value: float, digits: int = SIG_DIGITS) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def rounded(expr: sp.Expr, digits: int = SIG_DIGITS) -> sp.Expr:
    """Floats rounded to ``digits`` significant digits; whole numbers become integers."""
    repl: dict[sp.Basic, sp.Basic] = {}
    for f in expr.atoms(sp.Float):
        r = round_sig(float(f), digits)
        repl[f] = sp.Integer(int(r)) if r.is_integer() and abs(r) < 1e15 else sp.Float(r)
    return expr.xreplace(repl) if repl else expr


def fill_constants(skeleton: sp.Expr, params: list[float] | None) -> tuple[sp.Expr,
                                                                         dict[str, float]]:
    consts = sorted((s for s in skeleton.free_symbols if _const_index(s) is not None),
                    key=lambda s: _const_index(s) or 0)
    values: dict[str, float] = {}
    repl = {}
    for s in consts:
        i = _const_index(s)
        assert i is not None
        if params is None or i >= len(params) or params[i] is None:
            continue
        values[s.name.lstrip("_")] = float(params[i])
        repl[s] = sp.Float(float(params[i]))
    return skeleton.xreplace(repl), values


def _const_index(s: sp.Basic) -> int | None:
    name = getattr(s, "name", "")
    core = name.lstrip("_")
    if core.startswith("c") and core[1:].isdigit():
        return int(core[1:])
    return None


def closed_form(code: str, input_names: list[str], params: list[float] | None = None, *,
                simplify: bool = False) -> ClosedForm:
    """Convert ``code`` (with fitted ``params``) in-process. ``simplify`` is unbounded in
    time here; use ``SymbolicWorker`` for a deadline."""
    try:
        skeleton = to_sympy(code, input_names, n_params=len(params) if params else None)
        cf = _finish(skeleton, params)
    except NotConvertible as exc:
        return ClosedForm(ok=False, reason=exc.reason, detail=exc.detail)
    return simplified(cf, params) if simplify else cf


def _finish(skeleton: sp.Expr, params: list[float] | None, *, was_simplified: bool = False,
            ) -> ClosedForm:
    fitted, consts = fill_constants(skeleton, params)
    return ClosedForm(ok=True, skeleton=skeleton, fitted=fitted, display=rounded(fitted),
                      constants=consts, complexity=complexity(skeleton),
                      simplified=was_simplified)


def simplified(cf: ClosedForm, params: list[float] | None) -> ClosedForm:
    """``sympy.simplify`` of the skeleton, kept when it has fewer nodes than before.

    Only the displayed form changes: ``complexity`` remains the node count of the program
    as written, so it does not depend on whether simplification finished in time."""
    if not cf.ok or cf.skeleton is None:
        return cf
    try:
        s = sp.simplify(cf.skeleton)
        if complexity(s) < (cf.complexity or 0):
            out = _finish(s, params, was_simplified=True)
            out.complexity = cf.complexity  # complexity stays that of the program as written
            return out
    except NotConvertible:
        pass
    return cf


# -- symbolic recovery ----------------------------------------------------------------------


@dataclass
class Recovery:
    recovered: bool
    detail: str
    truth: str = ""
    matched: str = ""  # the discovered law with constants snapped to the truth's
    max_constant_error: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"recovered": self.recovered, "detail": self.detail, "ground_truth": self.truth,
                "matched": self.matched, "max_constant_error": self.max_constant_error}


def _candidates(truth: sp.Expr) -> list[sp.Expr]:
    nums: set[sp.Expr] = {sp.Integer(k) for k in range(-5, 6)}
    nums |= {sp.Rational(1, 2), sp.Rational(-1, 2)}
    for a in truth.atoms(sp.Number):
        nums |= {a, -a}
        if a != 0:
            nums |= {1 / a, -1 / a}
    return sorted(nums, key=lambda n: float(n))


def recovery(cf: ClosedForm, truth_text: str, input_names: list[str], *, rtol: float = 1e-3,
             atol: float = 1e-6) -> Recovery:
    """Does the discovered law equal the ground truth, up to constants within tolerance?

    The fitted form is expanded, each fitted constant is matched to a number of the truth
    (or a small integer, or 0) within ``rtol``·|c| + ``atol``, and the result must then be
    symbolically identical to the truth (``expand`` first, ``simplify`` if that is
    inconclusive). Constants that match nothing leave the law "not recovered".
    """
    try:
        truth = parse_truth(truth_text, input_names)
    except NotConvertible as exc:
        return Recovery(False, f"ground truth not understood ({exc})", truth_text)
    if not cf.ok or cf.fitted is None:
        return Recovery(False, f"no closed form ({cf.reason})", sp.sstr(truth))
    if any(_const_index(s) is not None for s in cf.fitted.free_symbols):
        return Recovery(False, "some constants have no fitted value", sp.sstr(truth))
    fitted = sp.expand(cf.fitted)
    cands = _candidates(truth)
    repl: dict[sp.Basic, sp.Basic] = {}
    worst = 0.0
    unmatched = []
    for f in fitted.atoms(sp.Float):
        v = float(f)
        best = min(cands, key=lambda c: abs(float(c) - v))
        err = abs(float(best) - v)
        if err <= rtol * abs(float(best)) + atol:
            repl[f] = best
            worst = max(worst, err)
        else:
            unmatched.append(round_sig(v, 4))
    snapped = sp.expand(fitted.xreplace(repl))
    diff = sp.expand(snapped - sp.expand(truth))
    same = diff == 0
    if not same and not diff.has(sp.Float):
        same = sp.simplify(diff) == 0
    matched = _sstr(snapped)
    if same:
        return Recovery(True, f"equal to the ground truth; constants within {worst:.2g}",
                        sp.sstr(truth), matched, worst)
    if unmatched:
        why = f"constants {unmatched[:5]} match no constant of the ground truth"
    else:
        why = "the law differs from the ground truth"
    return Recovery(False, why, sp.sstr(truth), matched, worst if repl else None)


# ---------------------------------------------------------------------------------------
# deadlines: a helper process that can be killed


def _op_convert(code: str, names: list[str], params: list[float] | None) -> ClosedForm:
    return closed_form(code, names, params)


def _op_simplify(cf: ClosedForm, params: list[float] | None) -> ClosedForm:
    return simplified(cf, params)


def _op_recover(cf: ClosedForm, truth: str, names: list[str], rtol: float,
                atol: float) -> Recovery:
    return recovery(cf, truth, names, rtol=rtol, atol=atol)


_OPS: dict[str, Callable[..., Any]] = {
    "convert": _op_convert, "simplify": _op_simplify, "recover": _op_recover,
}


def _serve(conn: Any) -> None:
    import signal
    import sys

    # The parent decides when this process ends (Ctrl-C reaches it there, and it kills
    # us); a forked copy of the parent's handlers (asyncio's) must not run here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        op, args = msg
        try:
            conn.send((True, _OPS[op](*args)))
        except Exception as exc:  # noqa: BLE001 - report any failure to the parent
            conn.send((False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))


class SymbolicWorker:
    """Runs symbolic operations in a child process with a deadline per call.

    A call that overruns has its process killed (a fresh one starts for the next call)
    and returns ``None``; so do calls that raise in the child. Use as a context manager.
    """

    def __init__(self) -> None:
        self._proc: Any = None
        self._conn: Any = None
        self.timeouts = 0

    def _start(self) -> None:
        # fork: sympy is already imported here, so the helper is ready in milliseconds. The
        # child only runs sympy on pickled data, and a deadline guards against a lock that
        # another thread held at fork time, so Python 3.12's warning about forking a
        # threaded process is silenced rather than paying for spawn's imports.
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="eqforge-sympy")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            proc.start()
        child.close()
        self._proc, self._conn = proc, parent

    def call(self, op: str, *args: Any, timeout: float) -> Any:
        if timeout <= 0:
            return None
        if self._proc is None or not self._proc.is_alive():
            self._start()
        try:
            self._conn.send((op, args))
            if not self._conn.poll(timeout):
                self.timeouts += 1
                self._kill()
                return None
            ok, value = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._kill()
            return None
        return value if ok else None

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._proc.join(1)
        self._kill()

    def __enter__(self) -> SymbolicWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
