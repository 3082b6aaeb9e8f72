"""Symbolic accuracy's ``recheck`` runs every sympy step on a candidate's law in the killable
helper (issue 21 via issue 24): a step that overruns or kills the helper gives "unknown"
with its reason, never "not recovered", and never hangs or crashes the caller."""

from __future__ import annotations

import os
import time

import pytest

from eqforge.evaluator.analysis import worker
from eqforge.evaluator.analysis.symbolic_accuracy import recheck

NAMES = ["x", "v"]
GOOD = "import numpy as np\ndef equation(x, v, params):\n    return params[0]*x + params[1]*v\n"
#: literals far beyond float range, and a law whose exact form would be enormous
HOSTILE = [
    "import numpy as np\ndef equation(x, v, params):\n"
    "    return params[0]*x + params[1]*v + np.exp(-(1e12**64)**5)\n",
    "import numpy as np\ndef equation(x, v, params):\n"
    "    t = np.float64(9e11)**64\n    return params[0]*x + np.minimum(x, t*t*t*t*t*t) - x\n",
    "import numpy as np\ndef equation(x, v, params):\n"
    "    return params[0]*(x + v + 1.0)**400 + params[1]*v\n",
]


def test_good_law_is_recovered():
    r = recheck(GOOD, [1.0, 2.0], "x + 2*v", NAMES)
    assert r.status == "recovered", r.detail


@pytest.mark.parametrize("program", HOSTILE)
def test_hostile_law_is_answered_quickly_with_a_reason(program):
    start = time.perf_counter()
    r = recheck(program, [1.0, 2.0], "x + 2*v", NAMES)
    assert time.perf_counter() - start < 20.0
    assert r.status in ("unknown", "not recovered") and r.detail


def test_conversion_runs_in_the_helper_and_its_deadline_gives_unknown(monkeypatch):
    # the helper is forked after this patch: a conversion that never ends there
    monkeypatch.setitem(worker._OPS, "convert", lambda *a: time.sleep(60))
    start = time.perf_counter()
    r = recheck(GOOD, [1.0, 2.0], "x + 2*v", NAMES, convert_timeout=0.2)
    assert time.perf_counter() - start < 5.0
    assert r.recovered is None and r.status == "unknown" and "timeout" in r.detail


def test_check_deadline_gives_unknown(monkeypatch):
    monkeypatch.setitem(worker._OPS, "recover", lambda *a: time.sleep(60))
    r = recheck(GOOD, [1.0, 2.0], "x + 2*v", NAMES, recovery_timeout=0.2)
    assert r.status == "unknown" and "did not finish" in r.detail


def test_helper_that_dies_gives_unknown(monkeypatch):
    monkeypatch.setitem(worker._OPS, "convert", lambda *a: os._exit(9))
    with worker.SymbolicWorker() as w:  # a shared helper survives for the next law
        r = recheck(GOOD, [1.0, 2.0], "x + 2*v", NAMES, worker=w)
        assert r.status == "unknown" and "helper-failed" in r.detail
