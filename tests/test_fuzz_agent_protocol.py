"""Whatever a model writes to the agent's protocols becomes a tool error, never an exception.

Property-based (any text, any JSON, with time bounds) for ``parse_action`` (the text
protocol) and ``validate_call`` (the tools API's JSON arguments), plus the classes that used
to end ``eqforge run``: digits ``str.isdigit`` accepts but ``int`` refuses, 5,000-digit
numbers, ``1e999``/``Infinity``/``NaN``, wrong types, deep nesting, huge strings; and two
end-to-end episodes (one per protocol) that carry on after such calls and submit.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tools_stub import ToolCallingStub

from eqforge.agents.agent_protocol import (
    MAX_CODE_CHARS,
    TOOL_NAMES,
    ToolCall,
    parse_action,
    validate_call,
)
from eqforge.cli import main

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BOUND = 0.5  # seconds for one call of a few KB
TRUE = ("def equation(x, v, params):\n    return params[0] * np.sin(x) + params[1] * x * np.cos(x)"
        " + params[2] * x**3 + params[3] * v**3 + params[4] * x * v\n")
DIGITS = st.characters(categories=["Nd", "No"])  # ² ١ ๓ ... isdigit() may say yes, int() no
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)
names = st.one_of(st.sampled_from(TOOL_NAMES), st.text(max_size=20), st.none(), st.integers())
PIECES = ["Action: ", "Action: best_programs ", "**Action:** `submit`\n", "Action: evaluate\n",
          "```python\n", "```", "\n", "def equation(x, v, params):\n    return x\n", "1e999", "²", "١",
          "9" * 50, "<think>", "Observation:", "analyze", "describe_data", " "]
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8), DIGITS), max_size=30).map("".join)


def _well_formed(call: ToolCall) -> None:
    """An error with nothing to run, or arguments exactly as the tool takes them."""
    assert isinstance(call, ToolCall) and isinstance(call.name, str) and len(call.name) <= 80
    if call.error is not None:
        assert call.arguments == {} and isinstance(call.error, str) and len(call.error) < 600
        return
    assert call.name in TOOL_NAMES
    if call.name in ("analyze", "evaluate", "submit"):
        assert set(call.arguments) == {"code"}
        assert isinstance(call.arguments["code"], str) and 0 < len(call.arguments["code"]) <= MAX_CODE_CHARS
    elif call.name == "best_programs":
        assert type(call.arguments["k"]) is int and 1 <= call.arguments["k"] <= 5
    else:
        assert call.arguments == {}


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    took = time.perf_counter() - t0
    assert took < BOUND, f"{took:.3f}s"
    return out


@FUZZ
@given(names, json_values)
def test_any_json_arguments_become_arguments_or_a_tool_error(name, value):
    raw = json.dumps(value if isinstance(value, dict) else {"k": value, "code": value})
    _well_formed(_timed(validate_call, name, raw, "call_1"))
    _well_formed(_timed(validate_call, name, value))  # already decoded (the text protocol's path)


@FUZZ
@given(names, st.text(max_size=200))
def test_any_argument_text_becomes_arguments_or_a_tool_error(name, raw):
    _well_formed(_timed(validate_call, name, raw))


@FUZZ
@given(texts)
def test_any_text_protocol_message_parses_without_raising(text):
    for call in _timed(parse_action, text):
        _well_formed(call)


@pytest.mark.parametrize("raw", [
    '{"k": 1e999}', '{"k": -1e999}', '{"k": Infinity}', '{"k": NaN}', '{"k": ' + "9" * 5000 + "}",
    '{"k": "²"}', '{"k": "' + "9" * 5000 + '"}', '{"k": [1]}', '{"k": {"a": 1}}', '{"k": null}',
    '{"code": 5}', '{"code": ["x"]}', '{"code": null}', "[" * 50_000, '{"a":' * 20_000, "[]", '"x"',
    "1e999", "null", "{", '{"code": "' + "x" * 200_000 + '"}', "\ud800", '{"k": 1' + "0" * 400 + "}",
])
def test_hostile_json_arguments_are_tool_errors(raw):
    for name in ("best_programs", "submit", "analyze", "describe_data"):
        call = _timed(validate_call, name, raw, "id")
        _well_formed(call)
        if name != "describe_data" and raw not in ("[]",):
            assert call.error is not None or (name == "best_programs" and call.arguments == {"k": 3})


@pytest.mark.parametrize("arg", ["²", "١٢", "๓", "³" * 3, "9" * 5000, "1e999", "-1", "0x3", "4.0", "(k=3)"])
def test_text_protocol_numbers_isdigit_accepts_but_int_refuses(arg):
    [call] = _timed(parse_action, f"Let me see.\nAction: best_programs {arg}")
    _well_formed(call)
    assert call.error is not None and "best_programs" in call.error


def test_text_protocol_keeps_working_arguments():
    assert parse_action("Action: best_programs 9")[0].arguments == {"k": 5}
    assert parse_action("Action: best_programs")[0].arguments == {"k": 3}
    [call] = parse_action("Action: submit\n```python\n" + "x" * (MAX_CODE_CHARS + 1) + "\n```")
    assert call.error is not None and "code" in call.error
    [call] = parse_action("Action: submit\n" + "```" * 30_000)  # linear fence scan
    _well_formed(call)


# -- whole episodes -----------------------------------------------------------------------------
class RawToolStub(ToolCallingStub):
    """Tool calls whose arguments are sent as the raw strings given (not JSON-encoded first)."""

    def _handle(self, path: str, body: dict) -> tuple[int, dict, bool]:
        status, payload, stream = super()._handle(path, body)
        for choice in payload.get("choices", []) if isinstance(payload, dict) else []:
            for tc in choice["message"].get("tool_calls") or []:
                args = json.loads(tc["function"]["arguments"])
                if isinstance(args, dict) and "raw" in args:
                    tc["function"]["arguments"] = args["raw"]
        return status, payload, stream


def _run(out: Path, data: Path, llm: list[str], *extra: str) -> int:
    return main(["run", "oscillator1", "--data", str(data / "oscillator1"), *llm, "--seed", "0",
                 "--out", str(out), "--workers", "1", "--quiet", "--strategy", "agent", *extra])


def _turns(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "turns.jsonl").read_text().splitlines()]


def test_tools_episode_goes_on_after_hostile_calls(tmp_path, llmsr_data):
    hostile = [("best_programs", {"raw": '{"k": 1e999}'}), ("best_programs", {"raw": '{"k": ' + "9" * 5000 + "}"}),
               ("submit", {"raw": '{"code": 12}'}), ("evaluate", {"raw": "[" * 10_000}),
               ("no_such_tool", {}), ("best_programs", {"raw": '{"k": NaN}'})]
    turns = [{"tool_calls": hostile}, {"content": "Submitting.", "tool_calls": [("submit", {"code": TRUE})]}]
    out = tmp_path / "tools"
    with RawToolStub(turns) as stub:
        code = _run(out, llmsr_data, ["--llm", "openai-compatible", "--base-url", stub.base_url,
                                      "--model", "m", "--no-cache"], "--samples", "1", "--concurrency", "1")
        second = stub.requests[1]["messages"]
    assert code == 0
    replies = [m for m in second if m["role"] == "tool"]
    assert len(replies) == len(hostile)  # every call id answered, each with why it was refused
    assert all(("cannot read" in r["content"] or "unknown tool" in r["content"] or "code:" in r["content"])
               for r in replies), [r["content"] for r in replies]
    assert _turns(out)[-1]["end"] == "submit"


def test_text_episode_goes_on_after_hostile_actions(tmp_path, llmsr_data):
    answers = ["Action: best_programs ²", "Action: best_programs " + "9" * 5000,
               "Action: submit\n```python\n" + "(" * 5000 + "\n```",
               f"Action: submit\n```python\n{TRUE}```"]
    replay = tmp_path / "turns.jsonl"
    replay.write_text("".join(json.dumps({"response": t}) + "\n" for t in answers))
    out = tmp_path / "text"
    assert _run(out, llmsr_data, ["--llm", f"replay:{replay}"], "--samples", "2") == 0
    turns = _turns(out)
    assert "best_programs takes a number" in turns[1]["results"][0]["result"]
    assert "best_programs takes a number" in turns[2]["results"][0]["result"]
    assert turns[-1]["end"] == "submit"


def test_tools_turn_survives_any_response_shape():
    """Whatever the server's message holds (no choices, odd tool_calls, junk usage): a turn, no exception."""
    import asyncio
    from types import SimpleNamespace as NS

    from eqforge.agents.agent_protocol import tools_turn
    from eqforge.agents.llm.base import SamplingParams

    class Server:
        name, prompt_style = "fake:tools", "chat"

        def __init__(self, resp: object) -> None:
            self.resp = resp

        async def chat_raw(self, messages, sampling, tools):  # noqa: ANN001, ANN201
            return self.resp

    fn = NS(name="best_programs", arguments='{"k": 1e999}')
    shapes = [NS(choices=[], usage=None), NS(choices=None), NS(),
              NS(choices=[NS(message=NS(content=None, tool_calls=7), finish_reason=3)], usage=NS(prompt_tokens="x")),
              NS(choices=[NS(message=NS(content=5, tool_calls=[NS(id=None, function=fn), "junk"]))],
                 usage=NS(prompt_tokens=10**30, completion_tokens=-1)),
              NS(choices=[NS(message=None)])]
    for resp in shapes:
        turn = asyncio.run(tools_turn(Server(resp), [], SamplingParams()))  # type: ignore[arg-type]
        for call in turn.calls:
            _well_formed(call)
        assert turn.prompt_tokens is None or type(turn.prompt_tokens) is int
