"""Ensembles: routing by weight with a seeded RNG, per-member concurrency and prompt form,
and samples that record which model wrote them."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from eqforge.agents.llm.base import Completion, LLMBackend, SamplingParams
from eqforge.agents.llm.ensemble import EnsembleBackend
from eqforge.agents.llm.registry import make_llm
from eqforge.cli import main
from eqforge.config import BackendConfig, LLMConfig
from eqforge.errors import BackendError
from eqforge.prompts.prompt import COMPLETION_STOPS, Prompt

PROMPT = Prompt(completion="COMPLETION", messages=[{"role": "user", "content": "CHAT"}], version=1)


class Member(LLMBackend):
    def __init__(self, name: str, style: str = "chat", concurrency: int = 2) -> None:
        self.name = name
        self.prompt_style = style  # type: ignore[assignment]
        self.max_concurrency = concurrency
        self.seen: list[tuple[str, tuple[str, ...]]] = []
        self.in_flight = 0
        self.peak = 0

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        text = prompt.text_for(self.prompt_style)
        self.seen.append((text if isinstance(text, str) else text[0]["content"], sampling.stop))
        await asyncio.sleep(0.002)
        self.in_flight -= 1
        return [Completion(text="x", model=self.name) for _ in range(sampling.n)]


def _drive(ens: EnsembleBackend, prompts: int, concurrency: int = 8) -> list[Completion]:
    async def go():
        sem = asyncio.Semaphore(concurrency)

        async def one():
            async with sem:
                return await ens.generate(PROMPT, SamplingParams(n=2, stop=COMPLETION_STOPS))
        return [c for batch in await asyncio.gather(*(one() for _ in range(prompts))) for c in batch]
    return asyncio.run(go())


def test_routing_follows_weights_and_is_seeded():
    def counts(seed: int) -> Counter:
        a, b = Member("m:a"), Member("m:b")
        ens = EnsembleBackend([(a, 0.8), (b, 0.2)], seed=seed)
        return Counter(c.model for c in _drive(ens, 500))

    c0 = counts(0)
    assert c0 == counts(0)  # same seed, same routing
    assert c0 != counts(1)
    share = c0["m:a"] / (c0["m:a"] + c0["m:b"])
    assert 0.74 < share < 0.86


def test_each_member_keeps_its_concurrency_limit():
    a, b = Member("m:a", concurrency=1), Member("m:b", concurrency=3)
    ens = EnsembleBackend([(a, 1), (b, 1)], seed=0)
    assert ens.max_concurrency == 4
    _drive(ens, 200, concurrency=16)
    assert a.peak == 1 and 1 < b.peak <= 3


def test_each_member_gets_its_own_prompt_form():
    chat, base = Member("openai:x", "chat"), Member("local:y", "completion")
    ens = EnsembleBackend([(chat, 1), (base, 1)], seed=0)
    out = _drive(ens, 40)
    assert chat.seen and base.seen
    assert all(text == "CHAT" and stop == () for text, stop in chat.seen)
    assert all(text == "COMPLETION" and stop == COMPLETION_STOPS for text, stop in base.seen)
    assert {c.extra["prompt_style"] for c in out if c.model == "local:y"} == {"completion"}
    assert {c.extra["prompt_style"] for c in out if c.model == "openai:x"} == {"chat"}
    members = ens.describe()["members"]
    assert [m["weight"] for m in members] == [0.5, 0.5]
    assert sum(m["prompts"] for m in members) == 40


def make_ensemble(specs: list[str], seed: int = 0):
    return make_llm(LLMConfig(backends=[BackendConfig.from_cli(s) for s in specs]), seed=seed)


def test_make_ensemble_parses_weights_and_fails_cleanly(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    f = tmp_path / "r.jsonl"
    f.write_text('{"response": "x"}\n')
    ens = make_ensemble([f"replay:{f}@3", f"replay:{f}@1"], seed=0)
    assert ens.weights == [3.0, 1.0]
    with pytest.raises(BackendError, match="OPENAI_API_KEY is not set"):
        make_ensemble([f"replay:{f}@0.5", "openai:gpt-4o@0.5"], seed=0)
    with pytest.raises(BackendError, match="weight must be positive"):
        make_ensemble([f"replay:{f}@0", f"replay:{f}@1"], seed=0)


def test_cli_ensemble_records_which_model_wrote_each_sample(llmsr_data, tmp_path, monkeypatch):
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({"response": "    return params[0] * x + params[1] * v\n"}) + "\n")
    b.write_text(json.dumps({"response": "    return params[0] * x + params[1] * v + params[2] * x**3\n"}) + "\n")
    out = tmp_path / "run"
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", f"replay:{a}@0.7",
                 "--llm", f"replay:{b}@0.3", "--samples", "40", "--out", str(out), "--quiet", "--workers", "1",
                 "--prompt-style", "completion"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    models = Counter(r["model"] for r in rows if r["source"] == "llm")
    assert set(models) == {"replay:a.jsonl", "replay:b.jsonl"}
    assert sum(models.values()) == 40
    summary = json.loads((out / "summary.json").read_text())
    assert [m["name"] for m in summary["llm"]["members"]] == ["replay:a.jsonl", "replay:b.jsonl"]
