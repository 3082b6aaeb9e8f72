"""Fitting a program's constants to the training data, in the trusted zygote.

* ``options`` — what a fit is asked for (``FitOptions``) and returns (``FitResult``);
* ``projection`` — residuals with the affine params solved out (variable projection);
* ``context`` — what the stages of one fit share (data, clock, objectives, notes);
* ``search`` — start points, subsamples, Levenberg–Marquardt runs and ``explore``;
* ``polish`` — re-ranking and polishing the search's minima on all rows;
* ``default`` — the default fitter: LLM-SR's start, then search and polish; the lower;
* ``llmsr`` — LLM-SR's own procedure (BFGS from ones), for comparisons and as a start.
"""

from eqforge.evaluator.fit.default import fit_default
from eqforge.evaluator.fit.llmsr import fit_llmsr
from eqforge.evaluator.fit.options import FitOptions, FitResult

__all__ = ["FitOptions", "FitResult", "fit_default", "fit_llmsr"]
