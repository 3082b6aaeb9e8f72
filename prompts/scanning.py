"""Linear-time scanners for model text: code fences, reasoning traces, bounded ``ast.parse``.

A model's answer is untrusted input of any shape, and it is parsed on the event loop. The
natural regular expressions for these jobs (``(.*?)(?:```|\\Z)`` from every fence,
``<think>(.*?)</think>`` from every opening tag, ``^\\s*def`` across blank lines) backtrack
over the rest of the text from each starting point, so an answer that never closes a fence
or a tag costs seconds per 100 KB. Each scanner here visits every character a bounded
number of times (``str.find`` and anchored, fixed-width tag patterns), and ``parse_prefix``
bounds the number of ``ast.parse`` calls, so parsing cost grows linearly with the answer.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

FENCE = "```"
# Fixed-width alternatives: a match attempt at one position reads at most 12 characters.
_TAG_RE = re.compile(r"<(/?)(?:thinking|think|reasoning)>", re.I)
MAX_PARSE_ATTEMPTS = 32
MAX_AST_DEPTH = 200


@dataclass(frozen=True)
class Fence:
    """One fenced block: its info string's language word, body, and where the body lies."""

    lang: str
    body: str
    start: int  # index of the opening backticks
    end: int  # index just past the closing backticks (or len(text) when unclosed)


def fences(text: str, start: int = 0) -> Iterator[Fence]:
    """Fenced blocks from ``start`` on, as ``\\`\\`\\`info\\n body \\`\\`\\``` (an unclosed one runs to the end).

    The same blocks the regex ``\\`\\`\\`[ \\t]*(\\w*)[^\\n]*\\n(.*?)(?:\\`\\`\\`|\\Z)`` finds, in one pass.
    """
    pos = start
    n = len(text)
    while pos < n:
        i = text.find(FENCE, pos)
        if i < 0:
            return
        nl = text.find("\n", i + 3)
        if nl < 0:  # no line after any later fence on this (last) line either
            return
        info = text[i + 3 : nl].lstrip(" \t")
        k = 0
        while k < len(info) and (info[k].isascii() and (info[k].isalnum() or info[k] in "_+-")):
            k += 1
        j = text.find(FENCE, nl + 1)
        end = n if j < 0 else j + 3
        yield Fence(info[:k], text[nl + 1 : n if j < 0 else j], i, end)
        pos = end


def split_reasoning(text: str) -> tuple[str, str]:
    """``(answer, trace)``: the response without its reasoning traces, and the traces.

    Closed traces (an opening tag up to the first closing tag after it) are removed first;
    then everything before the last remaining closing tag is trace (the chat template wrote
    the opening tag), and everything after a remaining opening tag is trace (the model ran
    out of tokens while thinking). Tags are ``think``, ``thinking``, ``reasoning``, any case.
    """
    if not text or "<" not in text:
        return text, ""
    pieces: list[str] = []
    traces: list[str] = []
    pos = 0
    open_end: int | None = None  # inside a trace whose opening tag ended here
    open_start = 0
    for m in _TAG_RE.finditer(text):
        closing = bool(m.group(1))
        if open_end is None and not closing:
            open_start, open_end = m.start(), m.end()
        elif open_end is not None and closing:
            pieces.append(text[pos:open_start])
            traces.append(text[open_end : m.start()])
            pos, open_end = m.end(), None
    pieces.append(text[pos:])
    answer = "".join(pieces)
    last_close = None
    first_open = None
    for m in _TAG_RE.finditer(answer):  # the answer may hold stray tags (or tags joined by removal)
        if m.group(1):
            last_close, first_open = m, None
        elif first_open is None:
            first_open = m
    if last_close is not None:
        traces.insert(0, answer[: last_close.start()])
        if first_open is not None:
            traces.append(answer[first_open.end() :])
            answer = answer[last_close.end() : first_open.start()]
        else:
            answer = answer[last_close.end() :]
    elif first_open is not None:
        traces.append(answer[first_open.end() :])
        answer = answer[: first_open.start()]
    return answer, "".join(traces)


def line_starts_with(text: str, prefix: str) -> bool:
    """Whether some line starts with ``prefix`` after blanks: ``re.search("^\\s*" + prefix, re.M)``.

    Each line is looked at once (the regex retries ``\\s*`` across every run of blank lines).
    """
    pos = text.find(prefix)
    while pos >= 0:
        line = text.rfind("\n", 0, pos) + 1
        if not text[line:pos].strip(" \t\r\f\v"):
            return True
        nxt = text.find("\n", pos)
        if nxt < 0:
            return False
        pos = text.find(prefix, nxt + 1)
    return False


def safe_parse(source: str) -> ast.Module | None:
    """``ast.parse`` that answers None for anything it cannot turn into a usable tree.

    Besides syntax errors, hostile source can exhaust the parser's recursion (thousands of
    chained operators) or contain NUL bytes; a tree deeper than ``MAX_AST_DEPTH`` is
    refused as well, since the recursive visitors after parsing (``ast.unparse``, the
    converters) would overflow on it.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return tree if ast_depth(tree) <= MAX_AST_DEPTH else None


def ast_depth(tree: ast.AST) -> int:
    """The depth of a tree, computed without recursion."""
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


def parse_prefix(source: str) -> str | None:
    """The longest prefix of whole lines that parses, found in a bounded number of parses.

    Dropping one trailing line per attempt (LLM-SR's trimming) costs a parse per line: a
    90 KB answer cut inside a bracket took seconds. A syntax error on line L means no
    prefix that still contains line L parses (its tokens are the same up to there), so the
    next attempt keeps at most L-1 lines; attempts are capped at ``MAX_PARSE_ATTEMPTS``.
    """
    lines = source.rstrip().splitlines()
    k = len(lines)
    for _ in range(MAX_PARSE_ATTEMPTS):
        if k <= 0:
            return None
        candidate = "\n".join(lines[:k]) + "\n"
        try:
            tree = ast.parse(candidate)
        except SyntaxError as exc:
            line = exc.lineno if isinstance(exc.lineno, int) and exc.lineno > 0 else k
            k = min(k - 1, line - 1) if line <= k else k - 1
            continue
        except (ValueError, RecursionError, MemoryError):
            return None
        return candidate if ast_depth(tree) <= MAX_AST_DEPTH else None
    return None
