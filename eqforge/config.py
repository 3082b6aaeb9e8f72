"""Run configuration: frozen pydantic models whose defaults are LLM-SR's.

One model per concern (database, sampler, evaluator, run), composed into ``Config``. A TOML
file (``--config``) and CLI flags override the defaults; unknown keys are errors so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eqforge.errors import ConfigError


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Frozen):
    """The experience buffer (FunSearch's programs database)."""

    islands: int = Field(10, ge=1)
    functions_per_prompt: int = Field(2, ge=1)
    cluster_temperature_init: float = Field(0.1, gt=0)
    cluster_temperature_period: int = Field(30_000, ge=1)
    reset_period_seconds: float | None = Field(
        4 * 60 * 60, description="reset the worse half of islands this often (LLM-SR: 4 h)"
    )
    reset_period_samples: int | None = Field(
        None, description="or every this many samples (deterministic alternative)"
    )


class SamplerConfig(_Frozen):
    """How the LLM is asked."""

    samples_per_prompt: int = Field(4, ge=1)
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(1024, ge=16)
    strategy: str = Field("llmsr", description="prompting strategy (prompts/strategies/NAME; "
                          "see `eqforge strategies list`)")
    reflect_every: int | None = Field(None, ge=1, description="samples between reflections "
                                      "(strategies with a memory; default: the strategy's)")
    agent_turns: int = Field(8, ge=1, le=64, description="model turns per agent episode")
    agent_protocol: Literal["auto", "tools", "text"] = Field(
        "auto", description="agent strategy: the OpenAI tools API or the text protocol "
        "(auto: tools for openai/openai-compatible chat backends, else text)")
    prompt_style: Literal["auto", "chat", "completion"] = "auto"
    concurrency: int = Field(4, ge=1, description="prompts in flight at once")


class EvaluatorConfig(_Frozen):
    """How candidates are run and fitted."""

    timeout: float = Field(30.0, gt=0, description="wall-clock seconds per candidate")
    max_params: int = Field(10, ge=1)
    fitter: Literal["default", "llmsr"] = "default"
    workers: int = Field(0, ge=0, description="sandbox worker processes; 0 = one per core")
    memory_mb: int = Field(2048, ge=64, description="address-space limit per candidate")
    fit_subsample: int | None = Field(
        300, ge=10, description="search on at most this many training rows, then polish on all"
    )
    fit_time_budget: float | None = Field(
        None, gt=0, description="seconds the fitter may spend per candidate; default half the timeout"
    )
    allowed_imports: tuple[str, ...] = ()
    ray: str | None = Field(
        None, description="Ray address ('local' or host:port): sandbox pools run on the cluster's "
        "nodes as Ray actors (the [ray] extra); workers = 0 then means every CPU of the cluster"
    )


class RunConfig(_Frozen):
    """When to stop and where to write."""

    samples: int = Field(1000, ge=1, description="sample budget")
    max_seconds: float | None = Field(None, gt=0, description="wall-clock budget")
    target_score: float | None = Field(None, description="stop when best score >= this")
    max_cost: float | None = Field(None, ge=0, description="stop when spend (USD) exceeds this")
    seed: int = 0
    out: str | None = None


class Config(_Frozen):
    database: DatabaseConfig = DatabaseConfig()
    sampler: SamplerConfig = SamplerConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    run: RunConfig = RunConfig()

    def with_overrides(self, overrides: dict[str, dict[str, Any]]) -> Config:
        """Return a copy with section-wise overrides applied (validated)."""
        data = self.model_dump()
        for section, values in overrides.items():
            data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
        return _validate(data, source="command line")


def _validate(data: dict[str, Any], *, source: str) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{source}: {loc}: {err['msg']}") from None


def load_config(path: str | Path | None) -> Config:
    """Defaults, overridden by a TOML file if given."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML ({exc})") from None
    return _validate(raw, source=str(p))
