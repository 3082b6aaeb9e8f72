"""The real ``openai`` client, through OpenAIBackend, against a canned HTTP server on 127.0.0.1.

Covers what goes over the wire (model, messages/prompt, n, temperature, max_tokens, seed,
stop), ``eqforge run`` end to end, and each failure: 429 then 200 (retried), a 500 storm
(one-line error, records kept), an unreachable port, a missing key, an unknown model,
context length exceeded and empty answers (per-sample reasons), a server restart mid-run.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from openai_stub import OpenAIStub, free_port

from eqforge import api
from eqforge.agents.llm.base import SamplingParams
from eqforge.agents.llm.openai_backend import OpenAIBackend
from eqforge.cli import main
from eqforge.config import Config
from eqforge.errors import BackendError
from eqforge.prompts.prompt import Prompt

PROMPT = Prompt(completion="def equation_v0(x, v, params):\n    \"\"\"doc\"\"\"\n",
                messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "write it"}],
                version=1, source_ids=["seed"])


# small retry delays everywhere (the defaults are 5 retries from 1 s)
FAST_RETRIES = ("--llm-retries", "3", "--llm-backoff", "0.01")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def stub():
    with OpenAIStub() as s:
        yield s


def _backend(stub, **kw) -> OpenAIBackend:
    return OpenAIBackend("m", base_url=stub.base_url, backoff=0.01, max_retries=3, **kw)


def _generate(backend, sampling):
    async def go():
        try:
            return await backend.generate(PROMPT, sampling)
        finally:
            await backend.aclose()
    return asyncio.run(go())


def _osc_args(llmsr_data: Path, stub, out: Path, *extra: str) -> list[str]:
    return ["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", "openai-compatible",
            "--base-url", stub.base_url, "--model", "m", "--out", str(out), "--quiet",
            "--workers", "1", *FAST_RETRIES, *extra]


# -- what goes over the wire ---------------------------------------------------------------
def test_chat_request_carries_model_messages_n_temperature_max_tokens(stub):
    out = _generate(_backend(stub), SamplingParams(n=3, temperature=0.7, top_p=0.9, max_tokens=128, seed=5))
    assert len(out) == 3 and all(c.error is None for c in out[:3] if c.text.strip())
    body = stub.requests[0]
    assert stub.paths[0] == "/v1/chat/completions"
    assert body["model"] == "m"
    assert body["messages"] == PROMPT.messages
    assert body["n"] == 3
    assert body["temperature"] == 0.7
    assert body["max_tokens"] == 128
    assert body["top_p"] == 0.9 and body["seed"] == 5
    assert out[0].prompt_tokens == 100 and out[0].completion_tokens == 20
    assert all(c.model == "openai-compatible:m" for c in out)


def test_completion_style_sends_the_raw_prompt_and_stops(stub):
    out = _generate(_backend(stub, prompt_style="completion"),
                    SamplingParams(n=2, max_tokens=64, stop=("\ndef ", "\nclass ")))
    assert stub.paths[0] == "/v1/completions"
    assert stub.requests[0]["prompt"] == PROMPT.completion
    assert stub.requests[0]["stop"] == ["\ndef ", "\nclass "]
    assert len(out) == 2


def test_server_that_ignores_n_gets_one_request_per_sample_with_distinct_seeds():
    with OpenAIStub(honour_n=False) as stub:
        out = _generate(_backend(stub), SamplingParams(n=4, seed=10))
    assert len(out) == 4
    assert stub.calls == 4
    assert sorted(r["seed"] for r in stub.requests) == [10, 11, 12, 13]


def test_cli_run_end_to_end(stub, llmsr_data, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(_osc_args(llmsr_data, stub, out, "--samples", "8", "--concurrency", "1"))
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 8
    assert summary["valid"] >= 2
    assert summary["tokens"]["prompt"] > 0 and summary["tokens"]["completion"] == 8 * 20
    assert stub.calls == 2 and all(r["n"] == 4 for r in stub.requests)
    assert all(r["model"] == "m" for r in stub.requests)
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    llm = [r for r in rows if r["source"] == "llm"]
    assert {r["model"] for r in llm} == {"openai-compatible:m"}
    assert {r["prompt_style"] for r in llm} == {"chat"}
    assert any(r["error"] == "parse:syntax" or r["error"] == "parse:no-equation" for r in llm)


# -- failures --------------------------------------------------------------------------------
def test_429_then_200_is_retried(stub):
    stub.script = [(429, "Rate limit reached"), (429, "Rate limit reached")]
    out = _generate(_backend(stub), SamplingParams(n=2))
    assert stub.calls == 3
    assert len(out) == 2 and all(c.error is None for c in out)


def test_500_storm_gives_up_with_one_line(stub):
    stub.script = [(500, "internal error")] * 10
    with pytest.raises(BackendError) as info:
        _generate(_backend(stub), SamplingParams(n=2))
    msg = str(info.value)
    assert "giving up after 4 attempts" in msg and "\n" not in msg
    assert stub.calls == 4


def test_500_storm_mid_run_stops_cleanly_keeping_records(stub, llmsr_data, tmp_path, capsys):
    stub.script = [(200, "")] * 2 + [(500, "internal error")] * 50
    out = tmp_path / "run"
    code = main(_osc_args(llmsr_data, stub, out, "--samples", "40", "--concurrency", "1"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("eqforge: error: ") and "giving up after" in err[0]
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sum(r["source"] == "llm" for r in rows) == 8  # the two answered prompts are kept
    assert json.loads((out / "summary.json").read_text())["stopped"] == "backend error"


def test_unreachable_port_is_one_line(llmsr_data, tmp_path, capsys):
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", "openai-compatible",
                 "--base-url", url, "--model", "m", "--samples", "4", "--out", str(tmp_path / "run"), "--quiet",
                 *FAST_RETRIES])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1
    assert f"cannot reach {url}" in err[0] and "is the server running?" in err[0]


def test_missing_openai_api_key_is_one_line(llmsr_data, tmp_path, capsys):
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", "openai:gpt-4o-mini",
                 "--samples", "4", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == ["eqforge: error: OPENAI_API_KEY is not set: export your OpenAI API key, or use "
                   "--llm openai-compatible --base-url URL for a local server"]
    assert not (tmp_path / "run").exists()


def test_unknown_model_is_one_line(stub):
    stub.script = [(404, "The model `nope` does not exist")]
    with pytest.raises(BackendError) as info:
        _generate(_backend(stub), SamplingParams(n=1))
    assert "model or endpoint not found" in str(info.value) and "check --model" in str(info.value)


def test_context_length_is_a_per_sample_reason(stub, llmsr_data, tmp_path):
    stub.script = [(400, "This model's maximum context length is 4096 tokens. However, you requested 9000 "
                    "tokens. Please reduce the length of the messages.")]
    out = _generate(_backend(stub), SamplingParams(n=3))
    assert [c.error for c in out] == ["llm:context-length"] * 3
    assert "maximum context length" in out[0].extra["detail"]
    # and in a run it is recorded per sample while the run goes on
    stub.script = [(400, "maximum context length exceeded")]
    run = tmp_path / "run"
    assert main(_osc_args(llmsr_data, stub, run, "--samples", "8", "--concurrency", "1")) == 0
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    errors = [r["error"] for r in rows if r["source"] == "llm"]
    assert errors[:4] == ["llm:context-length"] * 4 and len(errors) == 8


def test_empty_response_is_a_per_sample_reason(stub):
    stub.answer = lambda path, body: ""
    out = _generate(_backend(stub), SamplingParams(n=2))
    assert [c.error for c in out] == ["llm:empty", "llm:empty"]


def test_server_restart_mid_run_keeps_records_and_continues(stub, llmsr_data, tmp_path):
    stub.restart_after = 2
    stub.restart_pause = 0.3
    # Deterministic restart: the server is down before the second answer is sent (so the run's
    # next request meets a refused connection, however fast it is), and it counts the restart
    # before it listens again (so no request can succeed before the count is 1).
    handle, pause = stub._handle, stub.restart_pause

    def handle_then_go_down(path, body):  # noqa: ANN001, ANN202
        status, obj, restart = handle(path, body)
        if restart:
            stub.server.shutdown()  # stop accepting (the listener closes; this handler goes on)
            stub.server.socket.close()
        return status, obj, restart

    def come_back() -> None:
        time.sleep(pause)
        stub.restarts += 1
        stub._serve()

    stub._handle, stub._restart = handle_then_go_down, come_back
    backend = {"spec": "openai-compatible", "base_url": stub.base_url, "model": "m", "backoff": 0.2, "max_retries": 5}
    config = Config().with_overrides({"run": {"samples": 16}, "sampler": {"concurrency": 1},
                                      "evaluator": {"workers": 1}, "llm": {"backends": [backend]}})
    spec = api.RunSpec(problem="oscillator1", data=str(llmsr_data / "oscillator1"))
    summary = api.discover(spec, config, out=tmp_path / "run")
    assert stub.restarts == 1
    assert summary["samples"] == 16 and summary["stopped"] == "budget"
    rows = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert sum(r["source"] == "llm" for r in rows) == 16
