"""Against servers that answer as today's APIs do (the canned stub made to behave like them).

OpenAI's reasoning models (max_completion_tokens, no temperature/top_p/stop, reasoning tokens),
servers that refuse n > 1, vLLM without a chat template (base-model fallback), unknown prices
with --max-cost, runs whose every sample failed at the model, and rate limits (Retry-After,
fewer requests in flight while the API pushes back, a patience in time, a live-view status).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from openai_stub import OpenAIStub

from eqforge.agents.llm.base import SamplingParams
from eqforge.agents.llm.capabilities import capabilities_for, refused_parameter
from eqforge.agents.llm.openai_backend import OpenAIBackend
from eqforge.agents.llm.ratelimit import RateGate, retry_after
from eqforge.agents.llm.registry import make_backend, wrap_backend
from eqforge.cli import main
from eqforge.config import BackendConfig
from eqforge.errors import BackendError, ConfigError
from eqforge.prompts.prompt import Prompt

PROMPT = Prompt(completion="def equation_v0(x, v, params):\n    \"\"\"doc\"\"\"\n",
                messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "write it"}],
                version=1, source_ids=["seed"])
ANSWER = "```python\ndef equation_v1(x, v, params):\n    return params[0] * x + params[1] * v\n```"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def stub():
    with OpenAIStub([ANSWER]) as s:
        yield s


def _generate(backend, sampling):
    async def go():
        try:
            return await backend.generate(PROMPT, sampling)
        finally:
            await backend.aclose()
    return asyncio.run(go())


def _args(llmsr_data, stub, out, model="m", *extra):
    return ["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", "openai-compatible",
            "--base-url", stub.base_url, "--model", model, "--out", str(out), "--quiet", "--workers", "1",
            "--no-cache", *extra]


# -- the capability table ------------------------------------------------------------------
@pytest.mark.parametrize("model,kind,length", [
    ("gpt-5-mini", "reasoning", "max_completion_tokens"), ("gpt-5", "reasoning", "max_completion_tokens"),
    ("gpt-5.1-2025-11-13", "reasoning", "max_completion_tokens"), ("o3", "reasoning", "max_completion_tokens"),
    ("o4-mini", "reasoning", "max_completion_tokens"), ("openai/o1-mini", "reasoning", "max_completion_tokens"),
    ("gpt-5-chat-latest", "chat", "max_completion_tokens"), ("gpt-4o-mini", "chat", "max_tokens"),
    ("gemma-3-270m", "base", "max_tokens"), ("Qwen/Qwen2.5-7B-Instruct", "chat", "max_tokens"),
    ("gemma-3-270m-it", "chat", "max_tokens"), ("omni-model", "chat", "max_tokens"),
])
def test_capability_table(model, kind, length):
    caps = capabilities_for(model)
    assert (caps.kind, caps.length_param) == (kind, length)


@pytest.mark.parametrize("message,param,expected", [
    ("Unsupported parameter: 'max_tokens' is not supported with this model.", None, "max_tokens"),
    ("whatever", "temperature", "temperature"),
    ("'n' must be at most 1 for this model (got 4)", None, "n"),
    ("n: only n = 1 is supported", None, "n"),
    ("Invalid value for 'stop': not supported with this model", None, "stop"),
    ("This model's maximum context length is 4096 tokens", None, None),
    ("Invalid 'messages': must be a list", None, None),
])
def test_refused_parameter_reads_the_400(message, param, expected):
    assert refused_parameter(message, param) == expected


# -- reasoning models -----------------------------------------------------------------------
def test_reasoning_model_gets_what_it_accepts(stub, caplog):
    caplog.set_level(logging.WARNING)
    b = OpenAIBackend("gpt-5-mini", base_url=stub.base_url, backoff=0.01)
    out = _generate(b, SamplingParams(n=2, temperature=0.8, top_p=0.95, max_tokens=512, seed=3))
    assert stub.calls == 1 and stub.statuses == [200]
    body = stub.requests[0]
    assert "max_tokens" not in body and "temperature" not in body and "top_p" not in body
    assert body["max_completion_tokens"] == 512 + 8192 and body["n"] == 2 and body["seed"] == 3
    assert all(c.error is None for c in out)
    # reasoning tokens are completion tokens (billed as output) and are recorded apart
    assert out[0].completion_tokens == 20 + 50 and out[0].extra["reasoning_tokens"] == 50
    assert any("temperature 0.8" in r.message and "not applied" in r.message for r in caplog.records)
    assert any(a["param"] == "sampling" for a in b.describe()["adaptations"])


def test_unknown_reasoning_model_is_adapted_once_from_the_400s(stub, caplog, monkeypatch):
    """A model the table does not know, refusing parameters one 400 at a time."""
    monkeypatch.setattr(OpenAIStub, "_is_reasoning", staticmethod(lambda model: model == "new-thinker"))
    caplog.set_level(logging.WARNING)
    b = OpenAIBackend("new-thinker", base_url=stub.base_url, backoff=0.01)
    assert b.caps.kind == "chat"
    sampling = SamplingParams(n=2, temperature=0.7, max_tokens=256, seed=1)

    async def go():
        try:
            return [await b.generate(PROMPT, sampling) for _ in range(2)]
        finally:
            await b.aclose()
    first, second = asyncio.run(go())
    assert [c.error for c in first + second] == [None] * 4
    # max_tokens refused, then temperature, then accepted; the second call goes straight through
    assert stub.statuses == [400, 400, 200, 200]
    assert stub.requests[-1]["max_completion_tokens"] == 256 + 8192 and "temperature" not in stub.requests[-1]
    assert [a["param"] for a in b.describe()["adaptations"]] == ["max_tokens", "temperature"]
    assert sum("not applied" in r.message for r in caplog.records) == 1


def test_reasoning_without_headroom_is_truncated_not_empty(stub):
    b = OpenAIBackend("o3", base_url=stub.base_url, reasoning_headroom=0)
    out = _generate(b, SamplingParams(n=1, max_tokens=30))
    assert out[0].error == "llm:truncated" and "reasoning" in out[0].extra["detail"]


def test_cli_run_with_a_reasoning_model(stub, llmsr_data, tmp_path):
    out = tmp_path / "run"
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."gpt-5-mini"]\ninput = 1.0\noutput = 10.0\n')
    assert main(_args(llmsr_data, stub, out, "gpt-5-mini", "--samples", "8", "--concurrency", "1",
                      "--prices", str(prices), "--max-cost", "5")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["valid"] == 8 and not summary["failures"]
    assert summary["tokens"]["reasoning"] == 8 * 50
    # cost counts reasoning tokens as output: 2 requests * (100 in + 4 * 70 out)
    assert summary["cost"] == pytest.approx(2 * (100 * 1.0 + 4 * 70 * 10.0) / 1e6)
    assert summary["llm"]["model_kind"] == "reasoning"


def test_max_cost_without_a_price_refuses_to_start(stub, llmsr_data, tmp_path, capsys):
    code = main(_args(llmsr_data, stub, tmp_path / "run", "o9-preview", "--samples", "4", "--max-cost", "1"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--prices" in err[0] and "o9-preview" in err[0]
    assert stub.calls == 0 and not (tmp_path / "run").exists()
    with pytest.raises(ConfigError):
        wrap_backend(make_backend(BackendConfig(spec="openai-compatible", base_url=stub.base_url, model="x")),
                     require_price=True)


def test_price_table_names_todays_models():
    from eqforge.agents.llm.pricing import PriceTable

    table = PriceTable.load(user=False)
    for model in ("gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-mini-2025-08-07", "o3", "o4-mini", "gpt-4.1"):
        assert table.lookup(model) is not None, model


# -- servers that refuse n > 1 --------------------------------------------------------------
def test_server_refusing_n_gets_one_request_per_sample(stub, caplog):
    stub.max_n = 1
    caplog.set_level(logging.WARNING)
    b = OpenAIBackend("m", base_url=stub.base_url)
    out = _generate(b, SamplingParams(n=4, seed=10))
    assert [c.error for c in out] == [None] * 4
    assert stub.statuses == [400, 200, 200, 200, 200]
    assert sorted(r["seed"] for r in stub.requests[1:]) == [10, 11, 12, 13]
    assert all(r.get("n", 1) == 1 for r in stub.requests[1:])
    assert b.describe()["adaptations"][0]["param"] == "n"
    assert sum("one request per sample" in r.message for r in caplog.records) == 1


def test_cli_run_against_an_n1_server(stub, llmsr_data, tmp_path):
    stub.max_n = 1
    out = tmp_path / "run"
    assert main(_args(llmsr_data, stub, out, "m", "--samples", "8", "--concurrency", "2")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 8 and summary["valid"] == 8
    assert 1 <= stub.statuses.count(400) <= 2  # the requests in flight before the first refusal


def test_run_whose_every_sample_failed_at_the_model_exits_nonzero(stub, llmsr_data, tmp_path, capsys):
    stub.script = [(400, "Invalid 'messages[1].content': string too long")] * 10
    out = tmp_path / "run"
    code = main(_args(llmsr_data, stub, out, "m", "--samples", "8", "--concurrency", "1"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and "all 8 samples failed at the model" in err[0] and "llm:bad-request" in err[0]
    assert "string too long" in err[0]


# -- base models: --prompt-style auto ---------------------------------------------------------
def test_no_chat_template_falls_back_to_completion_once(stub, llmsr_data, tmp_path, caplog):
    stub.chat_template = False
    stub.responses = ["    return params[0] * x + params[1] * v\n"]
    caplog.set_level(logging.WARNING)
    out = tmp_path / "run"
    assert main(_args(llmsr_data, stub, out, "plain-model", "--samples", "8", "--concurrency", "1")) == 0
    assert stub.paths[0].endswith("/chat/completions")
    assert all(p.endswith("/v1/completions") for p in stub.paths[1:])
    assert "\ndef " in stub.requests[1]["stop"]
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert {r["prompt_style"] for r in rows if r["source"] == "llm"} == {"completion"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["valid"] == 8
    assert [a["param"] for a in summary["llm"]["adaptations"]] == ["prompt_style"]
    assert sum("chat template" in r.message for r in caplog.records) == 1


def test_explicit_chat_style_does_not_fall_back(stub):
    stub.chat_template = False
    out = _generate(OpenAIBackend("m", base_url=stub.base_url, prompt_style="chat"), SamplingParams(n=1))
    assert out[0].error == "llm:bad-request"


def test_known_base_model_starts_in_completion_style(stub):
    b = make_backend(BackendConfig(spec="openai-compatible", base_url=stub.base_url, model="gemma-3-270m"))
    assert b.prompt_style == "completion"
    assert make_backend(BackendConfig(spec="openai-compatible", base_url=stub.base_url, model="gemma-3-270m",
                                      prompt_style="chat")).prompt_style == "chat"


# -- rate limits ------------------------------------------------------------------------------
def test_retry_after_headers():
    assert retry_after({"retry-after": "10"}) == 10
    assert retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert retry_after({}) is None
    assert 0 <= retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) <= 0.0


def test_aimd_halves_on_429_and_grows_back():
    async def go():
        gate = RateGate(8, backoff=0.001)
        starts = [await gate.acquire() for _ in range(8)]
        for s in starts:  # a burst of 429s from one window is one cut
            await gate.release(s, limited=True, wait=0.0)
        assert gate.allowed == 4
        s = await gate.acquire()
        await gate.release(s, limited=True, wait=0.0)
        assert gate.allowed == 2
        for _ in range(40):
            s = await gate.acquire()
            await gate.release(s, ok=True)
        assert gate.allowed == 8 and gate.limited_for() == 0
    asyncio.run(go())


def test_rate_limited_for_a_while_the_run_slows_down_and_finishes(stub, llmsr_data, tmp_path):
    stub.rate_limit_for = 1.5
    stub.retry_after = "1"
    out = tmp_path / "run"
    t0 = time.monotonic()
    assert main(_args(llmsr_data, stub, out, "m", "--samples", "16", "--concurrency", "4")) == 0
    assert time.monotonic() - t0 >= 1.5
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 16 and summary["valid"] == 16 and summary["stopped"] == "budget"
    # Retry-After honoured: a pause per window, not a hammering retry loop
    assert 1 <= stub.statuses.count(429) <= 12
    assert summary["llm"]["rate_limited"] == stub.statuses.count(429)


def test_fewer_requests_in_flight_while_the_api_pushes_back(stub):
    stub.max_in_flight = 2
    stub.delay = 0.05
    stub.retry_after_ms = "20"

    async def go():
        b = OpenAIBackend("m", base_url=stub.base_url, concurrency=8, backoff=0.01)
        try:
            for _ in range(3):
                outs = await asyncio.gather(*(b.generate(PROMPT, SamplingParams(n=1)) for _ in range(8)))
                assert all(o[0].error is None for o in outs)
            return b
        finally:
            await b.aclose()
    b = asyncio.run(go())
    assert b.gate.allowed <= 4
    late = stub.statuses[-8:]
    assert late.count(429) <= 2  # it learned the limit


def test_patience_then_a_clean_stop(stub, llmsr_data, tmp_path, capsys):
    stub.rate_limit_for = 60
    stub.retry_after_ms = "100"
    out = tmp_path / "run"
    t0 = time.monotonic()
    code = main(_args(llmsr_data, stub, out, "m", "--samples", "8", "--patience", "1"))
    assert time.monotonic() - t0 < 20
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "still rate-limited" in err[0] and "--patience" in err[0]
    assert json.loads((out / "summary.json").read_text())["stopped"] == "backend error"


def test_quota_exhausted_is_not_weather(stub):
    stub.script = [(429, "You exceeded your current quota, please check your plan and billing details.",
                    "insufficient_quota")]
    with pytest.raises(BackendError, match="quota exhausted"):
        _generate(OpenAIBackend("m", base_url=stub.base_url), SamplingParams(n=1))
    assert stub.calls == 1


def test_live_view_says_rate_limited_waiting():
    from rich.console import Console

    from eqforge.agents.live import LiveProgress
    from eqforge.agents.progress import RunStats

    gate = RateGate(4)
    gate.paused_until = time.monotonic() + 9
    gate.limit = 2
    stats = RunStats(budget=10, problem="p")
    stats.llm_status = gate.status
    view = LiveProgress(console=Console(file=open("/dev/null", "w"), width=120))  # noqa: SIM115
    view._take(stats)
    console = Console(record=True, width=120)
    console.print(view.render())
    assert "rate-limited, waiting" in console.export_text()
