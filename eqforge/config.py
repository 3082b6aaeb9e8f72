"""Run configuration: frozen pydantic models whose defaults are LLM-SR's.

One model per concern (database, sampler, evaluator, run, llm), composed into ``Config``. A
TOML file (``--config``) and CLI flags override the defaults; unknown keys are errors so a
typo never silently falls back to a default. The CLI's flags are generated from these
fields (``eqforge.flags``): a field's description and default are its ``--help`` text,
so each is written once, here. ``json_schema_extra={"flag": ...}`` names a flag that differs
from the field's name, ``{"flag": None}`` keeps a field off the command line.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eqforge.errors import BackendError, ConfigError, EqforgeError


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_M = TypeVar("_M", bound=BaseModel)


class DatabaseConfig(_Frozen):
    """The experience buffer (FunSearch's programs database)."""

    islands: int = Field(10, ge=1, description="number of islands")
    functions_per_prompt: int = Field(2, ge=1, description="programs shown in each prompt")
    cluster_temperature_init: float = Field(0.1, gt=0, description="initial temperature of the cluster draw")
    cluster_temperature_period: int = Field(
        30_000, ge=1, description="programs per island over which the cluster temperature decays")
    reset_period_samples: int | None = Field(
        2500, ge=1, description="reset the worse half of the islands every this many samples "
        "(reproducible: same seed and replay, same resets)")
    reset_period_seconds: float | None = Field(
        None, gt=0, description="or this often in wall-clock seconds, as LLM-SR does (14400: 4 h; "
        "depends on speed, so runs are not reproducible)")


class SamplerConfig(_Frozen):
    """How the LLM is asked."""

    samples_per_prompt: int = Field(4, ge=1, description="responses per prompt")
    temperature: float = Field(0.8, ge=0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    max_tokens: int = Field(1024, ge=16, description="max tokens per response")
    strategy: str = Field("llmsr", description="prompting strategy (prompts/strategies/NAME; "
                          "see `eqforge strategies list`)")
    reflect_every: int | None = Field(None, ge=1, description="samples between reflections "
                                      "(strategies with a memory; default: the strategy's)")
    agent_turns: int = Field(8, ge=1, le=64, description="model turns per agent episode")
    agent_protocol: Literal["auto", "tools", "text"] = Field(
        "auto", description="agent strategy: the OpenAI tools API or the text protocol "
        "(auto: tools for openai/openai-compatible chat backends, else text)")
    concurrency: int = Field(4, ge=1, description="prompts in flight at once")


PromptStyleChoice = Literal["auto", "chat", "completion"]
LLM_KINDS = ("openai", "openai-compatible", "replay", "local", "vllm", "terms")


class BackendConfig(_Frozen):
    """One model of the run; several form an ensemble, each prompt going to one by weight."""

    spec: str = Field(
        "local:", description="openai:MODEL | openai-compatible | replay:FILE | local:PATH | vllm:MODEL"
        " | terms:MIN-MAX (repeat with @weight for an ensemble; local: is the offline model)",
        json_schema_extra={"flag": "--llm"},
    )
    weight: float = Field(1.0, gt=0, description="share of the prompts this model gets",
                          json_schema_extra={"flag": None})
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="model name for --llm openai-compatible")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    prompt_style: PromptStyleChoice = Field(
        "auto", description="chat messages or raw completion text (auto: what the model supports)")
    concurrency: int = Field(8, ge=1, description="requests in flight to this model at once",
                             json_schema_extra={"flag": "--llm-concurrency"})
    timeout: float = Field(120.0, gt=0, description="seconds a model may stay silent (streamed answers from"
                           " local servers: between two pieces; else per request)",
                           json_schema_extra={"flag": "--llm-timeout"})
    max_retries: int = Field(5, ge=0, description="retries of a failed request (rate limits, 5xx)",
                             json_schema_extra={"flag": "--llm-retries"})
    backoff: float = Field(1.0, gt=0, description="first retry delay in seconds, doubled each retry",
                           json_schema_extra={"flag": "--llm-backoff"})
    patience: float = Field(300.0, gt=0, description="seconds a rate-limiting API may keep answering 429"
                            " before the run stops (waits follow its Retry-After)")
    reasoning_headroom: int = Field(8192, ge=0, description="extra completion tokens for reasoning models'"
                                    " hidden reasoning (max_completion_tokens)")
    engine: Literal["auto", "llama-cpp", "transformers"] = Field(
        "auto", description="in-process engine for --llm local:PATH")
    threads: int | None = Field(
        None, ge=1, description="CPU threads of the in-process engine (local:; default: half the cores, at"
        " least 1, which keeps its speed when another process shares the cores)")
    engine_args: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="engine settings (local: n_ctx, threads; vllm: max_model_len,"
        " gpu_memory_utilization, tensor_parallel_size, dtype)", json_schema_extra={"flag": None})

    @property
    def kind(self) -> str:
        return self.spec.partition(":")[0]

    @classmethod
    def from_cli(cls, text: str, **fields: Any) -> BackendConfig:
        """``openai:gpt-4o@0.2`` -> spec ``openai:gpt-4o``, weight 0.2 (a bad weight stays in the spec)."""
        spec, weight = text, 1.0
        if "@" in text:
            base, _, w = text.rpartition("@")
            try:
                spec, weight = base, float(w)
            except ValueError:
                pass
            if weight <= 0:
                raise BackendError(f"--llm {text}: weight must be positive")
        return validated(cls, {**fields, "spec": spec, "weight": weight}, source="--llm")


#: the ``[llm]`` keys that may arrive among a backend's options (estimator dicts, old runs)
LLM_LEVEL_KEYS = ("cache", "cache_dir", "prices")


def with_shared_options(specs: Iterable[str] | None, options: Mapping[str, Any],
                        current: Iterable[BackendConfig] = (), *, source: str = "--llm") -> list[BackendConfig]:
    """The models of a run: one per ``--llm`` spec (``openai:gpt-4o@0.2``), each with the
    backend ``options`` every ``--llm`` shares; with no specs, the ``current`` models with the
    options on top. The one merge of the command line, the estimator and old run directories."""
    if specs:
        return [BackendConfig.from_cli(text, **options) for text in specs]
    return [validated(BackendConfig, {**b.model_dump(), **options}, source=source) for b in current]


def split_llm_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Backend options given as one dict -> (the ``[llm]`` keys, the per-backend keys)."""
    llm = {k: v for k, v in options.items() if k in LLM_LEVEL_KEYS}
    return llm, {k: v for k, v in options.items() if k not in LLM_LEVEL_KEYS}


class LLMConfig(_Frozen):
    """Which model(s) write the programs, and what is kept of their answers."""

    backends: tuple[BackendConfig, ...] = Field(
        (BackendConfig(),), min_length=1, description="the models ([[llm.backends]] tables)",
        json_schema_extra={"flag": None})
    cache: bool = Field(True, description="the response cache (~/.cache/eqforge/responses, or $EQFORGE_CACHE_DIR)")
    cache_dir: str | None = Field(None, description="response cache folder", json_schema_extra={"flag": None})
    prices: str | None = Field(None, description="price table (TOML, USD per 1M tokens) extending the built-in one")
    max_response_chars: int = Field(
        65_536, ge=1024, le=16_777_216, description="characters kept of each model answer before it is parsed "
        "(the rest is dropped; the sample records response_truncated)")


class EvaluatorConfig(_Frozen):
    """How candidates are run and fitted."""

    timeout: float = Field(30.0, gt=0, description="wall-clock seconds per candidate")
    max_params: int = Field(10, ge=1, description="most params a program may use")
    fitter: Literal["default", "llmsr"] = Field("default", description="parameter fitting procedure")
    workers: int = Field(0, ge=0, description="sandbox worker processes; 0 = one per core")
    memory_mb: int = Field(2048, ge=64, description="address-space limit per candidate")
    fit_subsample: int | None = Field(
        300, ge=10, description="search on at most this many training rows, then polish on all"
    )
    fit_time_budget: float | None = Field(
        None, gt=0, description="seconds the fitter may spend per candidate; default half the timeout"
    )
    allowed_imports: tuple[str, ...] = Field(
        (), description="modules programs may import beyond numpy and math", json_schema_extra={"flag": None})
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
    seed: int = Field(0, description="random seed")
    out: str | None = Field(None, description="run directory (default runs/<timestamp>-<problem>)")


class Config(_Frozen):
    database: DatabaseConfig = DatabaseConfig()
    sampler: SamplerConfig = SamplerConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    run: RunConfig = RunConfig()
    llm: LLMConfig = LLMConfig()

    def with_overrides(self, overrides: dict[str, dict[str, Any]]) -> Config:
        """Return a copy with section-wise overrides applied (validated)."""
        data = self.model_dump()
        for section, values in overrides.items():
            data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
        return _validate(data, source="command line")


def _validate(data: dict[str, Any], *, source: str) -> Config:
    return validated(Config, data, source=source)


def validated(model: type[_M], data: dict[str, Any], *, source: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{source}: {loc}: {err['msg']}") from None


def read_toml(path: Path, *, what: str = "file", error: type[EqforgeError] = ConfigError) -> dict[str, Any]:
    """A TOML file a user wrote (config, problem, sweep): a missing file or bad TOML is an
    ``error`` naming it (``what``: "config file", …). Other OS errors propagate."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: invalid TOML ({exc})") from None


def load_config(path: str | Path | None) -> Config:
    """Defaults, overridden by a TOML file if given."""
    if path is None:
        return Config()
    p = Path(path)
    return _validate(read_toml(p, what="config file"), source=str(p))


def upgrade_saved(saved: dict[str, Any]) -> dict[str, Any]:
    """A run directory's ``config.json`` from before the ``[llm]`` section, in today's form.

    Older runs kept the models in ``run.llm`` (spec strings), their settings in
    ``run.backend`` and the prompt form in ``sampler.prompt_style``; resuming such a run must
    still work, so they are moved into ``config.llm`` here, once, for every reader.
    """
    run = dict(saved.get("run") or {})
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in (saved.get("config") or {}).items()}
    if "llm" not in run and "backend" not in run and "prompt_style" not in config.get("sampler", {}):
        return saved
    llm, options = split_llm_options(run.pop("backend", None) or {})
    style = config.get("sampler", {}).pop("prompt_style", None)
    options.pop("replay_start", None)
    if "extra" in options:
        options["engine_args"] = options.pop("extra")
    if style is not None:
        options["prompt_style"] = style
    specs = run.pop("llm", None) or [BackendConfig().spec]
    llm["backends"] = [b.model_dump(mode="json") for b in with_shared_options(specs, options)]
    config["llm"] = llm
    return {**saved, "run": run, "config": config}
