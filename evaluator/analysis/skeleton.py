"""From program to skeleton: ``to_sympy`` and ``parse_truth``, the entry points of conversion.

The candidate is untrusted, so it is never executed: ``to_sympy`` checks the program's
size and shape (no loops, no ``try``/``with``), then walks it with ``converter``'s
interpreter, inputs as real symbols and ``params[i]`` as ``c<i>`` (the *skeleton*).
``parse_truth`` reads a problem's ground truth (sympy syntax, bare names) the same way,
without ``eval``.
"""

from __future__ import annotations

import ast
from typing import Any

import sympy as sp

from eqforge.evaluator.analysis.complexity import complexity
from eqforge.evaluator.analysis.converter import SHARED, _Converter
from eqforge.evaluator.analysis.functions import (
    MAX_AST_NODES,
    NotConvertible,
    _as_expr,
    _Func,
    _is_condition,
    _Params,
    _Return,
)
from eqforge.problems.entry import ENTRY


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
             entry: str = ENTRY) -> sp.Expr:
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
    local[SHARED] = {a.arg for a in args.args}  # the caller's arrays: in-place ops mutate them
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
