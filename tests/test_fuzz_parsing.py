"""Any model answer is parsed in bounded time and never raises (property-based, with time bounds).

The generated answers are built from the pieces that made parsing super-linear (unclosed
fences, unclosed ``<think>`` tags, open brackets, blank runs, ``def`` lines), then blown up
to ~90 KB; the linear scanners must also agree with the regular expressions they replaced
on small inputs, so the rewrite changed the cost and nothing else.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eqforge.problems.registry import builtin_spec
from eqforge.prompts.parsing import Extracted, extract_program, normalize, program_key, split_reasoning
from eqforge.prompts.scanning import fences, line_starts_with, parse_prefix

SPEC = builtin_spec("oscillator1")
PIECES = ["```", "```python\n", "```\n", "<think>", "</think>", "<THINKING>", "</reasoning>", "<reasoning>",
          "(", "[", "{", ")", "def equation(x, v, params):\n", "def equation_v2(x, v, params):\n",
          "    return params[0] * x\n", "    ", "\n", "\n\n", "x + ", "return ", "Action: ", "²", "\t",
          "'''", "\\", "#", "import numpy as np\n", "<", ">", "`"]
answers = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), max_size=40).map("".join)
FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BIG = 90_000
SMALL_BOUND = 0.5  # seconds for one answer of a few hundred characters
BIG_BOUND = 2.0  # seconds for one ~90 KB answer (before the rewrite: 5-30 s)


def _timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


# the regular expressions the scanners replaced (the oracle for what they must find)
_TAGS = r"(?:think|thinking|reasoning)"
_TRACE_RE = re.compile(rf"<{_TAGS}>(.*?)</{_TAGS}>", re.S | re.I)
_OPEN_RE = re.compile(rf"<{_TAGS}>", re.I)
_CLOSE_RE = re.compile(rf"</{_TAGS}>", re.I)
_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def _regex_split(text: str) -> tuple[str, str]:
    if not text or "<" not in text:
        return text, ""
    traces = [m.group(1) for m in _TRACE_RE.finditer(text)]
    answer = _TRACE_RE.sub("", text)
    closes = list(_CLOSE_RE.finditer(answer))
    if closes:
        traces.insert(0, answer[: closes[-1].start()])
        answer = answer[closes[-1].end():]
    opened = _OPEN_RE.search(answer)
    if opened:
        traces.append(answer[opened.end():])
        answer = answer[: opened.start()]
    return answer, "".join(traces)


@FUZZ
@given(answers)
def test_split_reasoning_matches_the_regex_it_replaced(text):
    assert split_reasoning(text) == _regex_split(text)


@FUZZ
@given(answers)
def test_fences_match_the_regex_they_replaced(text):
    assert [(f.lang, f.body) for f in fences(text)] == [m.groups() for m in _FENCE_RE.finditer(text)]
    assert line_starts_with(text, "def equation") == bool(re.search(r"^\s*def equation", text, re.M))


@FUZZ
@given(answers, st.integers(min_value=0, max_value=3))
def test_any_answer_parses_quickly_without_raising(text, version):
    res, took = _timed(extract_program, text, SPEC, version=version or None)
    assert isinstance(res, Extracted) and (res.ok or res.error)
    assert took < SMALL_BOUND, f"{took:.3f}s for {len(text)} chars"
    if res.ok:
        assert res.code is not None
        compile(res.code, "<fuzz>", "exec")
        assert program_key(res.code)


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join))
def test_any_answer_blown_up_to_90kb_parses_in_linear_time(unit):
    text = unit * (BIG // len(unit) + 1)
    res, took = _timed(extract_program, text, SPEC, version=2)
    assert isinstance(res, Extracted)
    assert took < BIG_BOUND, f"{took:.3f}s for {len(text)} chars of {unit[:40]!r}"
    _, took = _timed(split_reasoning, text)
    assert took < BIG_BOUND


HOSTILE = [
    ("unclosed fence", "```python\n" + "x = (1 +\n" * (BIG // 9)),
    ("unclosed think", "<think>" + "a <think b " * (BIG // 11)),
    ("many open thinks", "<think>" * (BIG // 7)),
    ("open bracket", "def equation(x, v, params):\n    return (" + "x + (" * (BIG // 5)),
    ("dangling operators", "def equation(x, v, params):\n" + "    y = x +\n" * (BIG // 11)),
    ("backticks", "```" * (BIG // 3)),
    ("blank lines", "\n" * BIG + "x"),
    ("deep sum", "def equation(x, v, params):\n    return " + "x+" * (BIG // 2) + "x\n"),
]


@pytest.mark.parametrize("name,text", HOSTILE, ids=[name for name, _ in HOSTILE])
def test_hostile_90kb_answers_in_well_under_a_second(name, text):
    """Each of these took 5-33 s before the scanners were linear (or crashed: deep sum)."""
    res, took = _timed(extract_program, text, SPEC, version=2)
    assert isinstance(res, Extracted) and (res.ok or res.error)
    assert took < 1.0, f"{name}: {took:.3f}s"


def test_deep_programs_are_refused_not_crashed():
    code = "def equation(x, v, params):\n    return " + "x+" * 2000 + "x\n"
    res = extract_program(code, SPEC)
    assert not res.ok and res.error == "parse:syntax"
    assert normalize(code)  # falls back to text, no RecursionError
    assert parse_prefix("x = 1\ny = (\n") == "x = 1\n"


def test_answers_are_capped_before_parsing_and_the_cut_is_recorded(tmp_path, llmsr_data):
    """A 300 KB answer reaches the parser as ``--max-response-chars`` characters; the record says so."""
    import json

    from eqforge.cli import main

    good = "```python\ndef equation(x, v, params):\n    return params[0] * x\n```\n"
    replay = tmp_path / "r.jsonl"
    replay.write_text(json.dumps({"response": good + "```" + "(" * 300_000}) + "\n")
    out = tmp_path / "run"
    t0 = time.perf_counter()
    assert main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", f"replay:{replay}",
                 "--samples", "1", "--samples-per-prompt", "1", "--max-response-chars", "4096", "--out", str(out),
                 "--workers", "1", "--quiet"]) == 0
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    [rec] = [r for r in rows if r["source"] == "llm"]
    assert rec["response_truncated"] is True and rec["response_chars"] == len(good) + 300_003
    assert len(rec["response"]) == 4096 and rec["ok"], rec.get("error")
    assert time.perf_counter() - t0 < 60


def _drop_lines_until_it_parses(source: str) -> str | None:
    """LLM-SR's trimming as it was: one parse per dropped line (the oracle for parse_prefix)."""
    import ast

    lines = source.rstrip().splitlines()
    while lines:
        candidate = "\n".join(lines) + "\n"
        try:
            ast.parse(candidate)
            return candidate
        except SyntaxError:
            lines.pop()
    return None


CODE_LINES = ["def equation(x, v, params):", "    return x", "    y = (x +", "    )", "x = 1", "if x:", "  pass",
              "else:", "This is prose.", "    return params[0] * x", "'''", '"""doc', "  z = 2", "\tw = 3", "@dec",
              "class A:", "    def f(self):", "        return 1", "import numpy as np", "x = [1,", "2]", "return",
              "try:", "except:", "lambda: (", "print(1) print(2)", ")", "#c", "", "    ", "f'{x'", "x = \\", "1"]


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(CODE_LINES), max_size=12))
def test_parse_prefix_keeps_what_dropping_line_by_line_kept(lines):
    source = "\n".join(lines)
    assert parse_prefix(source) == _drop_lines_until_it_parses(source)
