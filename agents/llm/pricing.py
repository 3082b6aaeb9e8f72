"""Token prices and the cost of each response.

Prices are USD per 1M prompt ("input") and completion ("output") tokens, per model, read
from TOML: the table shipped with eqforge (``agents/llm/prices.toml``), then the user's
``~/.config/eqforge/prices.toml`` (``$XDG_CONFIG_HOME`` respected), then ``--prices FILE``;
later files extend and override earlier ones. A model missing from the table costs 0 and a
note is logged once; with ``--max-cost`` such a model refuses to start instead (a budget that
can never trigger is worse than none). In-process and replayed models always cost 0.
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from eqforge.agents.llm.base import Completion, LLMBackend, SamplingParams, WrappedBackend
from eqforge.errors import ConfigError
from eqforge.prompts.prompt import Prompt

log = logging.getLogger(__name__)

FREE_KINDS = ("local", "vllm", "replay", "ensemble")


def user_prices_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "eqforge" / "prices.toml"


def _read(text: str, source: str) -> dict[str, tuple[float, float]]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid price table ({exc})") from None
    models = raw.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{source}: [models] must be a table of model names")
    out = {}
    for name, entry in models.items():
        if not isinstance(entry, dict) or not {"input", "output"} <= entry.keys():
            raise ConfigError(f"{source}: models.{name!r} needs 'input' and 'output' (USD per 1M tokens)")
        try:
            out[str(name)] = (float(entry["input"]), float(entry["output"]))
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: models.{name!r}: prices must be numbers") from None
    return out


@dataclass
class PriceTable:
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    _noted: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, extra: str | Path | None = None, *, user: bool = True) -> PriceTable:
        table = cls()
        shipped = resources.files("eqforge.agents.llm") / "prices.toml"
        table.prices.update(_read(shipped.read_text(encoding="utf-8"), "prices.toml"))
        table.sources.append("builtin")
        paths = [user_prices_path()] if user else []
        if extra is not None:
            p = Path(extra).expanduser()
            if not p.is_file():
                raise ConfigError(f"{p}: price file not found")
            paths.append(p)
        for p in paths:
            if p.is_file():
                table.prices.update(_read(p.read_text(encoding="utf-8"), str(p)))
                table.sources.append(str(p))
        return table

    def lookup(self, model: str) -> tuple[float, float] | None:
        if model in self.prices:
            return self.prices[model]
        best = None
        for name in self.prices:
            if model.startswith(name + "-") and (best is None or len(name) > len(best)):
                best = name
        return self.prices[best] if best is not None else None

    def cost(self, model: str, prompt_tokens: int | None, completion_tokens: int | None) -> float:
        price = self.lookup(model)
        if price is None:
            if model not in self._noted:
                self._noted.add(model)
                log.info("no price for model %r: counted as free (add it to %s or pass --prices FILE)",
                         model, user_prices_path())
            return 0.0
        return ((prompt_tokens or 0) * price[0] + (completion_tokens or 0) * price[1]) / 1e6


class PricedBackend(WrappedBackend):
    """Set ``Completion.cost`` from the token counts and the price table."""

    def __init__(self, inner: LLMBackend, table: PriceTable, *, require: bool = False) -> None:
        super().__init__(inner)
        self.table = table
        kind = inner.name.partition(":")[0]
        self.free = kind in FREE_KINDS
        self.model = str(inner.describe().get("model") or inner.name.partition(":")[2] or inner.name)
        if require and not self.free and table.lookup(self.model) is None:
            # with no price every response costs 0 and a cost budget would never trigger
            raise ConfigError(f"--max-cost: no price known for model {self.model!r}; give its USD per 1M "
                              "input/output tokens with --prices FILE (see agents/llm/prices.toml; 0 for a "
                              "free local server)")

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        out = await self.inner.generate(prompt, sampling)
        for c in out:
            if c.cost is None:
                c.cost = 0.0 if self.free else self.table.cost(self.model, c.prompt_tokens,
                                                                 c.completion_tokens)
        return out
