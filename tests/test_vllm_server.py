"""eqforge against a real vLLM server (the CPU build) on 127.0.0.1, serving the default model.

The server comes from the cached venv ``.ci/install-vllm.sh`` builds, is started once for
this module on a free port and stopped after it. It serves the converted Gemma 3 270M as a
true base checkpoint (no chat template) under two names: ``gemma-3-270m``, which eqforge
knows as a base model, and ``eqforge-test-base``, which it does not (so ``--prompt-style
auto`` has to notice vLLM's "no chat template" error). Chat requests carry the template in
the request (``--trust-request-chat-template``). Skipped, with the reason, only when the
venv or the model could not be installed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict

import pytest
import vllm_env

from eqforge.agents.llm.base import SamplingParams
from eqforge.agents.llm.openai_backend import OpenAIBackend
from eqforge.cli import main
from eqforge.prompts.prompt import Prompt

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

PROMPT = Prompt(
    completion=('import numpy as np\n\n\ndef equation_v0(x: np.ndarray, v: np.ndarray, params: np.ndarray) -> '
                'np.ndarray:\n    """Acceleration of a damped oscillator from position x and velocity v."""\n'),
    messages=[{"role": "user", "content": "Write a Python function equation(x, v, params) for the "
                                          "acceleration of a damped oscillator."}],
    version=0)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    reason = vllm_env.missing()
    if reason:
        pytest.skip(reason)
    import os

    if os.environ.get("EQFORGE_VLLM_BASE_URL"):
        yield os.environ["EQFORGE_VLLM_BASE_URL"]
        return
    where = tmp_path_factory.mktemp("vllm")
    srv = vllm_env.Server(vllm_env.templateless_copy(where / "model"), where / "server.log")
    try:
        srv.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    MEASURED["start"] = f"vllm: server ready in {srv.ready_seconds:.0f}s on {srv.url}"
    try:
        yield srv.url
    finally:
        srv.stop()


MEASURED: dict[str, str] = {}


def _say(capsys, line: str) -> None:
    """A line in the test log, past pytest's capture (CI's log keeps the measured times)."""
    with capsys.disabled():
        print(f"\n{line}", flush=True)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def _client(server):
    import openai

    return openai.OpenAI(base_url=server, api_key="EMPTY", timeout=120, max_retries=0)


def test_models_lists_the_served_names(server, capsys):
    if "start" in MEASURED:
        _say(capsys, MEASURED.pop("start"))
    ids = [m.id for m in _client(server).models.list().data]
    assert ids[0] == vllm_env.MODEL_NAME


def test_completions_n_seed_usage(server):
    client = _client(server)
    kw = dict(model=vllm_env.MODEL_NAME, prompt=PROMPT.completion, max_tokens=24, temperature=0.8,
              stop=["\ndef "])
    a = client.completions.create(n=3, seed=11, **kw)
    assert len(a.choices) == 3 and all(c.text for c in a.choices)
    assert a.usage.prompt_tokens > 10 and 0 < a.usage.completion_tokens <= 3 * 24
    # choice i uses seed + i: the same request repeats exactly, choice 1 of seed 11 is choice 0 of 12
    b = client.completions.create(n=3, seed=11, **kw)
    assert [c.text for c in b.choices] == [c.text for c in a.choices]
    c = client.completions.create(n=1, seed=12, **kw)
    assert c.choices[0].text == a.choices[1].text


def test_chat_with_a_template_in_the_request(server):
    r = _client(server).chat.completions.create(
        model=vllm_env.MODEL_NAME, messages=PROMPT.messages, max_tokens=16, seed=0,
        extra_body={"chat_template": vllm_env.chat_template()})
    assert r.choices[0].message.content is not None and r.usage.completion_tokens > 0


def test_chat_without_a_template_is_refused_as_eqforge_expects(server):
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        _client(server).chat.completions.create(model=vllm_env.TEMPLATELESS_NAME, messages=PROMPT.messages,
                                                max_tokens=8)
    from eqforge.agents.llm.capabilities import is_missing_chat_template

    assert is_missing_chat_template(str(info.value))


def test_backend_auto_style_falls_back_to_completion(server, caplog):
    caplog.set_level(logging.WARNING)
    b = OpenAIBackend(vllm_env.TEMPLATELESS_NAME, base_url=server, prompt_style="auto", backoff=0.2)

    async def go():
        try:
            first = await b.generate(PROMPT, SamplingParams(n=2, max_tokens=32, seed=3))
            second = await b.generate(PROMPT, SamplingParams(n=2, max_tokens=32, seed=5))
            return first + second
        finally:
            await b.aclose()
    out = asyncio.run(go())
    assert b.prompt_style == "completion"
    assert [a["param"] for a in b.adaptations] == ["prompt_style"]
    assert sum("chat template" in r.message for r in caplog.records) == 1
    assert all(c.error is None and c.extra["prompt_style"] == "completion" for c in out)
    assert out[0].prompt_tokens and all(c.completion_tokens for c in out)


def test_eqforge_run_end_to_end(server, llmsr_data, tmp_path, capsys):
    """A short run in completion style with 4 prompts in flight: no copied samples."""
    out = tmp_path / "run"
    t0 = time.monotonic()
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", "openai-compatible",
                 "--base-url", server, "--model", vllm_env.MODEL_NAME, "--out", str(out), "--quiet",
                 "--samples", "12", "--concurrency", "3", "--max-tokens", "96", "--workers", "1",
                 "--no-cache", "--seed", "0"])
    seconds = time.monotonic() - t0
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    llm = [r for r in rows if r["source"] == "llm"]
    assert len(llm) == summary["samples"] == 12
    assert {r["prompt_style"] for r in llm} == {"completion"}  # known base model: no chat attempt
    assert summary["llm"].get("adaptations", [])[0]["param"] == "prompt_style"
    # distinct seeds: no (seed, choice) twice, and no request's answers a copy of another's
    assert len({(r["seed"], r["choice"]) for r in llm}) == 12
    assert len({r["seed"] + r["choice"] for r in llm}) == 12
    by_request = defaultdict(list)
    for r in llm:
        by_request[r["seed"]].append(r["response"])
    assert len(by_request) == 3
    batches = [tuple(v) for v in by_request.values()]
    assert len(set(batches)) == len(batches), "two requests returned the same answers"
    # tokens and timings recorded per sample
    assert all(r["completion_tokens"] for r in llm) and summary["tokens"]["prompt"] > 0
    assert all(r["llm_seconds"] > 0 for r in llm)
    assert all(r["eval_seconds"] is not None for r in llm if r["ok"])
    identical = len(llm) - len({r["response"] for r in llm})
    _say(capsys, f"vllm: eqforge run of 12 samples (concurrency 3) in {seconds:.0f}s: "
                  f"valid {summary['valid']}/12, duplicate programs {summary['duplicates']}, "
                  f"identical responses {identical}, copied request batches 0, "
                  f"tokens {summary['tokens']['prompt']}+{summary['tokens']['completion']}")
    assert summary["valid"] >= 1


def test_slow_server_issue_scenario_completes(server, llmsr_data, tmp_path, capsys):
    """Issue 25's scenario: 32 samples, 4 prompts in flight, completion style, the defaults
    (1,024 max tokens, 120 s timeout) that made a CPU vLLM time out. Streamed answers, each
    ended at its body: the run completes, no request's answers repeat another's."""
    out = tmp_path / "run"
    t0 = time.monotonic()
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", "openai-compatible",
                 "--base-url", server, "--model", vllm_env.MODEL_NAME, "--prompt-style", "completion",
                 "--out", str(out), "--quiet", "--samples", "32", "--concurrency", "4", "--workers", "1",
                 "--no-cache", "--seed", "0"])
    seconds = time.monotonic() - t0
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    llm = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    llm = [r for r in llm if r["source"] == "llm"]
    assert len(llm) == summary["samples"] == 32
    assert len({(r["seed"], r["choice"]) for r in llm}) == 32
    by_request = defaultdict(list)
    for r in llm:
        by_request[r["seed"]].append(r["response"])
    batches = [tuple(v) for v in by_request.values()]
    assert len(set(batches)) == len(batches), "two requests returned the same answers"
    errors = [r["error"] for r in llm if r["error"] and r["error"].startswith("llm:")]
    assert not errors, errors
    identical = len(llm) - len({r["response"] for r in llm})
    _say(capsys, f"vllm: issue-25 run of 32 samples (concurrency 4, completion) in {seconds:.0f}s: "
                  f"valid {summary['valid']}/32, identical responses {identical}, "
                  f"tokens {summary['tokens']['prompt']}+{summary['tokens']['completion']}")
