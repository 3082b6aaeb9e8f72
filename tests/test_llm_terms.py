"""The ``terms:`` backend: random library sums answered like a model, seeded, registered."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from eqforge.agents.llm.base import SamplingParams
from eqforge.agents.llm.registry import make_backend
from eqforge.agents.llm.terms import TermsBackend, term_library
from eqforge.cli import main
from eqforge.errors import BackendError
from eqforge.problems.registry import load_problem
from eqforge.prompts.builder import ProgramRef, PromptBuilder, initial_program
from eqforge.prompts.parsing import extract_program


def _prompt(name: str = "oscillator1", n_programs: int = 2, max_params: int = 10):
    spec = load_problem(name).spec
    seed = initial_program(spec)
    builder = PromptBuilder(spec, max_params=max_params)
    return spec, builder.build([ProgramRef(f"p{i}", seed, -1.0) for i in range(n_programs)])


def _ask(backend, prompt, n=4, seed=7):  # noqa: ANN001, ANN202
    return asyncio.run(backend.generate(prompt, SamplingParams(n=n, seed=seed)))


def test_answers_parse_as_programs_over_the_inputs() -> None:
    spec, prompt = _prompt("feynman-I.12.2", n_programs=2)
    answers = _ask(make_backend("terms:"), prompt, n=20)
    assert len(answers) == 20
    for c in answers:
        assert c.text.startswith("```python\ndef equation_v2(q1, q2, r, params):"), c.text
        extracted = extract_program(c.text, spec, version=prompt.version)
        assert extracted.ok, (extracted.error, c.text)
        used = sorted(int(i) for i in re.findall(r"params\[(\d+)\]", c.text))
        assert 2 <= len(used) <= 6 and used == list(range(len(used)))  # one param per term
        assert c.cost == 0.0 and c.error is None


def test_seeded_and_decorrelated() -> None:
    _, prompt = _prompt()
    backend = TermsBackend()
    first = [c.text for c in _ask(backend, prompt, seed=3)]
    assert first == [c.text for c in _ask(TermsBackend(), prompt, seed=3)]  # reproducible
    assert first != [c.text for c in _ask(backend, prompt, seed=4)]
    assert len(set(first)) > 1  # the n samples of one call differ


def test_term_count_and_param_limit() -> None:
    _, prompt = _prompt(max_params=3)
    for c in _ask(make_backend("terms:2-6"), prompt, n=30):
        assert len(re.findall(r"params\[", c.text)) <= 3
    _, prompt = _prompt()
    for c in _ask(make_backend("terms:4"), prompt, n=10):
        assert len(re.findall(r"params\[", c.text)) == 4
    with pytest.raises(BackendError, match="MIN-MAX"):
        make_backend("terms:few")


def test_library_covers_oscillator1_law() -> None:
    lib = term_library(["x", "v"])
    for t in ("np.sin(x)", "x*np.cos(x)", "x**3", "v**3", "x*v"):
        assert t in lib
    assert len(lib) == len(set(lib))


def test_cli_run_with_terms(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "oscillator1", "--llm", "terms:", "--samples", "8", "--workers", "1",
                 "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 8 and summary["valid"] >= 1
    assert summary["llm"]["name"] == "terms:2-6"


def test_answers_an_agent_task_with_def_equation() -> None:
    from eqforge.prompts.prompt import Prompt

    task = ("Task: ...\nWrite the equation as\n\n```python\n"
            "def equation(x: np.ndarray, v: np.ndarray, params: np.ndarray) -> np.ndarray:\n"
            "    return ...\n```\n\nusing numpy as np and at most 3 constants params[0], params[1], ...")
    prompt = Prompt(completion="", messages=[{"role": "system", "content": "You are a scientist."},
                                             {"role": "user", "content": task}], version=0)
    for c in _ask(make_backend("terms:"), prompt, n=10):
        assert c.text.startswith("```python\ndef equation(x, v, params):"), c.text
        assert len(re.findall(r"params\[", c.text)) <= 3
    with pytest.raises(BackendError, match="no function header"):
        _ask(make_backend("terms:"), Prompt(completion="", messages=[{"role": "user", "content": "hi"}], version=0))
