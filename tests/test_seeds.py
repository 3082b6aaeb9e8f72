"""Distinct seeds: every request reserves its own block of seeds when it is sent.

A server that honours seeds (vLLM: choice i of a request uses seed + i) returns the same
answers for the same (prompt, seed). Prompts in flight together are often identical early in
a run (every island holds the seed program), so if two requests shared a seed their samples
would be copies. The stub below answers as a pure function of (seed + choice) — the worst
case — and the run must still have no two samples with the same (seed, choice), no request
seed block overlapping another, and no duplicate programs; resume continues the counter.
"""

from __future__ import annotations

import json

import pytest
from openai_stub import OpenAIStub

from eqforge import api
from eqforge.agents.llm.base import SamplingParams
from eqforge.agents.llm.cache import ResponseCache
from eqforge.agents.llm.openai_backend import OpenAIBackend
from eqforge.config import Config
from eqforge.prompts.prompt import Prompt


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def seeded_answer(path: str, body: dict, i: int) -> str:
    """A distinct valid program for each value of seed + i (and the same one for equal values)."""
    k = int(body.get("seed", 0)) + i
    return f"    return params[0] * x + params[1] * v + {k + 2} * params[2] * x ** 2\n"


def _run(stub, llmsr_data, out, *, samples: int, resume: bool = False) -> dict:
    backend = {"spec": "openai-compatible", "base_url": stub.base_url, "model": "m", "backoff": 0.01}
    config = Config().with_overrides({"run": {"samples": samples}, "sampler": {"concurrency": 4},
                                      "evaluator": {"workers": 1}, "llm": {"backends": [backend], "cache": False}})
    if resume:
        return api.resume(out, samples=samples)
    spec = api.RunSpec(problem="oscillator1", data=str(llmsr_data / "oscillator1"))
    return api.discover(spec, config, out=out)


def _samples(out) -> list[dict]:
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return [r for r in rows if r["source"] == "llm"]


def test_concurrent_requests_never_share_a_seed(llmsr_data, tmp_path):
    with OpenAIStub() as stub:
        stub.answer_choice = seeded_answer
        stub.delay = 0.05  # keep several requests in flight together
        out = tmp_path / "run"
        summary = _run(stub, llmsr_data, out, samples=24)
        assert stub.peak_in_flight >= 2, "the test needs requests in flight together"
        requests = list(stub.requests)
    rows = _samples(out)
    assert len(rows) == 24
    pairs = [(r["seed"], r["choice"]) for r in rows]
    assert len(set(pairs)) == len(pairs)
    assert len({s + c for s, c in pairs}) == len(pairs)  # what the server actually used
    blocks = [set(range(r["seed"], r["seed"] + r["n"])) for r in requests]
    assert sum(len(b) for b in blocks) == len(set().union(*blocks))  # no two requests overlap
    assert summary["duplicates"] == 0
    assert len({r["program_key"] for r in rows}) == 24


def test_resume_continues_the_seed_counter(llmsr_data, tmp_path):
    with OpenAIStub() as stub:
        stub.answer_choice = seeded_answer
        out = tmp_path / "run"
        _run(stub, llmsr_data, out, samples=8)
        first = {r["seed"] + r["choice"] for r in _samples(out)}
        _run(stub, llmsr_data, out, samples=16, resume=True)
    rows = _samples(out)
    assert len(rows) == 16
    later = {r["seed"] + r["choice"] for r in rows[8:]}
    assert not first & later and len(later) == 8
    assert min(later) > max(first)


def test_cache_key_follows_the_seed():
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1")
    prompt = Prompt(completion="def f():\n", messages=[{"role": "user", "content": "hi"}], version=1)
    keys = {ResponseCache.key(backend, prompt, SamplingParams(n=4, seed=s), i) for s in (1, 5) for i in range(4)}
    assert len(keys) == 8
