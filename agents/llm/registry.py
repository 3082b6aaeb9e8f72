"""The run's model from its ``[llm]`` configuration: one backend, or an ensemble.

``make_llm`` is the one entry point: it builds each ``[[llm.backends]]`` entry (spec kinds
``openai:MODEL``, ``openai-compatible``, ``replay:PATH``, ``local:PATH_OR_FILE``,
``vllm:MODEL``, ``terms:MIN-MAX``), wraps each in its price table and the response cache,
and returns the single backend or an ``EnsembleBackend`` drawing members by weight.
"""

from __future__ import annotations

import asyncio

from eqforge.agents.llm.base import LLMBackend
from eqforge.config import LLM_KINDS, BackendConfig, LLMConfig
from eqforge.errors import BackendError


def make_llm(llm: LLMConfig | None = None, *, seed: int = 0, replay_start: int = 0,
             require_price: bool = False) -> LLMBackend:
    """The configured model(s), each with its prices and cache; several form an ensemble."""
    llm = llm or LLMConfig()
    if len(llm.backends) == 1:
        return wrap_backend(make_backend(llm.backends[0], replay_start=replay_start), llm,
                            require_price=require_price)
    from eqforge.agents.llm.ensemble import EnsembleBackend

    members: list[tuple[LLMBackend, float]] = []
    try:
        for b in llm.backends:
            members.append((wrap_backend(make_backend(b, replay_start=replay_start), llm,
                                         require_price=require_price), b.weight))
    except BaseException:
        for m, _ in members:
            _close_quietly(m)
        raise
    return EnsembleBackend(members, seed=seed)


def make_backend(backend: BackendConfig | str, *, replay_start: int = 0) -> LLMBackend:
    """One model backend, unwrapped (``make_llm`` adds prices and the cache)."""
    b = BackendConfig(spec=backend) if isinstance(backend, str) else backend
    kind, _, arg = b.spec.partition(":")
    style = b.prompt_style
    if kind == "replay":
        from eqforge.agents.llm.replay import ReplayBackend

        if not arg:
            raise BackendError("--llm replay:PATH needs a JSONL file of responses")
        return ReplayBackend(arg, start=replay_start,
                             style=style if style in ("auto", "completion") else "chat")
    if kind == "terms":
        from eqforge.agents.llm.terms import TermsBackend

        return TermsBackend(arg)
    if kind in ("openai", "openai-compatible"):
        from eqforge.agents.llm.openai_backend import OpenAIBackend

        model: str | None
        if kind == "openai":
            model = arg
            if not model:
                raise BackendError("--llm openai:MODEL needs a model name, e.g. openai:gpt-4o-mini")
        else:
            model = arg or b.model
            if not b.base_url:
                raise BackendError("--llm openai-compatible needs --base-url (e.g. http://127.0.0.1:8000/v1)")
            if not model:
                raise BackendError("--llm openai-compatible needs --model (the name the server serves)")
        return OpenAIBackend(
            model, base_url=b.base_url, api_key_env=b.api_key_env,
            prompt_style=style if style in ("chat", "completion") else "auto",
            concurrency=b.concurrency, timeout=b.timeout, max_retries=b.max_retries, backoff=b.backoff,
            patience=b.patience, reasoning_headroom=b.reasoning_headroom,
        )
    if kind == "local":
        try:
            from eqforge.agents.llm.local import make_local_backend
        except ImportError as exc:
            raise BackendError(f"local backend unavailable ({exc}); pip install -e '.[local]'") from None
        return make_local_backend(arg or None, b)
    if kind == "vllm":
        try:
            from eqforge.agents.llm.vllm_backend import VLLMBackend
        except ImportError as exc:
            raise BackendError(f"vllm backend unavailable ({exc}); pip install -e '.[vllm]'") from None
        return VLLMBackend(arg, b)
    raise BackendError(f"unknown --llm {b.spec!r}; use one of: " + ", ".join(f"{k}:…" for k in LLM_KINDS))


def wrap_backend(backend: LLMBackend, llm: LLMConfig | None = None, *, require_price: bool = False) -> LLMBackend:
    """Add cost accounting and the response cache around a model backend.

    ``require_price``: refuse a priced model with no known price (a ``--max-cost`` budget
    that could never trigger is worse than none)."""
    from eqforge.agents.llm.bounded import CappedBackend
    from eqforge.agents.llm.cache import CachedBackend, ResponseCache
    from eqforge.agents.llm.pricing import PricedBackend, PriceTable

    llm = llm or LLMConfig()
    out: LLMBackend = PricedBackend(backend, PriceTable.load(llm.prices), require=require_price)
    if llm.cache and backend.cacheable:
        # outside the prices: entries keep what a response cost; a cache hit costs 0
        out = CachedBackend(out, ResponseCache(llm.cache_dir))
    # outside the cache: the cache keeps what was sent; every reader sees at most the cap
    return CappedBackend(out, llm.max_response_chars)


def _close_quietly(backend: LLMBackend) -> None:
    try:
        asyncio.run(backend.aclose())
    except Exception:  # noqa: BLE001 - best effort while reporting another error
        pass
