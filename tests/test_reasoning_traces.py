"""Open reasoning models' traces: the final answer's code wins over drafts inside <think>.

DeepSeek-R1 distills, Qwen3 (thinking) and QwQ write ``<think>…</think>`` before the answer,
often with draft code in it; vLLM with a reasoning parser moves the trace to a separate field.
"""

from __future__ import annotations

import json

import pytest
from openai_stub import OpenAIStub

from eqforge.cli import main
from eqforge.problems.registry import builtin_spec
from eqforge.prompts.parsing import extract_program, split_reasoning

SPEC = builtin_spec("oscillator1")
DRAFT = "```python\ndef equation(x, v, params):\n    return params[0] * x\n```"
FINAL = ("```python\ndef equation(x, v, params):\n"
         "    return params[0] * x + params[1] * v + params[2] * x**3\n```")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def _body(code: str | None) -> str:
    assert code is not None
    return code.strip().splitlines()[-1].strip()


def test_the_answer_wins_over_the_draft_in_the_trace():
    text = f"<think>\nLet me try a first draft:\n{DRAFT}\nHmm, too simple. Add damping.\n</think>\n\n{FINAL}"
    got = extract_program(text, SPEC)
    assert got.ok and _body(got.code) == "return params[0] * x + params[1] * v + params[2] * x**3"


def test_trace_opened_by_the_chat_template():
    """DeepSeek-R1's template writes <think> itself: the text holds only the closing tag."""
    got = extract_program(f"draft:\n{DRAFT}\n</think>\n{FINAL}", SPEC)
    assert _body(got.code).startswith("return params[0] * x + params[1] * v")


def test_unterminated_trace_is_not_mined_for_drafts():
    got = extract_program(f"<think>\nfirst idea:\n{DRAFT}\nwait, let me reconsider", SPEC)
    assert not got.ok and got.error == "parse:reasoning-only" and "--max-tokens" in got.detail


def test_split_reasoning_variants():
    assert split_reasoning("plain answer") == ("plain answer", "")
    assert split_reasoning("<think>a</think>b<think>c</think>d") == ("bd", "ac")
    assert split_reasoning("<THINKING>a</THINKING>b") == ("b", "a")
    answer, trace = split_reasoning("x < y and a > b")  # comparison signs are not tags
    assert answer == "x < y and a > b" and trace == ""


def _osc_args(llmsr_data, stub, out, *extra):
    return ["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", "openai-compatible",
            "--base-url", stub.base_url, "--model", "qwq", "--out", str(out), "--quiet", "--workers", "1",
            "--no-cache", "--samples", "4", "--concurrency", "1", *extra]


def _llm_rows(out):
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return [r for r in rows if r["source"] == "llm"]


def test_run_records_trace_length_and_tokens(llmsr_data, tmp_path):
    trace = f"<think>\n{DRAFT}\nno, add damping and a cubic term\n</think>\n"
    with OpenAIStub([trace + FINAL.replace("equation(", "equation_v1(")]) as stub:
        out = tmp_path / "run"
        assert main(_osc_args(llmsr_data, stub, out)) == 0
    rows = _llm_rows(out)
    assert all(r["ok"] for r in rows)
    assert all("params[2] * x**3" in r["program"] for r in rows)
    assert all(r["reasoning_chars"] == len(split_reasoning(trace)[1]) for r in rows)
    assert all(r["reasoning_tokens"] and r.get("reasoning_estimated") for r in rows)
    assert "<think>" in rows[0]["response"]  # the record keeps what the model said


def test_separate_reasoning_field_is_not_the_answer(llmsr_data, tmp_path):
    """vLLM --reasoning-parser: the trace in reasoning_content, the answer in content."""
    with OpenAIStub([FINAL.replace("equation(", "equation_v1(")]) as stub:
        stub.reasoning = lambda path, body, i: f"thinking about it: {DRAFT}"
        out = tmp_path / "run"
        assert main(_osc_args(llmsr_data, stub, out)) == 0
    rows = _llm_rows(out)
    assert all(r["ok"] and "params[2] * x**3" in r["program"] for r in rows)
    assert all(r["reasoning_chars"] == len(f"thinking about it: {DRAFT}") for r in rows)
