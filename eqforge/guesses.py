"""Turning the user's guesses into programs the loop scores before its first prompt.

A guess is either code (a ``def`` of the equation, or just its body, ``return ...``) or an
expression in the problem's variable names, written as sympy or numpy would
(``"0.8*cos(x) - a*v**3"``, ``"np.exp(-x) * v"``). Expressions are read by the same AST
walk that turns programs into closed forms (never ``eval``): every number and every name
that is not a variable becomes a fitted constant ``params[i]``, with the number the user
wrote as its starting value (like PySR, whose guesses have their constants optimised);
exponents and the signs 1 and -1 stay as written (``x**3``, ``x**0.5``, ``-x``).
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Sequence

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from eqforge.agents.loop import Guess
from eqforge.errors import EqforgeError
from eqforge.evaluator.analysis import NotConvertible, parse_truth
from eqforge.evaluator.analysis.functions import _TRUTH_NAMES
from eqforge.problems.entry import ENTRY
from eqforge.problems.spec import ProblemSpec
from eqforge.prompts.builder import signature

_KNOWN = set(_TRUTH_NAMES) | {"np", "numpy", "math", "abs", "pow", "min", "max"}


class GuessError(EqforgeError, ValueError):
    """A guess that cannot be read (exit code 2: the user's input)."""

    exit_code = 2


class _Printer(NumPyPrinter):
    """numpy code with ``np.`` names and binary maximum/minimum (what programs look like)."""

    def _print_Max(self, expr: sp.Max) -> str:  # noqa: N802 - sympy's printer protocol
        return self._fold("np.maximum", expr.args)

    def _print_Min(self, expr: sp.Min) -> str:  # noqa: N802
        return self._fold("np.minimum", expr.args)

    def _fold(self, fn: str, args: Sequence[sp.Basic]) -> str:
        out = self._print(args[0])
        for a in args[1:]:
            out = f"{fn}({out}, {self._print(a)})"
        return out


def to_guess(text: str, spec: ProblemSpec) -> Guess:
    """Read one guess (code or expression) for ``spec``'s variables."""
    if not isinstance(text, str) or not text.strip():
        raise GuessError(f"guess {text!r}: give code or an expression as a non-empty string")
    stripped = textwrap.dedent(text).strip()
    try:
        ast.parse(stripped, mode="eval")
    except SyntaxError:
        return _code_guess(stripped, spec, text)
    return _expression_guess(stripped, spec, text)


def to_guesses(texts: Sequence[str] | str | None, spec: ProblemSpec) -> list[Guess]:
    if texts is None:
        return []
    if isinstance(texts, str):
        texts = [texts]
    return [to_guess(t, spec) for t in texts]


def _code_guess(code: str, spec: ProblemSpec, original: str) -> Guess:
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise GuessError(f"guess {original.strip()[:60]!r} is neither an expression nor "
                         f"Python code (line {exc.lineno}: {exc.msg})") from None
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if not defs:  # a body: `return ...`, maybe with assignments before it
        code = f"{signature(spec)}\n{textwrap.indent(code, '    ')}\n"
    elif not any(d.name == ENTRY for d in defs):
        last = defs[-1].name  # the user named their function otherwise: that is the equation
        code = re.sub(rf"\bdef {re.escape(last)}\(", f"def {ENTRY}(", code, count=1)
    return Guess(code=code.rstrip() + "\n", text=original.strip())


def _expression_guess(text: str, spec: ProblemSpec, original: str) -> Guess:
    names = spec.input_names
    tree = ast.parse(text, mode="eval")
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
              and isinstance(n.func, ast.Name)}
    free: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in names and node.id not in _KNOWN \
                and node.id not in called and node.id not in free:
            free.append(node.id)
    try:
        expr = parse_truth(text, [*names, *free], exact=False)
    except NotConvertible as exc:
        raise GuessError(f"guess {original.strip()!r} cannot be read ({exc}); use the variable "
                         f"names {names} and numpy/sympy functions") from None
    if not expr.free_symbols & {sp.Symbol(n, real=True) for n in names}:
        consts = f" (names that are not variables are fitted constants: {', '.join(free)})" if free else ""
        raise GuessError(f"guess {original.strip()!r} uses none of the variables {names}{consts}")
    params: dict[sp.Basic, sp.Symbol] = {}
    start: list[float] = []
    for name in free:
        params[sp.Symbol(name, real=True)] = sp.Symbol(f"params[{len(start)}]")
        start.append(1.0)

    def lift(e: sp.Basic) -> sp.Basic:
        """Numbers become constants, except exponents and the signs/units 0, 1, -1."""
        if e.is_Number:
            if e in (sp.Integer(0), sp.Integer(1), sp.Integer(-1)):
                return e
            start.append(float(e))
            return sp.Symbol(f"params[{len(start) - 1}]")
        if e.is_Pow:
            return sp.Pow(lift(e.base), e.exp, evaluate=False)
        if e.is_Atom or not e.args:
            return e
        return e.func(*[lift(a) for a in e.args])

    expr = lift(expr.xreplace(params))
    body = _Printer().doprint(expr)
    body = re.sub(r"\bnumpy\.", "np.", body)
    code = f"{signature(spec)}\n    return {body}\n"
    return Guess(code=code, start=tuple(start), text=original.strip())


def _short(f: sp.Float) -> str:
    return repr(float(f)).rstrip("0").rstrip(".")
