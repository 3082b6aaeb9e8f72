"""Problems: the format, built-in definitions and data loading."""

from eqforge.problems.registry import describe_problem, list_problems, load_problem
from eqforge.problems.spec import Problem, ProblemSpec, Split, Variable

__all__ = ["Problem", "ProblemSpec", "Split", "Variable", "describe_problem", "list_problems", "load_problem"]
