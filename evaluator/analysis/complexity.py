"""Complexity of an expression: its node count, capped, as PySR and LLM-SR count it."""

from __future__ import annotations

import sympy as sp

from eqforge.evaluator.analysis.functions import MAX_EXPR_NODES, NotConvertible


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
