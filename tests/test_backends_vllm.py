"""The in-process vLLM backend: clear errors without vllm, the calls it makes (a stand-in
module), a real run on vLLM's CPU build (``vllm.LLM`` in the venv .ci/install-vllm.sh
caches, through a subprocess: vLLM pins its own torch and transformers), and on a CUDA GPU
when there is one."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import types

import pytest

from eqforge.agents.llm import vllm_backend
from eqforge.agents.llm.base import SamplingParams
from eqforge.agents.llm.registry import make_backend
from eqforge.config import BackendConfig
from eqforge.errors import BackendError
from eqforge.prompts.prompt import Prompt

PROMPT = Prompt(completion="def f():\n", messages=[{"role": "user", "content": "hi"}], version=1)


def test_without_vllm_the_error_is_one_line(monkeypatch):
    monkeypatch.setattr(vllm_backend, "vllm_available", lambda: False)
    with pytest.raises(BackendError) as info:
        make_backend("vllm:Qwen/Qwen2.5-0.5B-Instruct")
    msg = str(info.value)
    assert 'pip install -e ".[vllm]"' in msg and "vllm serve" in msg and "\n" not in msg
    with pytest.raises(BackendError, match="needs a model"):
        make_backend("vllm:")


def test_with_a_fake_vllm_module(monkeypatch, tmp_path):
    """The calls eqforge makes into vllm.LLM, with a stand-in module (no GPU needed)."""
    calls = {}

    class Out:
        def __init__(self, i):
            self.text, self.token_ids, self.finish_reason = f"    return {i}\n", [1, 2, 3], "stop"

    class Result:
        prompt_token_ids = list(range(12))
        outputs = [Out(0), Out(1)]

    class LLM:
        def __init__(self, model, **kw):
            calls["init"] = (model, kw)

        def generate(self, prompts, sp, use_tqdm=False):
            calls["generate"] = (prompts, sp)
            return [Result()]

        def chat(self, messages, sp, use_tqdm=False):
            calls["chat"] = (messages, sp)
            return [Result()]

    fake = types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(vllm_backend, "vllm_available", lambda: True)
    model_dir = tmp_path / "base-model"
    model_dir.mkdir()
    (model_dir / "tokenizer_config.json").write_text("{}")
    b = make_backend(BackendConfig(spec=f"vllm:{model_dir}", engine_args={"max_model_len": 4096}))
    assert b.prompt_style == "completion"  # no chat template in the folder
    out = asyncio.run(b.generate(PROMPT, SamplingParams(n=2, temperature=0.5, max_tokens=64, seed=7,
                                                         stop=("\ndef ",))))
    assert calls["init"] == (str(model_dir), {"max_model_len": 4096})
    prompts, sp = calls["generate"]
    assert prompts == [PROMPT.completion]
    assert sp == {"n": 2, "temperature": 0.5, "top_p": 1.0, "max_tokens": 64, "seed": 7, "stop": ["\ndef "]}
    assert [c.text for c in out] == ["    return 0\n", "    return 1\n"]
    assert out[0].prompt_tokens == 12 and out[1].prompt_tokens == 0 and out[0].completion_tokens == 3
    chat = make_backend("vllm:org/some-instruct-model")
    assert chat.prompt_style == "chat"
    asyncio.run(chat.generate(PROMPT, SamplingParams(n=2)))
    assert calls["chat"][0] == PROMPT.messages


def _cuda() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except ImportError:
        return False


@pytest.mark.gpu
def test_real_vllm_generates():
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (pip install -e '.[vllm]')")
    if not _cuda():
        pytest.skip("no CUDA GPU")
    model = os.environ.get("EQFORGE_VLLM_TEST_MODEL")
    if not model:
        pytest.skip("set EQFORGE_VLLM_TEST_MODEL to a local model folder to run the real vLLM test")
    b = make_backend(BackendConfig(spec=f"vllm:{model}",
                                   engine_args={"max_model_len": 2048, "gpu_memory_utilization": 0.5}))
    out = asyncio.run(b.generate(PROMPT, SamplingParams(n=2, max_tokens=32, seed=0)))
    assert len(out) == 2 and all(c.completion_tokens for c in out)


_IN_VENV = r"""
import asyncio, json, sys, time
root, model, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, root)
import eqforge
eqforge.__path__.append(root)  # the checkout's package-dir layout: eqforge.agents -> root/agents, ...
from eqforge.agents.llm.base import SamplingParams
from eqforge.agents.llm.registry import make_backend
from eqforge.config import BackendConfig
from eqforge.prompts.prompt import Prompt

prompt = Prompt(completion='import numpy as np\n\ndef equation_v0(x, v, params):\n    # acceleration\n',
                messages=[{"role": "user", "content": "Write equation(x, v, params) in Python."}], version=0)
b = make_backend(BackendConfig(spec="vllm:" + model, engine_args={"max_model_len": 1024, "dtype": dtype,
                                                                 "enforce_eager": True}))
out = {"style": b.prompt_style}
b.load()
out["load_seconds"] = b.load_seconds
sp = SamplingParams(n=2, temperature=0.8, max_tokens=24, seed=7, stop=("\ndef ",))
t0 = time.perf_counter()
chat = asyncio.run(b.generate(prompt, sp))
b.prompt_style = "completion"
first = asyncio.run(b.generate(prompt, sp))
again = asyncio.run(b.generate(prompt, sp))
other = asyncio.run(b.generate(prompt, SamplingParams(n=2, temperature=0.8, max_tokens=24, seed=8, stop=("\ndef ",))))
out["generate_seconds"] = round(time.perf_counter() - t0, 1)
row = lambda cs: [[c.text, c.prompt_tokens, c.completion_tokens, c.error] for c in cs]
out.update(chat=row(chat), first=row(first), again=row(again), other=row(other))
print("RESULT " + json.dumps(out))
"""


@pytest.mark.vllm
@pytest.mark.slow
def test_in_process_vllm_on_cpu(capsys):
    import json

    import vllm_env

    reason = vllm_env.missing()
    if reason:
        pytest.skip(reason)
    # the engine in this process (no engine-core subprocess): less memory, nothing left behind
    proc = vllm_env.run_in_venv(_IN_VENV, str(vllm_env.MODEL), vllm_env.DTYPE, timeout=900,
                                env={"VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.stdout[-1500:], proc.stderr[-3000:])
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["style"] == "chat"  # the exported checkpoint carries a chat template
    for name in ("chat", "first", "again", "other"):
        rows = out[name]
        assert len(rows) == 2 and all(err is None and text for text, _, _, err in rows), (name, rows)
        assert rows[0][1] > 5 and all(0 < ct <= 24 for _, _, ct, _ in rows)
    texts = lambda name: [r[0] for r in out[name]]  # noqa: E731
    assert texts("first") == texts("again")  # seeded: repeatable
    assert texts("first") != texts("other")
    with capsys.disabled():
        print(f"\nvllm: in-process vllm.LLM loaded in {out['load_seconds']}s, "
              f"4 calls of n=2 in {out['generate_seconds']}s", flush=True)
