"""Symbolic recovery: does a closed form equal the problem's ground truth (up to constants)?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy as sp

from eqforge.evaluator.analysis.closed_form import ClosedForm, _const_index, _sstr, round_sig
from eqforge.evaluator.analysis.functions import NotConvertible
from eqforge.evaluator.analysis.skeleton import parse_truth


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
