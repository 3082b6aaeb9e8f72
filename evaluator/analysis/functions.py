"""What a candidate's names mean in sympy: numpy/math/scipy.special functions, constants, limits.

The whitelist of functions with a faithful sympy equivalent (anything else is
``NotConvertible``), the values the AST walk handles besides expressions (the ``params``
vector, helpers, modules), and the size limits that keep conversion bounded.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy as sp

MAX_AST_NODES = 3000
MAX_EXPR_NODES = 2_000
MAX_INLINE_DEPTH = 16
SIG_DIGITS = 6
# Numbers stay float-like: numpy computes in float64, so a constant beyond its range (or an
# exact integer/rational with more bits than a float's exponent spans) is no number the
# scored program computed; sympy would carry it exactly (thousands of digits that hang
# evalf and crash str() past Python's 4300-digit limit), so it ends the conversion.
MAX_NUMBER_BITS = 1100  # |n| < 2**1100 (> float64's 1.8e308); rationals: numerator and denominator
MAX_FLOAT_MAGNITUDE = 1e308

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
    a, b = bounded(sp.sympify(a)), bounded(sp.sympify(b))
    if a.is_Number and b.is_Number:
        # exact powers of numbers can be astronomically large: keep them small or float
        if b.is_Integer and abs(int(b)) <= 64 and (not a.is_Rational or _small_rational(a)):
            return bounded(a**b)
        try:
            return bounded(sp.Float(math.pow(float(a), float(b))))
        except (OverflowError, ValueError):
            raise NotConvertible("numeric", "a power of two numbers is not a finite float") from None
    if b.is_Number and abs(float(b)) > 1000:
        raise NotConvertible("numeric", "an exponent over 1000")
    return bounded(sp.Pow(a, b))


def _number_ok(n: sp.Number) -> bool:
    if isinstance(n, sp.Rational):  # Integer included
        return int(n.p).bit_length() <= MAX_NUMBER_BITS and int(n.q).bit_length() <= MAX_NUMBER_BITS
    if isinstance(n, sp.Float):
        try:
            v = abs(float(n))
        except (OverflowError, ValueError):
            return False
        return math.isfinite(v) and v <= MAX_FLOAT_MAGNITUDE and (v != 0.0 or n.is_zero is True)
    return True


def bounded(value: Any) -> Any:
    """``value`` if every number in it is float-like (see ``MAX_NUMBER_BITS``), else
    ``NotConvertible("numeric")``; checked on every value the AST walk builds, so no
    number sympy meets during conversion, printing or analysis is larger than a float."""
    if isinstance(value, sp.Number):
        ok = _number_ok(value)
    elif isinstance(value, sp.Basic):
        ok = all(_number_ok(n) for n in value.atoms(sp.Number))
    elif isinstance(value, tuple):
        for item in value:
            bounded(item)
        return value
    else:
        return value
    if not ok:
        raise NotConvertible("numeric", "a number beyond float range (the program overflows, "
                             "or its constants have more digits than a float holds)")
    return value


def _small_rational(r: sp.Rational) -> bool:
    return abs(r.p) < 10**12 and abs(r.q) < 10**12


def _number(value: int | float) -> sp.Expr:
    if isinstance(value, bool):
        raise NotConvertible("unsupported", "boolean value in arithmetic")
    if isinstance(value, int):
        if value.bit_length() > MAX_NUMBER_BITS:
            raise NotConvertible("numeric", "an integer literal beyond float range")
        if abs(value) > 10**30:
            return bounded(sp.Float(value))
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
    return bounded(_apply_unbounded(qualname, args))


def _apply_unbounded(qualname: str, args: list[Any]) -> Any:
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
