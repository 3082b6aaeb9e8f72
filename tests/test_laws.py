"""Distinct laws: programs of one equation family are grouped, different families never."""

from __future__ import annotations

import pytest

from eqforge.evaluator.analysis import closed_form
from eqforge.evaluator.analysis.laws import group_laws, law_key

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


def test_report_tables_list_each_law_once(tmp_path):
    """A run whose answers respell the seed's linear law: one row, with its variant count."""
    import json
    import re

    import numpy as np

    from eqforge import EquationRegressor
    from eqforge.evaluator.report import write_report

    answers = ["    return params[0]*x + params[1]*v + params[2]\n",
               "    return params[0]*x + params[1]*v + params[2]*x + params[3]\n",
               "    a = params[0]*x\n    return a + params[1]*v + params[2] + params[5]\n",
               "    return params[0]*np.sin(x) + params[1]*v\n"]
    replay = tmp_path / "answers.jsonl"
    replay.write_text("".join(json.dumps({"response": a}) + "\n" for a in answers))
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(60, 2))
    y = 0.8 * np.sin(X[:, 0]) - 0.3 * X[:, 1]
    model = EquationRegressor(f"replay:{replay}", samples=4, workers=1, quiet=True,
                              out=tmp_path / "run").fit(X, y, variable_names=["x", "v"])
    html = write_report(model.run_dir_).read_text()
    top = html[html.index("id='top'"):html.index("id='pareto'")]
    rows = re.findall(r"<tr><td>\d+</td><td>([^<]+)</td>.*?<td class='num'>(\d+)</td></tr>", top)
    assert len(rows) == 2  # the linear law (seed + 3 respellings) and the sine law
    assert sorted(int(n) for _, n in rows) == [1, 4]  # the seed and three respellings
    md = write_report(model.run_dir_, fmt="markdown").read_text()
    assert "| variants |" in md
