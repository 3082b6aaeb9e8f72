"""Where a streamed chat answer can be ended early: its first complete program, outside traces.

A chat model answers with prose and one fenced ``def``; what it writes after the closing
fence is never used, so the OpenAI-compatible backend closes the stream there and a slow
server is not paid to write it. Two things make that unsafe, and this module guards both:

* **Drafts inside a reasoning trace.** Open reasoning models (DeepSeek-R1 distills, QwQ,
  Qwen3 thinking) write ``<think>`` with draft code in it before the answer. A fence inside
  an open trace is never an end; only one after the last closing tag is.
* **Traces the chat template opened.** Those models' templates write ``<think>`` into the
  prompt, so the answer starts inside a trace that shows no opening tag until its
  ``</think>``. No streaming rule can see that, so for a model whose name says it reasons the
  early end is off (the stream runs to the server's own end; the parser then drops the trace).

The scan is linear over the whole stream: tags are fixed-width matches scanned once, and
fences are found with ``str.find`` from the end of the last settled block, only when a piece
brings a backtick.
"""

from __future__ import annotations

import re

from eqforge.prompts.scanning import FENCE

_TAG = re.compile(r"<(/?)(?:thinking|think|reasoning)>", re.I)
_TAG_MAX = len("</reasoning>")
_DEF_LINE = re.compile(r"^[ \t]*def ", re.M)
# Model names of open reasoning models whose templates may open the trace themselves.
_REASONS = re.compile(r"(?i)(?:^|[-_/.:])(?:r1|qwq|qwen3|think\w*|reason\w*|gpt-oss|magistral|exaone-deep)")


def may_open_trace_in_template(model: str) -> bool:
    """Whether ``model``'s name says it reasons (its template may open ``<think>`` itself)."""
    return bool(_REASONS.search(model or ""))


class ChatStop:
    """Incrementally: the end of the first closed fenced block with a ``def`` in the answer."""

    def __init__(self) -> None:
        self.text = ""
        self.trace_open = False
        self.tag_pos = 0  # tags before this index have been seen
        self.settled = 0  # no answer-ending fence starts before this index

    def feed(self, text: str) -> int | None:
        """The whole text so far; the index to cut at once the answer's program is complete."""
        old, self.text = len(self.text), text
        for m in _TAG.finditer(text, self.tag_pos):
            closing = bool(m.group(1))
            if closing:
                self.trace_open = False
                self.settled = max(self.settled, m.end())
            elif not self.trace_open:
                self.trace_open = True
            self.tag_pos = m.end()
        self.tag_pos = max(self.tag_pos, len(text) - _TAG_MAX + 1, 0)
        if self.trace_open or "`" not in text[max(old - 2, 0):]:
            return None
        return self._fence_end()

    def _fence_end(self) -> int | None:
        t, pos = self.text, self.settled
        while (i := t.find(FENCE, pos)) >= 0:
            nl = t.find("\n", i + 3)
            if nl < 0:
                return None
            j = t.find(FENCE, nl + 1)
            if j < 0:
                self.settled = i  # an open block: its closing fence is still to come
                return None
            if _DEF_LINE.search(t, nl + 1, j):
                return j + 3
            pos = self.settled = j + 3
        return None
