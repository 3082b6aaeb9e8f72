"""A program as a one-line equation: its closed form with constants, or its return line.

What the live view shows for the best program so far. The CLI hands ``equation_text`` to
the view (``LiveProgress(equation=...)``), so the search side never imports the analysis.
The view calls it on the event loop whenever the best program changes, so it must be cheap
whatever the program is: programs longer than ``max_chars`` are not converted at all, the
conversion and printing run in a helper process (``worker``) under a short deadline (the
return line is shown when it passes), and answers are cached per program and constants.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from eqforge.evaluator.analysis.worker import equation_text_here, return_line, shared_worker

__all__ = ["equation_text", "equation_text_here", "return_line"]

#: deadline for one conversion on behalf of the live view (it blocks a redraw at most this long)
TEXT_TIMEOUT = 1.0
_CACHE_SIZE = 256

_lock = threading.Lock()
_cache: OrderedDict[tuple[str, tuple[float, ...] | None], str] = OrderedDict()


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
    text = shared_worker().call("text", program, list(params) if params else None,
                                timeout=TEXT_TIMEOUT)
    if not isinstance(text, str):
        text = return_line(program)
    with _lock:
        _cache[key] = text
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return text
