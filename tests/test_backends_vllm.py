"""The in-process vLLM backend: clear errors without vllm; a real run only on a CUDA GPU."""

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
