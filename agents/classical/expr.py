"""A searcher's model (a sympy expression over ``X0..Xn``) as an eqforge program.

The program is what a language model would write: ``def equation(<inputs>, params)``
returning a numpy expression. Its fitted constants go into ``params`` (in order of first
appearance, at most ``max_params``, the evaluator's limit) and are scored as given — the
sandbox does not refit them, so the row shows the method's own model. Constants beyond the
limit are written as literals rounded to 10 significant digits; the sandbox policy bounds
literals (count and characters), so a model too large for it is refused there like any
program. Small integers (exponents, the 2 in ``x**2``) stay literals.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from eqforge.problems.entry import ENTRY

_FUNCS = {sp.sin: "np.sin", sp.cos: "np.cos", sp.tan: "np.tan", sp.exp: "np.exp", sp.log: "np.log",
          sp.tanh: "np.tanh", sp.Abs: "np.abs", sp.asin: "np.arcsin", sp.acos: "np.arccos",
          sp.atan: "np.arctan", sp.sinh: "np.sinh", sp.cosh: "np.cosh"}


def input_symbols(n: int) -> list[sp.Symbol]:
    """The searchers' own input names (problem names such as ``gamma`` or ``E`` would clash
    with sympy's)."""
    return [sp.Symbol(f"X{i}", real=True) for i in range(n)]


@dataclass(frozen=True)
class Translated:
    program: str
    params: list[float]
    expression: str  # the model with the problem's input names, for the record's ``response``


class _Printer:
    def __init__(self, names: dict[sp.Symbol, str], params: dict[sp.Float, int]) -> None:
        self.names = names
        self.params = params

    def __call__(self, e: sp.Basic) -> str:
        if e in self.names:
            return self.names[e]  # type: ignore[index]
        if isinstance(e, sp.Float) and e in self.params:
            return f"params[{self.params[e]}]"
        if e is sp.pi:
            return "np.pi"
        if e is sp.E:
            return "np.e"
        if isinstance(e, sp.Integer):
            return str(int(e))
        if isinstance(e, sp.Rational):
            return f"({int(e.p)}/{int(e.q)})"
        if isinstance(e, sp.Number):
            return repr(float(f"{float(e):.10g}"))
        if isinstance(e, sp.Add):
            return "(" + " + ".join(self(a) for a in e.args) + ")"
        if isinstance(e, sp.Mul):
            return "(" + "*".join(self(a) for a in e.args) + ")"
        if isinstance(e, sp.Pow):
            base, exp = e.args
            if exp == sp.Rational(1, 2):
                return f"np.sqrt({self(base)})"
            if exp == -1:
                return f"(1/{self(base)})"
            return f"({self(base)})**({self(exp)})"
        fn = _FUNCS.get(type(e))  # type: ignore[call-overload]
        if fn is not None:
            return f"{fn}({', '.join(self(a) for a in e.args)})"
        raise ValueError(f"cannot write {type(e).__name__} as numpy")


def to_program(expr: sp.Expr, inputs: list[str], *, max_params: int = 10) -> Translated:
    """``expr`` (over ``input_symbols(len(inputs))``) -> program, params and readable text."""
    syms = input_symbols(len(inputs))
    floats: list[sp.Float] = []
    for atom in sp.preorder_traversal(expr):
        if isinstance(atom, sp.Float) and atom not in floats:
            floats.append(atom)
    params = {f: i for i, f in enumerate(floats[:max_params])}
    body = _Printer(dict(zip(syms, inputs, strict=True)), params)(expr)
    program = f"def {ENTRY}({', '.join(inputs)}, params):\n    return {body}\n"
    readable = sp.sstr(expr.xreplace(dict(zip(syms, sp.symbols(inputs), strict=True))), full_prec=False)
    return Translated(program, [float(f) for f in floats[:max_params]], readable)
