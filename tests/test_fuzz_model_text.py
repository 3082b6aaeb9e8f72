"""Model text read outside the program parser: reflection bullets and ``eqforge new`` drafts.

Both are trusted-side readers of a model's answer (a reflective strategy's insights, the
variable descriptions ``eqforge new --llm`` asks for): any answer is read in bounded time and
never raises. Before: a bullet followed by spaces was quadratic (80 s at 64 KB) and a draft of
deep brackets or a 5,000-digit number raised out of ``eqforge new``.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eqforge.agents.reflect import parse_insights
from eqforge.problems.drafting import parse_draft

PIECES = ["- ", "* ", "1) ", "\u2022 ", " " * 50, "\t", "\n", "[", "{", "]", "}", '"x": ', '"a"', ",", "1e999",
          "9" * 60, "```json\n", "```", "null", "NaN"]
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), max_size=40).map("".join)
FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _timed(fn, *args, bound: float = 1.0):
    t0 = time.perf_counter()
    out = fn(*args)
    assert time.perf_counter() - t0 < bound, f"{time.perf_counter() - t0:.2f}s"
    return out


@FUZZ
@given(texts)
def test_any_answer_is_read_quickly_without_raising(text):
    big = text * max(1, 20_000 // max(1, len(text)))
    assert all(isinstance(i, str) and len(i) <= 200 for i in _timed(parse_insights, big))
    draft = _timed(parse_draft, big, ["x", "a"], ["x", "a"])
    assert set(draft) <= {"x", "a"}


@pytest.mark.parametrize("text", ["- " + " " * 65_536, "1) " + "\t " * 30_000, "[" * 60_000, '{"a": ' * 10_000,
                                  '{"x": 1' + "0" * 5000 + "}", "[1," * 20_000, "```" * 20_000])
def test_hostile_answers(text):
    _timed(parse_insights, text)
    _timed(parse_draft, text, ["x"], ["x"])


def test_ordinary_answers_still_read():
    assert parse_insights("- insight one  \n* two words here\n1) third  point\n-  \n- ab") == [
        "insight one", "two words here", "third point"]
    assert parse_draft('```json\n{"x": {"description": "position", "unit": "m"}}\n```', ["x"], ["x"]) == {
        "x": {"description": "position", "unit": "m"}}
