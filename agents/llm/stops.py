"""Where a completion-style answer ends: the shared body-end rule.

A model asked to continue ``def equation_vN(...)`` writes the body and then, left alone,
keeps going (a next function, a test, padding). Every transport uses this one rule to stop
it: the in-process engines while they decode, and the OpenAI-compatible backend on the
client side while a server streams, so that a slow server is not paid to write what is cut
anyway. The stop sequences come from ``prompts.prompt.COMPLETION_STOPS`` (the same lines the
parser treats as body ends, ``BODY_ENDS``).
"""

from __future__ import annotations

import ast
import re

_COL0 = re.compile(r"\n(?=[^\s])")


_RETURN = re.compile(r"return\b")


def complete_return(line: str, base: str) -> bool:
    """Whether ``line`` is a whole ``return`` statement at the body's own indentation
    ``base``: after it the function can do nothing more (the rest is dead code)."""
    stripped = line.strip()
    if line[: len(line) - len(line.lstrip())] != base or not _RETURN.match(stripped):
        return False
    try:
        ast.parse(stripped)
    except (SyntaxError, ValueError):
        return False  # e.g. ``return (a +``, continued on the next line
    return True


def body_end(text: str) -> int | None:
    """Index where an indented function body ends, if it has: a line back at column 0, two
    blank lines, or the end of a complete ``return`` line at the body's indentation."""
    head = text.lstrip("\n")
    if not head or not head[0].isspace():
        return None  # an unindented answer: leave it to the stop sequences and the parser
    ends = [m.start() for m in _COL0.finditer(text) if text[: m.start()].strip()][:1]
    # two blank lines in a row: the function is over (what follows is the next top-level
    # statement, or a base model padding with newlines until max_tokens)
    gap = text.find("\n\n\n")
    if gap >= 0 and text[:gap].strip():
        ends.append(gap)
    # a top-level return: what a base model writes after it never runs (and often rambles)
    base, pos = None, 0
    while (nl := text.find("\n", pos)) >= 0:
        line, pos = text[pos:nl], nl + 1
        if not line.strip():
            continue
        if base is None:
            base = line[: len(line) - len(line.lstrip())]
        if complete_return(line, base):
            ends.append(nl)
            break
    return min(ends) if ends else None


def cut(text: str, stops: tuple[str, ...], completion: bool) -> tuple[str, bool]:
    """Trim ``text`` at the first stop sequence (and, for completion style, the body's end)."""
    ends = [i for s in stops if (i := text.find(s)) >= 0]
    if completion and (b := body_end(text)) is not None:
        ends.append(b)
    if ends:
        return text[: min(ends)], True
    return text, False



class StopScanner:
    """``cut(text, stops, completion)[1]`` computed incrementally, as text arrives in pieces.

    The transformers engine asks after every token whether a row is finished; scanning the
    whole answer each time costs O(length) per token. This looks only at the new piece plus
    a window as long as the longest stop sequence (a stop may straddle two pieces) and at
    the lines the piece completes, and keeps what ``body_end`` needs about the text before
    it: whether the body is indented, where its first non-blank character is, its
    indentation, and whether a complete return line at that indentation has gone by.
    """

    def __init__(self, stops: tuple[str, ...], completion: bool) -> None:
        self.stops = tuple(s for s in stops if s)
        self.completion = completion
        self.window = max([len(s) for s in self.stops] + [3])  # "\n\n\n" for body_end
        self.text = ""
        self.indented: bool | None = None  # None: no non-newline character seen yet
        self.first_solid: int | None = None  # index of the first non-whitespace character
        self.line_start = 0  # where the line being written starts
        self.base: str | None = None  # the body's indentation (its first non-blank line's)
        self.returned = False  # a complete return line at that indentation has been seen
        self.done = False

    def feed(self, piece: str) -> bool:
        """Append ``piece``; True once the text so far would be cut."""
        if self.done or not piece:
            return self.done
        old = len(self.text)
        self.text += piece
        lo = max(0, old - self.window)
        tail = self.text[lo:]
        self._lines(old)
        if any(s in tail for s in self.stops):
            self.done = True
            return True
        if not self.completion:
            return False
        if self.indented is None:
            head = self.text.lstrip("\n")
            if head:
                self.indented = head[0].isspace()
        if not self.indented:
            return False  # an unindented answer is left to the stop sequences and the parser
        if self.first_solid is None:
            m = re.search(r"\S", self.text[old:])
            if m is None:
                return False
            self.first_solid = old + m.start()
        # a line back at column 0, or two blank lines, after the first solid character
        for m in _COL0.finditer(tail):
            if lo + m.start() > self.first_solid:
                self.done = True
                return True
        gap = tail.find("\n\n\n")
        while gap >= 0:
            if lo + gap > self.first_solid:
                self.done = True
                return True
            gap = tail.find("\n\n\n", gap + 1)
        if self.returned:
            self.done = True
        return self.done

    def _lines(self, old: int) -> None:
        """Look at the lines this piece completed: a whole return at the body's indentation."""
        while not self.returned and (nl := self.text.find("\n", max(self.line_start, old))) >= 0:
            line, self.line_start = self.text[self.line_start:nl], nl + 1
            if not line.strip():
                continue
            if self.base is None:
                self.base = line[: len(line) - len(line.lstrip())]
            self.returned = complete_return(line, self.base)
