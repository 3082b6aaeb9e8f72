"""The evolved function's name, defined once: ``equation`` in every program.

Prompts show the k-th program as ``equation_v<k>`` (LLM-SR's form), parsing renames the
answer back, the evaluator runs ``equation``, the analysis converts it and problem
validation keeps it out of variable names: all of them take the name from here.
"""

from __future__ import annotations

#: the evolved function's name in every program
ENTRY = "equation"


def versioned(k: int) -> str:
    """The name of the ``k``-th program in a prompt (``equation_v0``, ``equation_v1``, …)."""
    return f"{ENTRY}_v{k}"
