"""Prices per model, Completion.cost, and the --max-cost budget stopping a run cleanly."""

from __future__ import annotations

import asyncio
import json

import pytest
from openai_stub import OpenAIStub

from eqforge.agents.llm.base import Completion, LLMBackend, SamplingParams
from eqforge.agents.llm.pricing import PricedBackend, PriceTable
from eqforge.cli import main
from eqforge.errors import ConfigError
from eqforge.prompts.prompt import Prompt


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQFORGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def test_shipped_prices_and_snapshot_names():
    t = PriceTable.load()
    assert t.lookup("gpt-4o-mini") == (0.15, 0.60)
    assert t.lookup("gpt-4o-mini-2024-07-18") == (0.15, 0.60)  # longest prefix, not gpt-4o
    assert t.lookup("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert t.cost("gpt-4o", 1_000_000, 100_000) == pytest.approx(3.5)


def test_unknown_model_costs_zero_with_a_note(caplog):
    t = PriceTable.load()
    with caplog.at_level("INFO"):
        assert t.cost("my-local-model", 1000, 1000) == 0.0
        assert t.cost("my-local-model", 1000, 1000) == 0.0
    assert sum("no price for model 'my-local-model'" in r.message for r in caplog.records) == 1


def test_user_file_and_prices_flag_override(tmp_path):
    user = tmp_path / "config" / "eqforge" / "prices.toml"
    user.parent.mkdir(parents=True)
    user.write_text('[models."gpt-4o-mini"]\ninput = 1.0\noutput = 2.0\n')
    extra = tmp_path / "p.toml"
    extra.write_text('[models."m"]\ninput = 1000\noutput = 1000\n')
    t = PriceTable.load(extra)
    assert t.lookup("gpt-4o-mini") == (1.0, 2.0)
    assert t.lookup("m") == (1000.0, 1000.0)
    assert t.lookup("gpt-4o") == (2.5, 10.0)


@pytest.mark.parametrize("text,needle", [
    ("[models", "invalid price table"),
    ('[models."x"]\ninput = 1\n', "needs 'input' and 'output'"),
    ('[models."x"]\ninput = "a"\noutput = 1\n', "prices must be numbers"),
])
def test_bad_price_files_are_one_line_errors(tmp_path, text, needle):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        PriceTable.load(p)
    with pytest.raises(ConfigError, match="price file not found"):
        PriceTable.load(tmp_path / "missing.toml")


class Fixed(LLMBackend):
    def __init__(self, name: str, model: str | None = None) -> None:
        self.name = name
        self._model = model

    def describe(self) -> dict[str, object]:
        return {**super().describe(), **({"model": self._model} if self._model else {})}

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        return [Completion(text="x", model=self.name, prompt_tokens=1000 if i == 0 else 0,
                           completion_tokens=500) for i in range(sampling.n)]


def test_priced_backend_sets_cost_and_local_models_are_free():
    p = Prompt(completion="c", messages=[], version=1)
    hosted = PricedBackend(Fixed("openai:gpt-4o", "gpt-4o"), PriceTable.load())
    out = asyncio.run(hosted.generate(p, SamplingParams(n=2)))
    assert out[0].cost == pytest.approx((1000 * 2.5 + 500 * 10) / 1e6)
    assert out[1].cost == pytest.approx(500 * 10 / 1e6)
    local = PricedBackend(Fixed("local:gemma.gguf", "/models/gemma.gguf"), PriceTable.load())
    assert [c.cost for c in asyncio.run(local.generate(p, SamplingParams(n=2)))] == [0.0, 0.0]


def test_max_cost_stops_the_run_cleanly(llmsr_data, tmp_path, capsys):
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."m"]\ninput = 1000\noutput = 1000\n')  # USD per 1M tokens
    out = tmp_path / "run"
    with OpenAIStub() as stub:  # 100 prompt + 4 x 20 completion tokens per request: 0.18 USD
        code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", "openai-compatible",
                     "--base-url", stub.base_url, "--model", "m", "--out", str(out), "--quiet", "--workers", "1",
                     "--samples", "40", "--concurrency", "1", "--prices", str(prices), "--max-cost", "0.5",
                     "--llm-retries", "2", "--llm-backoff", "0.01"])
        assert code == 0, capsys.readouterr().err
        assert stub.calls == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "cost budget"
    assert summary["samples"] == 12
    assert summary["cost"] == pytest.approx(0.54)
    assert "cost budget" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sum((r.get("cost") or 0) for r in rows) == pytest.approx(0.54)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["llm"]["prices"] == str(prices)
