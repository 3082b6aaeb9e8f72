"""Distinct laws: programs of one equation family are grouped, different families never."""

from __future__ import annotations

import pytest

from eqforge.evaluator.laws import group_laws, law_key
from eqforge.evaluator.symbolic import closed_form

NAMES = ["x", "v"]


def key(body: str) -> str | None:
    code = f"def equation(x, v, params):\n{body}\n"
    return law_key(closed_form(code, NAMES, [0.5] * 10), NAMES)


LINEAR = "    return params[0]*x + params[1]*v + params[2]"


@pytest.mark.parametrize("body", [
    "    return params[0]*x + params[1]*v + params[2]*x + params[3]",  # c0*x + c2*x
    "    a = params[0]*x\n    b = params[1]*v\n    return a + b + params[2] + params[4]",
    "    return params[5]*(params[0]*x + params[1]*v + params[2])",  # constant factor on a sum
    "    return params[0]*x/params[3] + 2*params[1]*v + params[2]*params[6]",
])
def test_spellings_of_one_law_share_a_key(body):
    assert key(body) == key(LINEAR) is not None


@pytest.mark.parametrize("body", [
    "    return params[0]*x + params[1]*v",  # no intercept
    "    return x + params[1]*v + params[2]",  # fixed coefficient
    "    return params[0]*x + params[1]*v**2 + params[2]",
    "    return params[0]*np.sin(x) + params[1]*v + params[2]",
])
def test_different_laws_have_different_keys(body):
    assert key(body) != key(LINEAR)


def test_constants_inside_functions_collapse():
    a = key("    return params[0]*np.sin(params[1]*x + params[2]*x) + params[3]*v**3")
    b = key("    return params[0]*np.sin(params[1]*x) + 2*params[3]*v*v*v")
    assert a == b is not None


def test_no_closed_form_has_no_key():
    assert key("    out = x\n    for _ in range(2):\n        out = out * x\n    return out") is None


def test_group_keeps_simplest_variant_and_counts():
    items = [("a", "k1", 13, 1e-3), ("b", "k1", 9, 2e-3), ("c", None, None, 5e-3),
             ("d", "k2", 5, 1.0), ("e", "k1", 9, 1e-3)]
    laws = group_laws(items, key=lambda t: t[1], complexity_of=lambda t: t[2],
                      loss_of=lambda t: t[3])
    assert [w.entry[0] for w in laws] == ["e", "c", "d"]  # first-seen order, simplest kept
    assert [w.count for w in laws] == [3, 1, 1]
