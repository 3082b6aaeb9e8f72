"""eqforge: LLM-driven scientific equation discovery.

``EquationRegressor`` (scikit-learn estimator) and ``discover`` / ``adiscover`` (the run
API) are imported lazily, so ``import eqforge`` stays cheap for the command line.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EquationRegressor", "adiscover", "discover"]


def __getattr__(name: str) -> Any:
    if name == "EquationRegressor":
        from eqforge.estimator import EquationRegressor

        return EquationRegressor
    if name in ("discover", "adiscover"):
        from eqforge import api

        return getattr(api, name)
    raise AttributeError(f"module 'eqforge' has no attribute {name!r}")
