"""A program as a one-line equation: its closed form with constants, or its return line.

What the live view shows for the best program so far. The CLI hands ``equation_text`` to
the view (``LiveProgress(equation=...)``), so the search side never imports the analysis.
The view calls it on the event loop whenever the best program changes, so it must be cheap
whatever the program is: programs longer than ``max_chars`` are not converted at all, the
conversion and printing run in a helper process (``worker``) under a short deadline (the
return line is shown when it passes), and answers are cached per program and constants.
"""

from __future__ import annotations

import ast
import atexit
import threading
from collections import OrderedDict

from eqforge.evaluator.analysis.closed_form import PARTS, ClosedForm, closed_form

#: deadline for one conversion on behalf of the live view (it blocks a redraw at most this long)
TEXT_TIMEOUT = 1.0
_CACHE_SIZE = 256

_lock = threading.Lock()
_cache: OrderedDict[tuple[str, tuple[float, ...] | None], str] = OrderedDict()
_worker = None


def return_line(program: str) -> str:
    """The last ``return`` expression (the view's fallback when there is no closed form)."""
    lines = [ln.strip() for ln in program.splitlines() if ln.strip().startswith("return ")]
    if lines:
        return lines[-1][len("return "):]
    rest = program.strip().splitlines()
    return rest[-1] if rest else "–"


def equation_text_here(program: str, params: list[float] | None) -> str:
    """The conversion itself, in this process (the helper runs it; so may tests)."""
    try:
        fn = next((n for n in ast.parse(program).body if isinstance(n, ast.FunctionDef)), None)
        if fn is not None:
            names = [a.arg for a in fn.args.args[:-1]]
            cf = closed_form(program, names, params)
            if cf.ok:
                return cf.render().text
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    return return_line(program)


def _shared_worker():  # noqa: ANN202 - SymbolicWorker, imported lazily (it imports this module)
    global _worker
    if _worker is None:
        from eqforge.evaluator.analysis.worker import SymbolicWorker

        _worker = SymbolicWorker()
        atexit.register(_worker.close)
    return _worker


#: deadline for printing a closed form that was not printed with its conversion
RENDER_TIMEOUT = 10.0
NOT_PRINTED = "(not printed: the helper process ran out of time)"


def render_in_helper(cf: ClosedForm) -> dict[str, str]:
    """Every printed form of ``cf``, printed in the shared helper process under a deadline."""
    with _lock:
        out = _shared_worker().call("render", cf, timeout=RENDER_TIMEOUT)
    if isinstance(out, dict):
        return out
    return {part: NOT_PRINTED for part in PARTS}


def equation_text(program: str | None, params: list[float] | None, max_chars: int = 4000) -> str:
    """The best program as an equation: closed form with constants, or its return line."""
    if not program:
        return "–"
    if len(program) > max_chars:
        return return_line(program)
    key = (program, tuple(float(p) for p in params) if params else None)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        text = _shared_worker().call("text", program, list(params) if params else None,
                                     timeout=TEXT_TIMEOUT)
        if not isinstance(text, str):
            text = return_line(program)
        _cache[key] = text
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return text
