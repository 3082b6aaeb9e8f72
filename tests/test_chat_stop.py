"""The early end of a streamed chat answer: after the answer's program, never inside a trace."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from eqforge.agents.llm.chat_stop import ChatStop, may_open_trace_in_template

DRAFT = "```python\ndef equation(x, v, params):\n    return params[0] * x\n```"
FINAL = "```python\ndef equation(x, v, params):\n    return params[0] * x + params[1] * v\n```"


def _stream(text: str, sizes: list[int]) -> int | None:
    stop, pos, k = ChatStop(), 0, 0
    while pos < len(text):
        step = sizes[k % len(sizes)] if sizes else 1
        pos, k = min(len(text), pos + step), k + 1
        if (end := stop.feed(text[:pos])) is not None:
            return end
    return None


def test_ends_after_the_answer_not_the_draft_in_a_trace():
    text = f"<think>\nfirst:\n{DRAFT}\nadd damping\n</think>\n\n{FINAL}\nThis law adds damping."
    end = _stream(text, [3])
    assert end is not None and text[:end].endswith(FINAL)


def test_an_open_trace_never_ends_the_stream():
    text = f"<think>\nfirst:\n{DRAFT}\nand more thoughts"
    assert _stream(text, [5]) is None


def test_a_block_without_def_does_not_end_it():
    text = f"Data:\n```\nx v a\n```\nNow the law:\n{FINAL}\ntrailing"
    end = _stream(text, [4])
    assert end is not None and text[:end].endswith(FINAL)


@settings(max_examples=60, deadline=2000)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6),
       st.sampled_from(["", "<think>a</think>\n", f"<THINKING>\n{DRAFT}\n</THINKING>\n",
                        "prose `x` and ``y`` inline\n"]))
def test_piece_sizes_do_not_change_where_it_ends(sizes, prefix):
    text = f"{prefix}{FINAL}\nafter"
    whole = ChatStop().feed(text)
    assert _stream(text, sizes) == whole
    assert whole is not None and text[:whole].endswith(FINAL)


def test_linear_on_hostile_streams():
    text = ("`" * 3 + "x\n" + "y" * 5) * 4000 + "<think" * 2000
    t0 = time.perf_counter()
    _stream(text, [4])
    assert time.perf_counter() - t0 < 2.0


def test_reasoning_model_names():
    for name in ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "qwq", "Qwen/QwQ-32B", "Qwen/Qwen3-8B",
                 "openai/gpt-oss-20b", "my-thinking-model"):
        assert may_open_trace_in_template(name), name
    for name in ("gpt-4o-mini", "qwen", "Qwen/Qwen2.5-Coder-1.5B-Instruct", "model", "gemma-3-270m"):
        assert not may_open_trace_in_template(name), name


def test_a_stream_dropped_mid_answer_is_interrupted_not_an_answer():
    """llama.cpp's server ends a stream with no finish reason when another request arrives."""
    import asyncio
    from types import SimpleNamespace

    from eqforge.agents.llm.stops import StopScanner
    from eqforge.agents.llm.streaming import StreamChoice, Streamed, StreamInterrupted, read_stream

    class Chunks:
        def __init__(self, finish):
            def chunk(text, reason):
                return SimpleNamespace(usage=None, choices=[SimpleNamespace(index=0, text=text, finish_reason=reason)])

            self.items = [chunk("    y = x", None)] + ([chunk("", "stop")] if finish else [])

        def __aiter__(self):
            return self

        async def __anext__(self):
            if not self.items:
                raise StopAsyncIteration
            return self.items.pop(0)

    def streamed():
        return Streamed([StreamChoice(StopScanner(("\ndef ",), True))])

    out = streamed()
    asyncio.run(read_stream(Chunks(finish=True), out, "completion", 0.1))
    assert out.choices[0].finish_reason == "stop" and out.choices[0].text == "    y = x"
    try:
        asyncio.run(read_stream(Chunks(finish=False), streamed(), "completion", 0.1))
    except StreamInterrupted:
        pass
    else:
        raise AssertionError("a stream that ended mid-answer was taken as an answer")
