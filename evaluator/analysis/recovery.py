"""Symbolic recovery: does a closed form equal the problem's ground truth (up to constants)?

The answer has three values: recovered (``True``), not recovered (``False``) and unknown
(``None``, with the reason: no verified closed form, a check beyond the work budget, or a
helper deadline that expired even after a retry). Unknown is never counted as "not
recovered". The work is budgeted by size (terms an expansion would create, operations
before ``simplify``), not by seconds, so the answer does not depend on the machine's load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import sympy as sp

from eqforge.evaluator.analysis.closed_form import ClosedForm, _const_index, _sstr, round_sig
from eqforge.evaluator.analysis.functions import NotConvertible
from eqforge.evaluator.analysis.skeleton import parse_truth

#: an expansion predicted to create more terms than this is not attempted
MAX_EXPANDED_TERMS = 2_000
#: ``simplify`` of the difference is attempted only up to this many operations
MAX_SIMPLIFY_OPS = 80

#: closed-form failures that say nothing about the law (the helper ran out of time)
UNDECIDED_REASONS = frozenset({"timeout", "helper-failed"})

STATUSES = {True: "recovered", False: "not recovered", None: "unknown"}


@dataclass
class Recovery:
    recovered: bool | None  # None: unknown (see ``detail``)
    detail: str
    truth: str = ""
    matched: str = ""  # the discovered law with constants snapped to the truth's
    max_constant_error: float | None = None

    @property
    def status(self) -> str:
        """``"recovered"``, ``"not recovered"`` or ``"unknown"``."""
        return STATUSES[self.recovered]

    def to_json(self) -> dict[str, Any]:
        return {"recovered": self.recovered, "status": self.status, "detail": self.detail,
                "ground_truth": self.truth, "matched": self.matched,
                "max_constant_error": self.max_constant_error}


def unknown(detail: str, truth: str = "") -> Recovery:
    return Recovery(None, detail, truth)


def expanded_terms(e: sp.Basic, cap: int = 10**9) -> int:
    """An upper estimate of the terms ``sympy.expand(e)`` creates (capped), computed on the
    tree without expanding: sums add, products multiply, ``(a + b + ...)**n`` counts the
    multinomial terms."""
    if e.is_Atom:
        return 1
    if e.is_Add:
        return min(cap, sum(expanded_terms(a, cap) for a in e.args))
    if e.is_Mul:
        out = 1
        for a in e.args:
            out = min(cap, out * expanded_terms(a, cap))
        return out
    if e.is_Pow and e.exp.is_Integer and int(e.exp) > 1:
        t = expanded_terms(e.base, cap)
        n = int(e.exp)
        if t == 1:
            return 1
        return min(cap, math.comb(n + t - 1, t - 1)) if t < 64 else cap
    return max(1, sum(expanded_terms(a, cap) for a in e.args)) if e.args else 1


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
    inconclusive). Constants that match nothing leave the law "not recovered". Without a
    closed form, or where the check would exceed its work budget, the answer is unknown.
    """
    try:
        truth = parse_truth(truth_text, input_names)
    except NotConvertible as exc:
        return unknown(f"ground truth not understood ({exc})", truth_text)
    if not cf.ok or cf.fitted is None:
        if cf.reason in UNDECIDED_REASONS:  # no answer was reached: not a result
            return unknown(f"no closed form ({cf.reason})", _sstr(truth))
        return Recovery(False, f"no closed form ({cf.reason})", _sstr(truth))
    if any(_const_index(s) is not None for s in cf.fitted.free_symbols):
        return unknown("some constants have no fitted value", _sstr(truth))
    if max(expanded_terms(cf.fitted), expanded_terms(truth)) > MAX_EXPANDED_TERMS:
        return unknown(f"the law expands to over {MAX_EXPANDED_TERMS} terms: beyond the "
                       "check's work budget", _sstr(truth))
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
    same: bool | None = diff == 0
    if not same and not diff.has(sp.Float):
        if sp.count_ops(diff) > MAX_SIMPLIFY_OPS:
            same = None
        else:
            same = sp.simplify(diff) == 0
    matched = _sstr(snapped)
    if same:
        return Recovery(True, f"equal to the ground truth; constants within {worst:.2g}",
                        _sstr(truth), matched, worst)
    if unmatched:
        why = f"constants {unmatched[:5]} match no constant of the ground truth"
    elif same is None:
        return Recovery(None, f"undecided: the difference from the ground truth has over "
                        f"{MAX_SIMPLIFY_OPS} operations, beyond the check's work budget",
                        _sstr(truth), matched, worst if repl else None)
    else:
        why = "the law differs from the ground truth"
    return Recovery(False, why, _sstr(truth), matched, worst if repl else None)
