"""Strategies as data: loading, prompts they build, and every strategy end to end (replay)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from eqforge.cli import main
from eqforge.errors import ConfigError
from eqforge.problems.registry import builtin_spec
from eqforge.prompts.anonymise import anonymise
from eqforge.prompts.builder import Notes, ProgramRef, PromptBuilder, initial_program
from eqforge.prompts.strategy import describe_strategy, load_strategy, strategy_names

RESPONSES = Path(__file__).parent / "data" / "oscillator1_responses.jsonl"
RUNNABLE = [n for n in strategy_names() if not load_strategy(n).abstract and load_strategy(n).kind == "prompt"]
#: responses written in the anonymous names, for the no-prior strategy
ANON = [
    "```python\ndef equation_v1(x0, x1, params):\n    return params[0] * np.sin(x0) + params[1] * x1**3\n```",
    "    return params[0] * x0 + params[1] * x1 + params[2] * x0 * x1\n",
    "```python\ndef equation_v1(x0, x1, params):\n    return params[0] * x0**3 + params[1] * x1 + params[2]\n```",
]

# LLM-SR's prompts as eqforge built them before strategies existed (sha256 of
# [completion, messages]): the llmsr strategy must stay byte-identical.
GOLDEN = {("oscillator1", 0): "a2975c70f95340ed", ("oscillator1", 1): "e7a396fc227d7fd7",
          ("oscillator1", 2): "2e56b829e434de66", ("bactgrow", 2): "46e8e09efec9969e",
          ("stressstrain", 1): "65a6fd0a79da812a", ("oscillator2", 2): "5cc99b12162c6e84"}


def _digest(prompt) -> str:
    return hashlib.sha256(json.dumps([prompt.completion, prompt.messages]).encode()).hexdigest()[:16]


@pytest.mark.parametrize(("problem", "k"), sorted(GOLDEN))
def test_llmsr_prompts_are_byte_identical_to_before(problem, k):
    spec = builtin_spec(problem)
    seed = initial_program(spec)
    progs = [ProgramRef(f"p{i}", seed.replace("params[0]", f"params[0]*{i}+params[0]"), -i)
             for i in range(k)]
    assert _digest(PromptBuilder(spec, strategy="llmsr").build(progs)) == GOLDEN[(problem, k)]


def test_every_shipped_strategy_loads_and_describes_itself():
    names = strategy_names()
    for expected in ("llmsr", "no-prior", "scores", "feedback", "residuals", "reflect", "extend",
                     "no-fit", "no-refine"):
        assert expected in names
    for name in names:
        text = describe_strategy(name)
        assert text.startswith(f"{name}: ") and len(text) > 60
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        load_strategy("nope")


def test_unknown_or_abstract_strategy_is_a_config_error(capsys):
    assert main(["run", "oscillator1", "--strategy", "nope", "--llm", "replay:x", "--quiet"]) == 2
    assert "unknown strategy 'nope'" in capsys.readouterr().err
    assert main(["run", "oscillator1", "--strategy", "feedback-base", "--llm", "replay:x"]) == 2
    assert "template base" in capsys.readouterr().err


def test_strategies_command(capsys):
    assert main(["strategies", "list"]) == 0
    out = capsys.readouterr().out
    assert "no-prior" in out and "residuals" in out
    assert main(["strategies", "show", "reflect"]) == 0
    assert "reflect every 20 samples" in capsys.readouterr().out


def test_blocks_render_in_both_styles():
    spec = builtin_spec("oscillator1")
    seed = initial_program(spec)
    b = PromptBuilder(spec, strategy="residuals")
    p = b.build([ProgramRef("seed", seed, -1.0, 0.25)],
                Notes(failures=("runtime:ZeroDivisionError: division by zero",),
                      residuals="Residuals of equation_v0: ...", memory=("sin terms help",)))
    assert "# equation_v0: NMSE on the training data = 0.25" in p.completion
    assert "#   - runtime:ZeroDivisionError: division by zero" in p.completion
    assert p.completion.index("Residuals of equation_v0") < p.completion.index("def equation_v1(")
    assert "sin terms help" in p.messages[1]["content"]


def test_extend_prompt_ends_inside_the_best_return_expression():
    spec = builtin_spec("oscillator1")
    seed = initial_program(spec)
    p = PromptBuilder(spec, strategy="extend").build([ProgramRef("seed", seed, -1.0)])
    assert p.completion.endswith("return params[0] * x + params[1] * v + params[2] + params[3] *")
    assert "Reply with only the rest of that line" in p.messages[1]["content"]


def test_no_prior_spec_withholds_the_wording():
    spec = builtin_spec("oscillator1")
    anon = anonymise(spec, load_strategy("no-prior").anonymous_description)
    p = PromptBuilder(anon, strategy="no-prior").build([ProgramRef("seed", initial_program(anon))])
    text = p.completion + "\n".join(m["content"] for m in p.messages)
    assert anon.input_names == ["x0", "x1"] and anon.output.name == "y"
    assert_no_wording(spec, text)


def assert_no_wording(spec, text: str) -> None:
    """Neither the problem's words (description, variable descriptions, units) nor its
    variable names (as identifiers, case-sensitive) appear in ``text``."""
    wording = " ".join([spec.description, *(v.description for v in spec.inputs),
                        spec.output.description, *(v.unit or "" for v in spec.inputs)])
    generic = {"find", "the", "mathematical", "function", "skeleton", "that", "represents",
               "given", "data", "and", "with", "current"}
    for word in {w for w in re.findall(r"[A-Za-z]{3,}", wording) if w.lower() not in generic}:
        assert not re.search(rf"\b{re.escape(word)}\b", text, re.I), word
    names = {*spec.input_names, spec.output.name}
    for block in re.findall(r"(?:^|\n)((?:def |    )[^\n]*)", text):  # code lines
        used = set(re.findall(r"(?<![\w.'\"])[A-Za-z_]\w*", block.split("#")[0]))
        assert not names & used, (names & used, block)


# -- end to end with the replay backend -----------------------------------------------------
def _run(tmp_path: Path, llmsr_data: Path, strategy: str, *extra: str, responses: Path = RESPONSES,
         samples: int = 8) -> Path:
    out = tmp_path / strategy
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"),
                 "--llm", f"replay:{responses}", "--samples", str(samples), "--seed", "0",
                 "--out", str(out), "--workers", "1", "--quiet", "--strategy", strategy,
                 "--islands", "1", "--samples-per-prompt", "2", *extra])
    assert code == 0
    return out


def _read(out: Path, name: str) -> list[dict]:
    path = out / name
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("strategy", RUNNABLE)
def test_every_strategy_end_to_end_with_replay(strategy, tmp_path, llmsr_data):
    responses = RESPONSES
    if load_strategy(strategy).anonymise:
        responses = tmp_path / "anon.jsonl"
        responses.write_text("".join(json.dumps({"response": r}) + "\n" for r in ANON))
    extra = ("--reflect-every", "3") if strategy == "reflect" else ()
    out = _run(tmp_path, llmsr_data, strategy, *extra, responses=responses)
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert summary["strategy"] == strategy == config["config"]["sampler"]["strategy"]
    assert summary["samples"] == 8 and summary["valid"] >= 1
    prompts = _read(out, "prompts.jsonl")
    samples = _read(out, "samples.jsonl")
    assert prompts and all(p["template"].startswith(strategy) for p in prompts)
    text = "\n".join(p["completion"] for p in prompts)
    s = load_strategy(strategy)
    if "scores" in s.blocks:
        assert "NMSE on the training data =" in text
    if "failures" in s.blocks:
        assert "Recent programs that failed" in text
    if "residuals" in s.blocks:
        assert "by quantile of x (low to high)" in text and "correlation of the residual" in text
    if "memory" in s.blocks:
        events = [e for e in _read(out, "events.jsonl") if e["type"] == "memory"]
        assert events and all(e["prompt_hash"] and "memory" in e for e in events)
    if not s.refine:
        assert all(r["parent_ids"] == ["seed"] for r in samples if r["source"] == "llm")
    if not s.fit:
        ok = [r for r in samples if r["ok"]]
        assert ok and all(set(r["params"]) == {1.0} for r in ok)
    if s.anonymise:
        best = summary["best"]
        assert "x0" in best["program"]  # recorded as the model wrote it
        assert "x0" not in (best.get("equation") or "") and re.search(r"\bx\b", best["equation"])
        assert_no_wording(builtin_spec("oscillator1"), text + "\n".join(
            m["content"] for p in prompts for m in p["messages"]))


def test_extend_in_completion_style_joins_the_term(tmp_path, llmsr_data):
    terms = tmp_path / "terms.jsonl"
    terms.write_text("".join(json.dumps({"response": t}) + "\n"
                             for t in [" x**3\n", " np.sin(x)", "```python\nv**3\n```"]))
    out = _run(tmp_path, llmsr_data, "extend", "--prompt-style", "completion", responses=terms,
               samples=6)
    samples = [r for r in _read(out, "samples.jsonl") if r["source"] == "llm"]
    ok = [r for r in samples if r["ok"]]
    assert len(ok) >= 3
    assert any("+ params[3] * x ** 3" in r["program"] or "+ params[3] * x**3" in r["program"]
               for r in ok)
    assert all(p["completion"].rstrip().endswith("*") for p in _read(out, "prompts.jsonl"))


# -- against the canned OpenAI HTTP server: what the server received --------------------------
@pytest.mark.parametrize("strategy", RUNNABLE)
def test_every_strategy_against_the_canned_openai_server(strategy, tmp_path, llmsr_data):
    from openai_stub import OpenAIStub

    s = load_strategy(strategy)
    with OpenAIStub(ANON if s.anonymise else None) as stub:
        extra = ["--reflect-every", "2"] if strategy == "reflect" else []
        out = tmp_path / strategy
        code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"),
                     "--llm", "openai-compatible", "--base-url", stub.base_url, "--model", "m",
                     "--no-cache", "--samples", "4", "--samples-per-prompt", "2", "--concurrency", "1",
                     "--islands", "1", "--seed", "0", "--out", str(out), "--workers", "1", "--quiet",
                     "--strategy", strategy, *extra])
        bodies = list(stub.requests)
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"] == strategy and summary["samples"] == 4 and summary["valid"] >= 1
    sent = [m["content"] for b in bodies for m in b["messages"]]
    assert len(bodies) >= 2
    if s.anonymise:
        assert_no_wording(builtin_spec("oscillator1"), "\n".join(sent))
    if "memory" in s.blocks:  # the reflection is a request of its own
        assert any("Write up to 3 new insights" in c for c in sent)
    if "scores" in s.blocks:
        assert any("NMSE on the training data =" in c for c in sent)
