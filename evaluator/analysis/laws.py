"""Distinct laws: programs that state the same equation family, grouped as one.

An LLM writes the same law many ways — ``params[0]*x + params[1]*v``, the same with a
``params[2]*x`` term the fit sets to zero, the same with a helper variable — and a table of
the best programs then lists one linear law seven times at complexities 9, 13 and 19. Two
programs state the same law when their skeletons agree once every free constant is
collapsed: any sub-expression made of constants alone is one constant ``K``, terms that
differ only in their constant coefficient merge (``c0*x + c1*x`` is ``K*x``), and a
constant factor in front of a sum is absorbed by the sum's own coefficients
(``c0*(c1*x + c2)`` is ``K*x + K``). Fixed numbers stay (``x + 3`` is not ``x + K``).
The comparison is structural on the collapsed (and, where available, simplified) skeleton,
so it never merges two different families; it may leave two spellings of one family apart
when only algebra beyond these rules shows them equal. (Tied constants, ``c0*x + c0*v``,
count as untied.)

``group_laws`` keeps the simplest variant of each law (lowest complexity, then lowest
loss) and counts the others; the estimator's equation table and the report's top-equations
table both show laws, not programs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import sympy as sp

from eqforge.evaluator.analysis.closed_form import ClosedForm
from eqforge.evaluator.analysis.complexity import complexity
from eqforge.evaluator.analysis.functions import NotConvertible

T = TypeVar("T")

K = sp.Symbol("K", real=True)  # every free constant, after collapsing


def _is_constant(e: sp.Basic, variables: frozenset[sp.Symbol]) -> bool:
    return not (e.free_symbols & variables)


def _collapse(e: sp.Basic, variables: frozenset[sp.Symbol]) -> sp.Basic:
    if _is_constant(e, variables):
        return K if e.free_symbols else e  # fitted constants -> K; fixed numbers stay
    if e.is_Symbol:
        return e
    if e.is_Add:
        return _collapse_sum(sp.Add.make_args(e), variables)
    if e.is_Mul:
        const, rest = e.as_independent(*variables, as_Add=False)
        inner = [_collapse(f, variables) for f in sp.Mul.make_args(rest)]
        body = sp.Mul(*inner)
        if not const.free_symbols:  # a fixed number in front
            return const * body
        if body.is_Add:  # K * (a + b): the terms' own constants absorb K
            return _collapse_sum([K * t for t in sp.Add.make_args(body)], variables)
        return K * body
    if e.is_Pow:
        return sp.Pow(_collapse(e.base, variables), _collapse(e.exp, variables))
    if e.args:
        return e.func(*[_collapse(a, variables) for a in e.args])
    return e


def _collapse_sum(terms: Iterable[sp.Basic], variables: frozenset[sp.Symbol]) -> sp.Basic:
    """Merge terms by their variable part; one ``K`` per part that has a free constant."""
    parts: dict[sp.Basic, tuple[sp.Basic, bool]] = {}
    free_const = False
    fixed = sp.Integer(0)
    for t in terms:
        if _is_constant(t, variables):
            if t.free_symbols:
                free_const = True
            else:
                fixed += t
            continue
        coeff, rest = t.as_independent(*variables, as_Add=False)
        rest = _collapse(rest, variables)
        num, has_k = parts.get(rest, (sp.Integer(0), False))
        if coeff.free_symbols:
            parts[rest] = (num, True)
        else:
            parts[rest] = (num + coeff, has_k)
    out = [(K if has_k else num) * rest for rest, (num, has_k) in parts.items()]
    out.append(K if free_const else fixed)
    return sp.Add(*out)


def law_of(skeleton: sp.Expr, input_names: list[str]) -> sp.Basic:
    """The skeleton with its free constants collapsed (see the module doc)."""
    variables = frozenset(sp.Symbol(n, real=True) for n in input_names)
    out = _collapse(skeleton, variables)
    # a second pass settles forms the first pass created (K*K, K + K inside functions)
    return _collapse(out, variables)


def law_key(cf: ClosedForm | None, input_names: list[str]) -> str | None:
    """A string equal for programs of the same law; ``None`` without a closed form.

    The helper process (``worker``) computes it beside the printing and stores it in
    ``cf.law`` ("" for none), so grouping in the caller only compares strings."""
    if cf is None or not cf.ok or cf.skeleton is None:
        return None
    if cf.law is not None:
        return cf.law or None
    try:
        law = law_of(cf.skeleton, input_names)
        complexity(law)  # bounded: refuses trees too large to print
    except (NotConvertible, RecursionError, TypeError, ValueError):
        return None
    return sp.srepr(law)


@dataclass
class Law(Generic[T]):
    """One law: its representative (the simplest variant) and every program stating it."""

    key: str | None
    entry: T
    variants: list[T] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.variants)


def group_laws(items: Iterable[T], key: Callable[[T], str | None],
               complexity_of: Callable[[T], int | None], loss_of: Callable[[T], float | None],
               ) -> list[Law[T]]:
    """Group ``items`` by law; the representative is the least complex, then least lossy
    variant. Items without a key stay alone. Laws come in the order of their first item."""
    laws: dict[str, Law[T]] = {}
    out: list[Law[T]] = []
    for item in items:
        k = key(item)
        if k is None:
            out.append(Law(None, item, [item]))
            continue
        law = laws.get(k)
        if law is None:
            law = laws[k] = Law(k, item, [])
            out.append(law)
        law.variants.append(item)

    def rank(item: T) -> tuple[float, float]:
        c, value = complexity_of(item), loss_of(item)
        return (float("inf") if c is None else c, float("inf") if value is None else value)

    for law in out:
        law.entry = min(law.variants, key=rank)
    return out


def entry_laws(entries: Iterable[T], input_names: list[str]) -> list[Law[T]]:
    """``group_laws`` for a run analysis' entries (best score first): by closed form,
    simplest variant kept, lower training MSE breaking ties."""
    return group_laws(entries, key=lambda e: law_key(e.closed_form, input_names),  # type: ignore[attr-defined]
                      complexity_of=lambda e: e.complexity,  # type: ignore[attr-defined]
                      loss_of=lambda e: -e.score)  # type: ignore[attr-defined]
