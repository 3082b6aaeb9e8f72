"""Responses in every shape models produce are turned back into programs."""

from __future__ import annotations

import pytest

from eqforge.problems.registry import builtin_spec
from eqforge.prompts.parsing import extract_program, normalize, program_key

SPEC = builtin_spec("oscillator1")


def ok(text: str, version: int = 2) -> str:
    res = extract_program(text, SPEC, version=version)
    assert res.ok, (res.error, res.detail)
    assert res.code is not None
    compile(res.code, "<t>", "exec")
    assert res.code.startswith("def equation(") or "\ndef equation(" in res.code
    return res.code


def test_bare_indented_body_continuing_the_header():
    code = ok("    a = params[0] * x\n    return a + params[1] * v\n\n\ndef equation_v3(x, v, params):\n")
    assert "return a + params[1] * v" in code and "equation_v3" not in code


def test_body_without_indentation():
    code = ok("a = params[0] * x\nreturn a")
    assert "    return a" in code


def test_fenced_block_with_prose_around():
    text = "Sure! Here is a better one:\n```python\ndef equation_v2(x, v, params):\n" \
           "    return params[0] * np.sin(x)\n```\nIt captures the restoring force."
    assert "np.sin(x)" in ok(text)


def test_full_function_without_fence_and_trailing_garbage():
    text = "def equation_v2(x: np.ndarray, v: np.ndarray, params: np.ndarray) -> np.ndarray:\n" \
           "    return params[0] * x\nThis equation is linear"
    assert "return params[0] * x" in ok(text)


def test_several_functions_picks_the_requested_version_and_keeps_helpers():
    text = "```python\nimport numpy as np\n\ndef helper(z):\n    return z ** 2\n\n" \
           "def equation_v1(x, v, params):\n    return x\n\n" \
           "def equation_v2(x, v, params):\n    return params[0] * helper(x)\n```"
    code = ok(text)
    assert "def helper" in code and "helper(x)" in code and "return x\n" not in code


def test_calling_an_earlier_version_is_rejected():
    res = extract_program("def equation_v2(x, v, params):\n    return equation_v1(x, v, params)",
                          SPEC, version=2)
    assert not res.ok and res.error == "parse:calls-earlier-version"


@pytest.mark.parametrize("text,reason", [
    ("", "parse:empty"),
    ("   \n", "parse:empty"),
    ("def equation_v2(a, b, params):\n    return a", "parse:signature"),
    ("def helper(x):\n    return x", "parse:no-equation"),
])
def test_failures_have_reasons(text, reason):
    res = extract_program(text, SPEC, version=2)
    assert not res.ok and res.error == reason


def test_normalize_ignores_comments_docstrings_and_whitespace():
    a = 'def equation(x, v, params):\n    """Doc."""\n    # comment\n    return params[0]*x\n'
    b = "def equation(x, v, params):\n    return params[0] * x   # other\n"
    assert normalize(a) == normalize(b)
    assert program_key(a) == program_key(b)
    assert program_key(a) != program_key(b.replace("* x", "* v"))
