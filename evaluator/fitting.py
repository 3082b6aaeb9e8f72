"""Compatibility name for ``evaluator.fit``: the fitter now lives in that subpackage."""

from eqforge.evaluator.fit import FitOptions, FitResult, fit_default, fit_llmsr

__all__ = ["FitOptions", "FitResult", "fit_default", "fit_llmsr"]
