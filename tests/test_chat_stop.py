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
