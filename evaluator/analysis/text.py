"""A program as a one-line equation: its closed form with constants, or its return line.

What the live view shows for the best program so far. The CLI hands ``equation_text`` to
the view (``LiveProgress(equation=...)``), so the search side never imports the analysis.
Conversion is an AST walk bounded by size limits; programs longer than ``max_chars`` are
not converted at all, so a redraw stays cheap.
"""

from __future__ import annotations

import ast

from eqforge.evaluator.analysis.closed_form import closed_form


def return_line(program: str) -> str:
    """The last ``return`` expression (the view's fallback when there is no closed form)."""
    lines = [ln.strip() for ln in program.splitlines() if ln.strip().startswith("return ")]
    return lines[-1][len("return "):] if lines else program.strip().splitlines()[-1]


def equation_text(program: str | None, params: list[float] | None, max_chars: int = 4000) -> str:
    """The best program as an equation: closed form with constants, or its return line."""
    if not program:
        return "–"
    if len(program) > max_chars:
        return return_line(program)
    try:
        fn = next((n for n in ast.parse(program).body if isinstance(n, ast.FunctionDef)), None)
        if fn is not None:
            names = [a.arg for a in fn.args.args[:-1]]
            cf = closed_form(program, names, params)
            if cf.ok:
                return cf.text
    except Exception:  # noqa: BLE001 - a view must never break the run
        pass
    return return_line(program)
