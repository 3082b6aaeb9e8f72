"""The prompt builder reproduces LLM-SR's layout and records its sources."""

from __future__ import annotations

import pytest

from eqforge.errors import ConfigError
from eqforge.problems.registry import builtin_spec
from eqforge.prompts.builder import ProgramRef, PromptBuilder, initial_program


@pytest.fixture()
def spec():
    s = builtin_spec("oscillator1")
    assert s is not None
    return s


def test_initial_program_is_the_llmsr_seed(spec):
    code = initial_program(spec)
    assert code.startswith("def equation(x: np.ndarray, v: np.ndarray, params: np.ndarray)")
    assert "return params[0] * x + params[1] * v + params[2]" in code
    assert "x: A numpy array representing observations of current position." in code


def test_prompt_versions_worst_to_best_and_ends_with_next_header(spec):
    seed = initial_program(spec)
    better = seed.replace("params[2]", "params[2] * x * v")
    prompt = PromptBuilder(spec).build([ProgramRef("a", seed, -2.0), ProgramRef("b", better, -1.0)])
    text = prompt.completion
    assert text.index("def equation_v0(") < text.index("def equation_v1(") < text.index(
        "def equation_v2("
    )
    assert spec.description in text
    assert "import numpy as np" in text
    assert '"""Improved version of `equation_v1`."""' in text.rstrip().splitlines()[-1]
    assert "params[2] * x * v" in text.split("def equation_v1(")[1]
    assert prompt.version == 2 and prompt.next_name == "equation_v2"
    assert prompt.source_ids == ["a", "b"]
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    assert "equation_v2" in prompt.messages[1]["content"]
    assert text.rstrip() in prompt.messages[1]["content"]


def test_prompt_hash_changes_with_content(spec):
    seed = initial_program(spec)
    b = PromptBuilder(spec)
    assert b.build([ProgramRef("a", seed)]).hash == b.build([ProgramRef("z", seed)]).hash
    assert b.build([ProgramRef("a", seed)]).hash != b.build(
        [ProgramRef("a", seed.replace("* v", "* v * v"))]
    ).hash


def test_unknown_template_is_a_clear_error(spec):
    with pytest.raises(ConfigError, match="unknown strategy"):
        PromptBuilder(spec, strategy="nope")
