"""Which ``params[i]`` a program reads, found from its AST.

Only those are fitted. Constant indices (``params[3]``) and constant slices
(``params[:4]``, ``params[2:5]``) are read exactly. Anything that makes the set unknowable
statically — a computed index (``params[i]``), a negative one, ``params`` passed whole to
a helper, aliased or unpacked — makes the usage inexact, and the fitter falls back to all
``max_params`` parameters rather than guess.

The params argument is the last positional parameter of ``equation`` (``params`` in
LLM-SR's template); a program that does not parse has an inexact, empty usage.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from eqforge.problems.entry import ENTRY


@dataclass(frozen=True)
class ParamUsage:
    indices: tuple[int, ...]
    exact: bool  # False: something was seen that hides which params are read; fit all
    highest: int  # highest constant index seen, -1 if none

    def fit_indices(self, max_params: int) -> tuple[int, ...]:
        return self.indices if self.exact else tuple(range(max(max_params, self.highest + 1)))


def _const_int(node: ast.AST | None) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


def _params_name(tree: ast.AST, entry: str, default: str) -> str:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry:
            positional = [*node.args.posonlyargs, *node.args.args]
            if positional and not any(a.arg == default for a in positional):
                return positional[-1].arg
            break
    return default


def param_usage(code: str, name: str = "params", entry: str = ENTRY) -> ParamUsage:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return ParamUsage((), False, -1)
    name = _params_name(tree, entry, name)
    found: set[int] = set()
    exact = True
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Name) and node.id == name):
            continue
        parent = parents.get(node)
        if isinstance(node.ctx, ast.Store | ast.Del):
            exact = False  # rebound: what it names later is unknown
            continue
        if not (isinstance(parent, ast.Subscript) and parent.value is node):
            exact = False  # passed whole, aliased, unpacked, iterated...
            continue
        index = parent.slice
        value = _const_int(index)
        if value is not None and value >= 0:
            found.add(value)
            continue
        if isinstance(index, ast.Slice):
            lower = 0 if index.lower is None else _const_int(index.lower)
            upper = _const_int(index.upper)
            step = 1 if index.step is None else _const_int(index.step)
            if lower is not None and upper is not None and step and lower >= 0 and upper >= 0 and step > 0:
                found.update(range(lower, upper, step))
                continue
        exact = False
    highest = max(found) if found else -1
    return ParamUsage(tuple(sorted(found)), exact, highest)
