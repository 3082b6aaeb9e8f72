"""Model and program text inside a markdown report: inert, whatever it contains.

An agent message holding a line of four backticks used to close the transcript's fence, so
the ``<script>`` or ``<img onerror>`` after it became live HTML in any renderer that passes
HTML through. Code goes in a fence longer than every backtick run inside it (CommonMark: a
fence closes only on a run at least as long as its opener); inline code in a span likewise;
text outside code has ``&``, ``<`` and ``>`` escaped, so no raw HTML survives. Each helper is
linear in its input.
"""

from __future__ import annotations

import html
import re
from typing import Any

_TICKS_RE = re.compile(r"`+")


def _longest_run(text: str) -> int:
    return max((len(m) for m in _TICKS_RE.findall(text)), default=0)


def md_fence(body: Any, lang: str = "") -> list[str]:
    """Lines of a fenced block holding ``body`` verbatim (the fence outlasts any run inside)."""
    text = str(body)
    ticks = "`" * max(3, _longest_run(text) + 1)
    return [ticks + lang, text, ticks]


def md_code(text: Any) -> str:
    """An inline code span of ``text`` on one line."""
    s = " ".join(str(text).splitlines())
    ticks = "`" * (_longest_run(s) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{ticks}{pad}{s}{pad}{ticks}"


_MD_PUNCT_RE = re.compile(r"([\\`*_\[\]])")


def md_text(text: Any) -> str:
    """Text outside code: raw HTML escaped (``&``, ``<``, ``>``) and the characters that
    start code, emphasis, links or images (``\\ ` * _ [ ]``) backslash-escaped, so it shows
    as written and builds no markup (no ``![](url)`` image either)."""
    return _MD_PUNCT_RE.sub(r"\\\1", html.escape(str(text), quote=False))


def md_cell(text: Any) -> str:
    """A table cell: escaped text on one line, pipes escaped."""
    return md_text(" ".join(str(text).splitlines())).replace("|", "\\|")


def md_math(latex: Any, *, cell: bool = True) -> str:
    """LaTeX between ``$`` signs: one line, ``<``/``>`` as ``\\lt``/``\\gt`` (sympy writes them in
    piecewise conditions; as characters they could open a tag); in a table cell pipes escaped."""
    s = " ".join(str(latex).splitlines()).replace("<", "\\lt ").replace(">", "\\gt ")
    return s.replace("|", "\\|") if cell else s


__all__ = ["md_cell", "md_code", "md_fence", "md_math", "md_text"]
