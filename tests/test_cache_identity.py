"""The response cache knows which server answered, and runs say how many answers it served.

Two local servers that both call their model ``qwen`` (a base checkpoint and its
fine-tune, say) must not share cached answers, neither on different ports nor when the
same address later serves other weights (vLLM's ``/v1/models`` ``root`` changes).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from openai_stub import OpenAIStub

from eqforge.agents.llm.base import LLMBackend, SamplingParams
from eqforge.agents.llm.cache import CachedBackend, ResponseCache, server_identity, weights_identity
from eqforge.agents.llm.registry import make_backend, wrap_backend
from eqforge.cli import main
from eqforge.config import BackendConfig
from eqforge.prompts.prompt import Prompt

BASE = "    return params[0] * x"  # the base checkpoint's answer
TUNED = "    return params[0] * x + params[1] * v"  # the fine-tune's


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))


def _backend(stub: OpenAIStub) -> LLMBackend:
    return wrap_backend(make_backend(BackendConfig(spec="openai-compatible", base_url=stub.base_url, model="qwen",
                                                   prompt_style="completion", max_retries=0)))


def _ask(backend: LLMBackend) -> list[str]:
    async def go() -> list[str]:
        try:
            out = await backend.generate(Prompt(completion="p", messages=[{"role": "user", "content": "p"}],
                                                version=1), SamplingParams(n=2, seed=7))
            return [c.text for c in out]
        finally:
            await backend.aclose()
    return asyncio.run(go())


def _served(root: str) -> list[dict]:
    return [{"id": "qwen", "object": "model", "owned_by": "vllm", "root": root, "created": 1}]


def test_two_servers_with_the_same_model_name_do_not_share_answers():
    with OpenAIStub([BASE]) as a, OpenAIStub([TUNED]) as b:
        a.models, b.models = _served("/w/base"), _served("/w/tuned")
        assert _ask(_backend(a)) == [BASE, BASE]
        assert _ask(_backend(b)) == [TUNED, TUNED]  # not the first server's cached answers
        assert b.calls == 1
        again = _backend(a)
        assert _ask(again) == [BASE, BASE] and a.calls == 1  # each server's own answers are cached
        desc = again.describe()
        assert desc["cache_hits"] == 2 and desc["responses"] == 2


def test_the_same_address_serving_other_weights_does_not_reuse_answers():
    with OpenAIStub([BASE]) as stub:
        stub.models = _served("/w/base")
        assert _ask(_backend(stub)) == [BASE, BASE]
        stub.models, stub.responses = _served("/w/tuned"), [TUNED]  # restarted with a fine-tune
        assert _ask(_backend(stub)) == [TUNED, TUNED] and stub.calls == 2
        stub.models = _served("/w/tuned")
        stub.models[0]["created"] = 99  # vLLM stamps each listing: not part of the identity
        assert _ask(_backend(stub)) == [TUNED, TUNED] and stub.calls == 2


def test_a_server_that_says_nothing_is_keyed_on_its_address():
    with OpenAIStub([BASE]) as stub:
        backend = _backend(stub)
        stub.models = [{"id": "a", "object": "model"}, {"id": "b", "object": "model"}]  # not ours
        ident = asyncio.run(server_identity(backend))
        assert ident == {"base_url": stub.base_url, "model": {"served": ["a", "b"]}}
    dead = wrap_backend(make_backend(BackendConfig(spec="openai-compatible", base_url="http://127.0.0.1:9/v1",
                                                   model="qwen", max_retries=0)))
    assert asyncio.run(server_identity(dead)) == {"base_url": "http://127.0.0.1:9/v1"}  # refused: URL only


def test_in_process_weights_are_identified_by_file(tmp_path):
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"a" * 10)
    first = weights_identity(str(weights))
    assert first["path"] == str(weights.resolve()) and first["size"] == 10
    weights.write_bytes(b"b" * 11)
    os.utime(weights, ns=(1, 2))
    assert weights_identity(str(weights)) != first
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x")
    assert weights_identity(str(folder))["files"]
    assert weights_identity("Qwen/Qwen2.5-7B-Instruct") == {}  # a hub id: its name is keyed already


def test_hosted_openai_keys_are_unchanged():
    """No server identity for api.openai.com: entries written before stay valid."""
    class Hosted(LLMBackend):
        name = "openai:gpt-4o-mini"
        cacheable = True

        def describe(self) -> dict[str, object]:
            return {**super().describe(), "model": "gpt-4o-mini", "base_url": None}

        async def generate(self, prompt, sampling):  # noqa: ANN001, ANN202 - unused
            raise AssertionError

    backend = Hosted()
    assert asyncio.run(server_identity(backend)) == {}
    prompt = Prompt(completion="p", messages=[{"role": "user", "content": "p"}], version=1)
    s = SamplingParams(n=1, seed=1)
    assert ResponseCache.key(backend, prompt, s, 0, {}) == ResponseCache.key(backend, prompt, s, 0)
    assert isinstance(CachedBackend(backend, ResponseCache()), CachedBackend)


def test_a_run_records_its_cache_hits(llmsr_data: Path, tmp_path: Path):
    def run(stub: OpenAIStub, out: Path) -> dict:
        assert main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", "openai-compatible",
                     "--base-url", stub.base_url, "--model", "qwen", "--out", str(out), "--quiet", "--workers", "1",
                     "--samples", "4", "--samples-per-prompt", "2", "--concurrency", "1", "--llm-retries", "0"]) == 0
        return json.loads((out / "summary.json").read_text())["llm"]

    with OpenAIStub([BASE]) as stub:
        first, second = run(stub, tmp_path / "a"), run(stub, tmp_path / "b")
    assert first["responses"] == 4 and first["cache_hits"] == 0
    assert second["responses"] == 4 and second["cache_hits"] == 4
