"""Slow local servers finish: streamed answers, a timeout on silence, each choice ended on
the client side at its body's end, and the stream closed so the server stops writing.

Against ``openai_stub`` streaming as vLLM does (server-sent events, choices interleaved).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from openai_stub import OpenAIStub

from eqforge.agents.llm.base import SamplingParams
from eqforge.agents.llm.engines import BODY_TOKENS
from eqforge.agents.llm.openai_backend import OpenAIBackend
from eqforge.errors import BackendError
from eqforge.prompts.prompt import COMPLETION_STOPS, Prompt

PROMPT = Prompt(completion="def equation_v1(x, v, params):\n    \"\"\"doc\"\"\"\n",
                messages=[{"role": "user", "content": "write it"}], version=1, source_ids=["seed"])
BODY = "    a = params[0] * x\n    return a + params[1] * v\n"
RAMBLE = "\n".join(f"    junk_{i} = {i}" for i in range(60))  # what a model writes after its body


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _cancelled(stub: OpenAIStub) -> int:
    """The stub's count of streams the client closed (it notices at its next write)."""
    end = time.monotonic() + 3
    while not stub.cancelled and time.monotonic() < end:
        time.sleep(0.05)
    return stub.cancelled


def _generate(backend: OpenAIBackend, sampling: SamplingParams):  # noqa: ANN202
    async def go():  # noqa: ANN202
        try:
            return await backend.generate(PROMPT, sampling)
        finally:
            await backend.aclose()
    return asyncio.run(go())


def test_local_servers_stream_and_hosted_apis_do_not():
    assert OpenAIBackend("m", base_url="http://127.0.0.1:9/v1").stream is True
    assert OpenAIBackend("m", api_key="k").stream is False
    assert OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", stream=False).stream is False


def test_slow_server_finishes_when_it_never_goes_silent():
    """Total time 3x the timeout: a total-duration timeout would fail, silence does not."""
    with OpenAIStub([BODY]) as stub:
        stub.piece_delay = 0.12  # ~14 pieces x 2 choices: ~3 s, never silent for 0.5 s
        b = OpenAIBackend("m", base_url=stub.base_url, prompt_style="completion", timeout=1.0,
                          max_retries=0)
        out = _generate(b, SamplingParams(n=2, seed=1))
    assert [c.error for c in out] == [None, None]
    assert all(c.text == BODY.rstrip("\n") or c.text == BODY for c in out)
    assert stub.calls == 1 and stub.requests[0]["stream"] is True


def test_silence_times_out():
    with OpenAIStub([BODY]) as stub:
        stub.delay = 1.5  # nothing at all for 1.5 s
        b = OpenAIBackend("m", base_url=stub.base_url, prompt_style="completion", timeout=0.4,
                          max_retries=1, backoff=0.01)
        with pytest.raises(BackendError, match="APITimeoutError"):
            _generate(b, SamplingParams(n=1))


def test_choices_end_at_the_body_and_the_stream_is_closed():
    with OpenAIStub([BODY]) as stub:
        stub.tail = RAMBLE  # no stop sequence the server could apply: only the body-end rule ends it
        stub.piece_delay = 0.03
        b = OpenAIBackend("m", base_url=stub.base_url, prompt_style="completion")
        out = _generate(b, SamplingParams(n=3, seed=2, max_tokens=1024, stop=COMPLETION_STOPS))
        assert _cancelled(stub) == 1
        sent = stub.pieces_sent
    assert [c.text for c in out] == [BODY.rstrip("\n")] * 3
    assert all(c.extra.get("cut") == "client" and c.finish_reason == "stop" for c in out)
    assert sent < 3 * 40  # the rest (60 lines per choice) was never written
    assert stub.requests[0]["max_tokens"] == BODY_TOKENS  # one body's budget, not 1,024


def test_chat_answers_end_at_the_closing_fence():
    code = "```python\ndef equation_v1(x, v, params):\n    return params[0] * x\n```"
    with OpenAIStub([code + "\n\nThis law is linear." + " More prose." * 80]) as stub:
        stub.piece_delay = 0.02
        b = OpenAIBackend("m", base_url=stub.base_url, prompt_style="chat")
        out = _generate(b, SamplingParams(n=1))
        assert _cancelled(stub) == 1
    assert out[0].text == code and out[0].extra["cut"] == "client"


def test_truncated_answers_say_so():
    with OpenAIStub([BODY]) as stub:
        stub.answer_choice = None
        b = OpenAIBackend("m", base_url=stub.base_url, prompt_style="completion")
        out = _generate(b, SamplingParams(n=1))
    assert out[0].finish_reason == "stop" and "truncated" not in out[0].extra
    assert out[0].prompt_tokens == 100  # usage read from the stream's last chunk


def test_server_ignoring_n_streams_one_choice_and_gets_the_rest_asked():
    with OpenAIStub([BODY], honour_n=False) as stub:
        b = OpenAIBackend("m", base_url=stub.base_url, prompt_style="completion")
        out = _generate(b, SamplingParams(n=3, seed=7))
    assert len(out) == 3 and all(c.error is None for c in out)
    assert sorted(r["seed"] for r in stub.requests) == [7, 8, 9]
