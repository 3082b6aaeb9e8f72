"""The response cache (a second identical run makes zero model calls) and --replay-from."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from openai_stub import OpenAIStub

from eqforge.agents.llm.base import Completion, LLMBackend, SamplingParams, WrappedBackend
from eqforge.agents.llm.cache import CachedBackend, ResponseCache, default_cache_dir
from eqforge.agents.llm.registry import make_backend, wrap_backend
from eqforge.cli import main
from eqforge.config import LLMConfig
from eqforge.prompts.prompt import Prompt


class Counting(LLMBackend):
    name = "fake:counting"
    cacheable = True

    def __init__(self) -> None:
        self.calls = 0

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "model": "counting-1"}

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        self.calls += 1
        return [Completion(text=f"    return params[0] * x  # {sampling.seed} {i} {self.calls}", model=self.name,
                           prompt_tokens=10, completion_tokens=5, cost=0.25) for i in range(sampling.n)]


def _prompt(text: str = "p") -> Prompt:
    return Prompt(completion=text, messages=[{"role": "user", "content": text}], version=1)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def test_cache_dir_from_env(tmp_path):
    assert default_cache_dir() == tmp_path / "cache"


def test_hits_cost_nothing_and_keys_cover_prompt_sampling_seed():
    inner = Counting()
    b = CachedBackend(inner, ResponseCache())
    run = lambda p, s: asyncio.run(b.generate(p, s))  # noqa: E731
    first = run(_prompt(), SamplingParams(n=3, seed=1))
    again = run(_prompt(), SamplingParams(n=3, seed=1))
    assert inner.calls == 1
    assert [c.text for c in again] == [c.text for c in first]
    assert all(c.cached and c.cost == 0.0 for c in again)
    assert again[0].extra["original_cost"] == 0.25 and again[0].prompt_tokens == 10
    for other in [(_prompt("q"), SamplingParams(n=3, seed=1)), (_prompt(), SamplingParams(n=3, seed=2)),
                  (_prompt(), SamplingParams(n=3, seed=1, temperature=0.1)),
                  (_prompt(), SamplingParams(n=2, seed=1))]:
        run(*other)
    assert inner.calls == 5
    run(_prompt(), SamplingParams(n=3, seed=None))  # unseeded: never cached
    run(_prompt(), SamplingParams(n=3, seed=None))
    assert inner.calls == 7


def test_failed_answers_are_not_stored():
    class Failing(Counting):
        async def generate(self, prompt, sampling):  # noqa: ANN001, ANN202
            self.calls += 1
            return [Completion(text="", model=self.name, error="llm:empty") for _ in range(sampling.n)]

    inner = Failing()
    b = CachedBackend(inner, ResponseCache())
    asyncio.run(b.generate(_prompt(), SamplingParams(n=2, seed=0)))
    asyncio.run(b.generate(_prompt(), SamplingParams(n=2, seed=0)))
    assert inner.calls == 2


def test_wrap_backend_skips_replay_and_respects_no_cache(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text('{"response": "x"}\n')
    def cached(b: LLMBackend) -> bool:  # the cache sits inside the response cap (agents/llm/bounded.py)
        while isinstance(b, WrappedBackend):
            if isinstance(b, CachedBackend):
                return True
            b = b.inner
        return False

    assert not cached(wrap_backend(make_backend(f"replay:{f}")))
    assert cached(wrap_backend(Counting()))
    assert not cached(wrap_backend(Counting(), LLMConfig(cache=False)))


def _run(llmsr_data: Path, stub: OpenAIStub, out: Path, *extra: str) -> dict:
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", "openai-compatible",
                 "--base-url", stub.base_url, "--model", "m", "--out", str(out), "--quiet", "--workers", "1",
                 "--samples", "12", "--concurrency", "1", "--llm-retries", "2", "--llm-backoff", "0.01", *extra])
    assert code == 0
    return json.loads((out / "summary.json").read_text())


def _llm_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    return [r for r in rows if r["source"] == "llm"]


def test_second_identical_run_makes_zero_model_calls(llmsr_data, tmp_path):
    with OpenAIStub() as stub:
        first = _run(llmsr_data, stub, tmp_path / "a")
        calls = stub.calls
        assert calls == 3
        second = _run(llmsr_data, stub, tmp_path / "b")
        assert stub.calls == calls  # everything came from the cache
        assert second["cached_samples"] == 12 and first["cached_samples"] == 0
        assert [r["response"] for r in _llm_rows(tmp_path / "b")] == [r["response"] for r in _llm_rows(tmp_path / "a")]
        assert second["best"]["program"] == first["best"]["program"]
        _run(llmsr_data, stub, tmp_path / "c", "--no-cache")
        assert stub.calls == 2 * calls


def test_replay_from_reruns_a_recorded_run_without_the_model(llmsr_data, tmp_path, capsys):
    with OpenAIStub() as stub:
        first = _run(llmsr_data, stub, tmp_path / "a", "--no-cache")
        calls = stub.calls
        code = main(["run", "--replay-from", str(tmp_path / "a"), "--out", str(tmp_path / "r"), "--quiet"])
        assert code == 0, capsys.readouterr().err
        assert stub.calls == calls
    again = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert again["samples"] == first["samples"] and again["valid"] == first["valid"]
    assert again["best"]["program"] == first["best"]["program"]
    a, r = _llm_rows(tmp_path / "a"), _llm_rows(tmp_path / "r")
    assert [x["response"] for x in r] == [x["response"] for x in a]
    assert {x["model"] for x in r} == {"openai-compatible:m"}  # who originally wrote them
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert [b["spec"] for b in cfg["config"]["llm"]["backends"]] == [f"replay:{tmp_path / 'a'}"]


def test_replay_from_a_missing_run_is_one_line(tmp_path, capsys):
    code = main(["run", "--replay-from", str(tmp_path / "nope")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "no config.json here" in err[0]
    assert not (tmp_path / "nope").exists()
