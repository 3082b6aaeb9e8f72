"""Fitting a program's constants to the training data, in the trusted zygote.

* ``options`` — what a fit is asked for (``FitOptions``) and returns (``FitResult``);
* ``projection`` — residuals with the affine params solved out (variable projection);
* ``search`` — start points, subsamples and Levenberg–Marquardt runs;
* ``default`` — the default fitter: search on a subsample, polish on all rows;
* ``llmsr`` — LLM-SR's own procedure (BFGS from ones), for comparisons and as a start.
"""

from eqforge.evaluator.fit.default import fit_default
from eqforge.evaluator.fit.llmsr import fit_llmsr
from eqforge.evaluator.fit.options import FitOptions, FitResult

__all__ = ["FitOptions", "FitResult", "fit_default", "fit_llmsr"]
