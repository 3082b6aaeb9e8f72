"""Building a backend from a ``--llm`` spec string.

Specs: ``openai:MODEL``, ``openai-compatible`` (with ``base_url`` and ``model``),
``replay:PATH``, ``local:PATH_OR_FILE``, ``vllm:MODEL``, ``terms:`` (random sums of library
terms, the no-model baseline; see ``terms``). Several specs with ``@weight``
suffixes form an ensemble.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eqforge.agents.llm.base import LLMBackend
from eqforge.errors import BackendError

KNOWN = ("openai", "openai-compatible", "replay", "local", "vllm", "terms")


@dataclass(frozen=True)
class BackendOptions:
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 5
    #: first retry delay in seconds (doubled each retry, with jitter); tests make it tiny
    backoff: float = 1.0
    #: seconds a hosted API may keep rate-limiting (429) without one success before the run
    #: stops; the waits follow the API's Retry-After
    patience: float = 300.0
    #: extra completion tokens for reasoning models' hidden reasoning (max_completion_tokens)
    reasoning_headroom: int = 8192
    #: refuse to build a priced backend whose model has no known price (set with --max-cost)
    require_price: bool = False
    prompt_style: str = "auto"
    replay_start: int = 0
    #: the response cache: on by default (used only for seeded, i.e. deterministic, calls)
    cache: bool = True
    cache_dir: str | None = None
    #: a price table (TOML) extending the shipped one and ~/.config/eqforge/prices.toml
    prices: str | None = None
    #: in-process engine for local: models: "auto", "llama-cpp" or "transformers"
    engine: str = "auto"
    extra: dict = field(default_factory=dict)


def split_weight(spec: str) -> tuple[str, float]:
    """``openai:gpt-4o@0.2`` -> (``openai:gpt-4o``, 0.2)."""
    if "@" in spec:
        base, _, w = spec.rpartition("@")
        try:
            weight = float(w)
        except ValueError:
            return spec, 1.0
        if weight <= 0:
            raise BackendError(f"--llm {spec}: weight must be positive")
        return base, weight
    return spec, 1.0


def make_backend(spec: str, options: BackendOptions | None = None) -> LLMBackend:
    options = options or BackendOptions()
    kind, _, arg = spec.partition(":")
    style = options.prompt_style
    if kind == "replay":
        from eqforge.agents.llm.replay import ReplayBackend

        if not arg:
            raise BackendError("--llm replay:PATH needs a JSONL file of responses")
        return ReplayBackend(arg, start=options.replay_start,
                             style=style if style in ("auto", "completion") else "chat")
    if kind == "terms":
        from eqforge.agents.llm.terms import TermsBackend

        return TermsBackend(arg)
    if kind in ("openai", "openai-compatible"):
        from eqforge.agents.llm.openai_backend import OpenAIBackend

        if kind == "openai":
            model = arg
            if not model:
                raise BackendError("--llm openai:MODEL needs a model name, e.g. openai:gpt-4o-mini")
        else:
            model = arg or options.model
            if not options.base_url:
                raise BackendError("--llm openai-compatible needs --base-url (e.g. http://127.0.0.1:8000/v1)")
            if not model:
                raise BackendError("--llm openai-compatible needs --model (the name the server serves)")
        return OpenAIBackend(
            model, base_url=options.base_url, api_key_env=options.api_key_env,
            prompt_style=style if style in ("chat", "completion") else "auto",
            concurrency=options.concurrency, timeout=options.timeout,
            max_retries=options.max_retries, backoff=options.backoff, patience=options.patience,
            reasoning_headroom=options.reasoning_headroom,
        )
    if kind == "local":
        try:
            from eqforge.agents.llm.local import make_local_backend
        except ImportError as exc:
            raise BackendError(f"local backend unavailable ({exc}); pip install -e '.[local]'") from None
        return make_local_backend(arg or None, options)
    if kind == "vllm":
        try:
            from eqforge.agents.llm.vllm_backend import VLLMBackend
        except ImportError as exc:
            raise BackendError(f"vllm backend unavailable ({exc}); pip install -e '.[vllm]'") from None
        return VLLMBackend(arg, options)
    raise BackendError(f"unknown --llm {spec!r}; use one of: " + ", ".join(f"{k}:…" for k in KNOWN))


def wrap_backend(backend: LLMBackend, options: BackendOptions | None = None) -> LLMBackend:
    """Add cost accounting and the response cache around a model backend."""
    from eqforge.agents.llm.cache import CachedBackend, ResponseCache
    from eqforge.agents.llm.pricing import PricedBackend, PriceTable

    options = options or BackendOptions()
    out: LLMBackend = PricedBackend(backend, PriceTable.load(options.prices), require=options.require_price)
    if options.cache and backend.cacheable:
        # outside the prices: entries keep what a response cost; a cache hit costs 0
        out = CachedBackend(out, ResponseCache(options.cache_dir))
    return out
