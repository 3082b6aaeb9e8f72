"""scikit-learn's own estimator checks, run on EquationRegressor with a replay model.

Every check runs a real (short) discovery run — sandbox, fit, records — so a model that
never answers usefully keeps them quick: the seed program (linear in all inputs) is what
gets fitted. The checks that cannot apply to this estimator are marked, with the reason.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from eqforge import EquationRegressor

REPLAY = Path(__file__).parent / "data" / "unhelpful_responses.jsonl"

NOT_APPLICABLE = {
    "check_dtype_object": (
        "a non-numeric cell is reported like file loading does (ValueError naming the column "
        "and row), not as numpy's TypeError 'argument must be a string or a number'"),
}


@pytest.fixture(autouse=True)
def _run_dirs_in_tmp(tmp_path, monkeypatch):
    """Each fit makes a temporary run directory; keep them under pytest's tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.mark.slow
@parametrize_with_checks(
    [EquationRegressor(llm=f"replay:{REPLAY}", samples=1, workers=1, quiet=True)],
    expected_failed_checks=lambda est: NOT_APPLICABLE,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
