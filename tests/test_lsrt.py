"""``lsrt-<id>-<var>``: Feynman equations solved for an input (LSR-Transform style).

Every problem's declared ground truth must reproduce its own data (it is a solved form of
the original law, sampled on the original ranges), generation must be deterministic and
fast, and the committed derivation must be what sympy derives.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from eqforge.problems.feynman import BY_NAME
from eqforge.problems.library import evaluate_expression
from eqforge.problems.lsrt import PREFIX, _solve, choose_branch, make_lsrt, transformed
from eqforge.problems.lsrt_table import TABLE
from eqforge.problems.registry import list_problems, load_problem


def test_listed_and_counted() -> None:
    names = [n for n in list_problems() if n.startswith(PREFIX)]
    assert len(names) == sum(len(v) for v in TABLE.values()) >= 90
    assert len(TABLE) >= 35  # equations that give at least one problem, of 43
    assert "lsrt-I.12.1-mu" in names and "lsrt-I.14.3-m" in names


def test_every_problem_reproduces_its_ground_truth() -> None:
    start = time.monotonic()
    for name, t in transformed().items():
        p = load_problem(name)
        assert p.spec.output.name == t.var and t.var not in p.input_names
        assert p.input_names[-1] == t.eq.output.name  # the original output is now an input
        for split in ("train", "test_id", "test_ood"):
            s = p.split(split)
            assert s is not None and s.n > 0
            cols = dict(zip(p.input_names, s.X.T, strict=True))
            pred = np.broadcast_to(evaluate_expression(p.spec.ground_truth, cols), (s.n,))
            assert np.allclose(pred, s.y, rtol=1e-6, atol=1e-9), (name, split)
    assert time.monotonic() - start < 120  # seconds, not a derivation


def test_deterministic_per_seed() -> None:
    a = make_lsrt("lsrt-I.39.22-V", 3)
    make_lsrt.cache_clear()
    b = make_lsrt("lsrt-I.39.22-V", 3)
    c = make_lsrt("lsrt-I.39.22-V", 4)
    assert np.array_equal(a.train.X, b.train.X) and np.array_equal(a.train.y, b.train.y)
    assert not np.array_equal(a.train.X, c.train.X)


def test_branches_single_valued_on_the_range_only() -> None:
    r = BY_NAME["feynman-I.12.4"]  # Ef = q/(4 pi eps r**2), r > 0: only the positive root is r
    roots = ["-2.99792458082254*sqrt(q)*sqrt(1/Ef)", "2.99792458082254*sqrt(q)*sqrt(1/Ef)"]
    assert choose_branch(r, "r", roots[:1]) is None
    assert choose_branch(r, "r", roots) == roots[1]
    x = BY_NAME["feynman-I.14.4"]  # U = k x**2 / 2 with x in [-0.5, 0.5]: each root is right on half
    assert choose_branch(x, "x", ["-sqrt(2)*sqrt(U/k_spring)", "sqrt(2)*sqrt(U/k_spring)"]) is None
    assert "x" not in TABLE["I.14.4"]


@pytest.mark.parametrize("eq_id, var", [("I.12.1", "mu"), ("I.39.22", "V"), ("I.14.4", "k_spring")])
def test_committed_table_is_what_sympy_derives(eq_id: str, var: str) -> None:
    eq = BY_NAME[f"feynman-{eq_id}"]
    assert choose_branch(eq, var, _solve(eq_id, var)) == TABLE[eq_id][var]
