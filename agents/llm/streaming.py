"""Reading a streamed answer: each choice ended on the client side once its program is complete.

Slow servers (a CPU vLLM, a laptop's llama.cpp) are streamed so that a timeout bounds the
silence between two pieces rather than the whole answer, and so that a choice can be ended
as soon as its program is complete: completion style by the body-end rule the in-process
engines use (``stops.StopScanner``), chat style after the answer's fenced ``def`` outside
any reasoning trace (``chat_stop.ChatStop``). When every choice is over the caller closes
the stream, which makes the server cancel the rest. The objects here are shaped like the
``openai`` client's response objects, so the backend reads a stream and a whole response
the same way.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from eqforge.agents.llm.base import PromptStyle
from eqforge.agents.llm.chat_stop import ChatStop
from eqforge.agents.llm.stops import StopScanner, cut


class StreamInterrupted(Exception):
    """A stream ended with a choice that neither finished nor was cut: the server dropped it.

    llama.cpp's server does this to a stream when another request arrives
    (``interrupt_requests``), which is what happens when ``n`` is split into concurrent
    single requests. The backend then asks again without streaming."""


@dataclass
class StreamChoice:
    """One choice of a streamed answer, shaped like the client's choice objects."""

    scanner: StopScanner
    fence_stop: ChatStop | None = None  # chat style: end after the answer's fenced program
    text: str = ""
    finish_reason: str | None = None
    done: bool = False
    cut: bool = False
    pieces: int = 0
    reasoning_content: str = ""

    @property
    def message(self) -> StreamChoice:  # chat style reads ``choice.message.content``
        return self

    @property
    def content(self) -> str:
        return self.text

    def feed(self, ch: Any, style: PromptStyle) -> None:
        if self.done:
            return
        piece, trace = choice_parts(ch, style, "delta")
        if trace:
            self.reasoning_content += trace
        if piece:
            self.pieces += 1
            ended = self.scanner.feed(piece)
            self.text = self.scanner.text
            if not ended and self.fence_stop is not None and (end := self.fence_stop.feed(self.text)) is not None:
                ended, self.text = True, self.text[:end]
            elif ended:
                self.text = cut(self.text, self.scanner.stops, style == "completion")[0]
            if ended:
                self.done, self.cut, self.finish_reason = True, True, "stop"
                return
        if getattr(ch, "finish_reason", None):
            self.done, self.finish_reason = True, ch.finish_reason


@dataclass
class Streamed:
    choices: list[StreamChoice]
    usage: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


async def read_stream(stream: Any, out: Streamed, style: PromptStyle, grace: float) -> None:
    """Feed ``stream``'s chunks into ``out`` until it ends, or ``grace`` seconds after every
    choice is complete (time for the usage chunk of a server that was finishing anyway).

    Raises ``StreamInterrupted`` when the stream ended under a choice that had begun but
    neither finished nor was cut."""
    chunks = stream.__aiter__()
    deadline: float | None = None
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), wait)
        except (StopAsyncIteration, TimeoutError):
            break  # the end, or every choice is over and the server is still writing
        if getattr(chunk, "usage", None) is not None:
            out.usage = chunk.usage
        for ch in getattr(chunk, "choices", None) or []:
            idx = int(getattr(ch, "index", 0) or 0)
            if idx < len(out.choices):
                out.choices[idx].feed(ch, style)
        if deadline is None and all(c.done for c in out.choices) and any(c.cut for c in out.choices):
            # every program is complete: wait briefly for the usage chunk of a server
            # that was finishing anyway, then close (the server cancels the rest)
            deadline = time.monotonic() + grace
    if any(c.pieces and not c.done for c in out.choices):
        raise StreamInterrupted


def reasoning_field(msg: Any) -> str | None:
    """A separate reasoning trace (vLLM's ``reasoning_content``, others' ``reasoning``)."""
    if msg is None:
        return None
    for name in ("reasoning_content", "reasoning"):
        value = getattr(msg, name, None)
        if value is None:
            value = (getattr(msg, "model_extra", None) or {}).get(name)
        if isinstance(value, str) and value:
            return value
    return None


def choice_parts(ch: Any, style: PromptStyle, part: str) -> tuple[str, str | None]:
    """A choice's text and its separate reasoning trace, if any: ``part`` is ``"delta"`` for
    a streamed chunk's choice and ``"message"`` for a whole answer's (chat style only)."""
    if style == "completion":
        return getattr(ch, "text", "") or "", None
    msg = getattr(ch, part, None)
    if msg is None:
        return "", None
    return getattr(msg, "content", None) or "", reasoning_field(msg)
