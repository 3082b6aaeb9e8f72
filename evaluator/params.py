"""Which ``params[i]`` a program reads, found from its AST.

Only those are fitted. A computed index (``params[i]``, slices, ``params`` passed whole to
a helper or unpacked) makes the set unknowable statically, so the fitter falls back to all
``max_params`` parameters rather than guess.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class ParamUsage:
    indices: tuple[int, ...]
    exact: bool  # False: a computed index was seen, fit all declared params
    highest: int  # highest constant index seen, -1 if none

    def fit_indices(self, max_params: int) -> tuple[int, ...]:
        return self.indices if self.exact else tuple(range(max(max_params, self.highest + 1)))


def param_usage(code: str, name: str = "params") -> ParamUsage:
    tree = ast.parse(code)
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
        if isinstance(node.ctx, ast.Store) or isinstance(parent, ast.arg):
            continue
        if isinstance(parent, ast.Subscript) and parent.value is node:
            idx = parent.slice
            if isinstance(idx, ast.Constant) and isinstance(idx.value, int) and not isinstance(idx.value, bool):
                if idx.value >= 0:
                    found.add(idx.value)
                    continue
            if (
                isinstance(idx, ast.UnaryOp)
                and isinstance(idx.op, ast.USub)
                and isinstance(idx.operand, ast.Constant)
            ):
                exact = False
                continue
            exact = False
        else:
            exact = False
    highest = max(found) if found else -1
    return ParamUsage(tuple(sorted(found)), exact, highest)
