"""Feynman suites: eqforge's own (default), AI Feynman's and SRSD's published samplings."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

from eqforge.problems.feynman import EQUATIONS
from eqforge.problems.feynman_suites import AIFEYNMAN, LOGPM, SRSD
from eqforge.problems.library import PUBLISHED, make_published, ranges
from eqforge.problems.registry import list_problems, load_problem


def test_every_eqforge_equation_has_both_published_samplings() -> None:
    ids = [eq.id for eq in EQUATIONS]
    assert len(ids) == 43
    assert [e.id for e in AIFEYNMAN] == ids and [e.id for e in SRSD] == ids
    names = list_problems()
    for i in ids:
        for suite in ("feynman", "aifeynman", "srsd"):
            assert f"{suite}-{i}" in names
    assert "eqforge suite" in names["feynman-I.12.2"] and "srsd sampling" in names["srsd-I.12.2"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_problem_is_exact_deterministic_and_in_range(name: str) -> None:
    p = make_published.__wrapped__(name, 0)
    q = make_published.__wrapped__(name, 0)
    np.testing.assert_array_equal(p.train.X, q.train.X)
    assert not np.array_equal(p.train.X, make_published.__wrapped__(name, 1).train.X)
    spec = p.spec
    assert spec.description and all(v.description for v in spec.inputs)
    symbols = {n: sympy.Symbol(n) for n in p.input_names}
    expr = sympy.sympify(spec.ground_truth, locals=symbols)
    assert {str(s) for s in expr.free_symbols} == set(p.input_names)
    f = sympy.lambdify([symbols[n] for n in p.input_names], expr, "numpy")
    suite, pub = PUBLISHED[name]
    for split_name, split in p.splits.items():
        assert np.isfinite(split.y).all()
        pred = np.broadcast_to(f(*split.X.T), split.y.shape)
        atol = 1e-12 * float(np.max(np.abs(split.y)))  # underflow to 0 (exp of -1e4) is exact enough
        assert np.allclose(pred, split.y, rtol=1e-9, atol=atol), (name, split_name)
        for i, (v, (ind, ood)) in enumerate(zip(pub.inputs, ranges(name).values(), strict=True)):
            col = np.abs(split.X[:, i]) if v.kind == LOGPM else split.X[:, i]
            lo, hi = ood if split_name == "test_ood" else ind
            assert lo - 1e-12 * abs(lo) <= col.min() and col.max() <= hi * (1 + 1e-12), (name, v.name)


def test_published_facts() -> None:
    aif = load_problem("aifeynman-I.12.2")
    assert aif.input_names == ["q1", "q2", "epsilon", "r"]  # AI Feynman: the constant is an input
    assert aif.train.X.min() >= 1 and aif.train.X.max() <= 5
    assert "permittivity" in aif.spec.description
    srsd = load_problem("srsd-I.12.2")
    assert srsd.input_names == ["q1", "q2", "r"] and "8.854e-12" in srsd.spec.ground_truth
    log_r = np.log10(srsd.train.X[:, 2])  # log-uniform over two decades
    assert log_r.min() < -0.9 and log_r.max() > 0.9 and abs(np.median(log_r)) < 0.2
    assert (srsd.train.X[:, 0] < 0).any() and (srsd.train.X[:, 0] > 0).any()  # random sign
    assert load_problem("srsd-I.26.2").spec.ground_truth == "sin(theta1)/sin(theta2)"
    assert load_problem("aifeynman-I.39.10").spec.split["table_id"] == "I.39.1"
    n = load_problem("srsd-I.30.3").train.X[:, 1]
    assert np.array_equal(n, np.round(n))  # counts are integers


def test_description_fixes() -> None:
    heat = load_problem("feynman-II.2.42")
    t2, t1 = heat.input_names.index("T2"), heat.input_names.index("T1")
    for split in heat.splits.values():  # the hot face is hotter in every row
        assert (split.X[:, t2] > split.X[:, t1]).all() and (split.y > 0).all()
    probe = load_problem("feynman-I.13.12")
    r1, r2 = probe.input_names.index("r1"), probe.input_names.index("r2")
    assert all((s.X[:, r2] > s.X[:, r1]).all() for s in probe.splits.values())
    assert "climbs" in probe.spec.description and "falls" not in probe.spec.description
    wave = load_problem("feynman-II.27.18")
    assert "plane electromagnetic wave" in wave.spec.description
    assert wave.spec.ground_truth == "8.8541878128e-3*Ef**2"  # eps0 E^2: the wave's, not a static field's


def test_sweep_globs_over_suites(tmp_path) -> None:  # noqa: ANN001
    from eqforge.sweep.spec import expand_problem

    assert expand_problem("srsd-I.12.*", tmp_path) == [f"srsd-I.12.{k}" for k in ("1", "2", "4", "5", "11")]
    assert len(expand_problem("aifeynman-*", tmp_path)) == 43
