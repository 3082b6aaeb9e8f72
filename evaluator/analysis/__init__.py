"""After the run, as science: what the programs a run found say as equations.

    functions    what numpy/math/scipy.special names mean in sympy; limits; NotConvertible
    converter    the AST interpreter: statements and expressions of a program in sympy
    skeleton     program source -> sympy skeleton (to_sympy); ground truths (parse_truth)
    complexity   node count of an expression
    closed_form  skeleton + fitted constants -> the closed form a person reads
    recovery     does a closed form equal the problem's ground truth (recovered / not / unknown)
    verify       does a closed form predict what the sandbox scored (verified / unverified / unknown)
    worker       every sympy step on a candidate's expression in a killable helper (deadlines)
    pareto       the accuracy–complexity front
    laws         programs grouped by the law they state
    run          a run's records analysed (entries, front, recovery) and its summary enriched
    text         a best program as a one-line equation (what the live view shows)

Nothing here runs during the search: the API enriches a run's summary after the loop, the
report and the estimator read runs afterwards; the loop and the live view never import it
(the import contract in pyproject.toml says so).
"""

from eqforge.evaluator.analysis.closed_form import (
    ClosedForm,
    closed_form,
    fill_constants,
    round_sig,
    rounded,
    simplified,
)
from eqforge.evaluator.analysis.complexity import complexity
from eqforge.evaluator.analysis.functions import NotConvertible
from eqforge.evaluator.analysis.pareto import pareto_front
from eqforge.evaluator.analysis.recovery import Recovery, recovery
from eqforge.evaluator.analysis.run import Entry, RunAnalysis, analyse_run, distinct_valid, enrich_summary
from eqforge.evaluator.analysis.skeleton import constant_symbol, input_symbols, parse_truth, to_sympy
from eqforge.evaluator.analysis.text import equation_text
from eqforge.evaluator.analysis.verify import Verification
from eqforge.evaluator.analysis.worker import SymbolicWorker

__all__ = [
    "ClosedForm", "Entry", "NotConvertible", "Recovery", "RunAnalysis", "SymbolicWorker", "Verification",
    "analyse_run",
    "closed_form", "complexity", "constant_symbol", "distinct_valid", "enrich_summary", "equation_text",
    "fill_constants", "input_symbols", "pareto_front", "parse_truth", "recovery", "round_sig", "rounded",
    "simplified", "to_sympy",
]
