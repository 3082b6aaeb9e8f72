"""Text from a model or a candidate program, made safe to show on a terminal.

A program's comment, an agent's message or an exception text quoting either can hold
terminal control sequences: CSI (colours, cursor moves, screen clears), OSC (window
titles, hyperlinks, and OSC 52, which writes the user's clipboard on terminals that honour
it), DCS and the other string sequences, their 8-bit C1 forms, a bare carriage return that
overwrites the line, and bidirectional overrides that make shown code differ from the code
that runs. None of that may reach a terminal uninterpreted.

``terminal_safe`` replaces every such character with a visible escape (``\\x1b``,
``\\u202e``), so the sequence is inert and still shows what was there; newlines and tabs
stay unless the text must be one line. Lone surrogates (which cannot be encoded, and made
printing raise) become ``\\udXXX`` too. One regex character class: linear time.

This module sits at the bottom of the import layers (beside ``eqforge.errors``), so the
agents' live view, the evaluator and the CLI can all use it.
"""

from __future__ import annotations

import logging
import re

# C0 controls but tab and newline, DEL, C1 controls (8-bit CSI/OSC/DCS...), bidi embeddings,
# overrides and isolates, the Arabic letter mark, LRM/RLM, and lone surrogates.
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE_RE = re.compile(f"[{_UNSAFE}]")
_UNSAFE_LINE_RE = re.compile(f"[{_UNSAFE}\n\t\u2028\u2029\u0085]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: object, *, oneline: bool = False) -> str:
    """``text`` (``str()`` of it) with control, escape and bidi characters shown as escapes.

    ``oneline``: newlines and tabs are escaped as well (a log line, a table cell).
    """
    s = text if isinstance(text, str) else str(text)
    return (_UNSAFE_LINE_RE if oneline else _UNSAFE_RE).sub(_escape, s)


def is_terminal_safe(text: str) -> bool:
    return _UNSAFE_RE.search(text) is None


class SanitizingFilter(logging.Filter):
    """Neutralise a log record's message, arguments and traceback before any handler writes it.

    The message is formatted here (``getMessage``) and made safe, and the arguments
    dropped, so every later formatter sees safe text whatever the arguments were.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed format string: show it and its arguments
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = terminal_safe(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = terminal_safe(record.exc_text)
        if record.stack_info:
            record.stack_info = terminal_safe(record.stack_info)
        return True


def install_log_sanitizer(logger: logging.Logger | None = None) -> None:
    """Add ``SanitizingFilter`` to the plain stream handlers of ``logger`` (the root logger).

    Only ``logging.StreamHandler`` itself (what ``basicConfig`` installs; the live view
    points it at rich's console): a host's own handlers (pytest's capture, a notebook's) keep
    their records as they were logged.
    """
    for handler in (logger or logging.getLogger()).handlers:
        if type(handler) is logging.StreamHandler and not any(
                isinstance(f, SanitizingFilter) for f in handler.filters):
            handler.addFilter(SanitizingFilter())


def encodable(text: str) -> str:
    """``text`` with lone surrogates as ``\\udXXX`` escapes, so it always encodes as UTF-8.

    A model's text may carry them (JSON ``"\\ud800"`` decodes to one); writing them raised
    ``UnicodeEncodeError`` and ended ``eqforge report``. Valid text is unchanged.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


__all__ = ["SanitizingFilter", "encodable", "install_log_sanitizer", "is_terminal_safe", "terminal_safe"]
