"""A content-addressed on-disk cache of model responses.

The key of one response is the hash of (backend name, model, the prompt as rendered for
the backend's style, the sampling parameters, the seed, the sample's index among the n
asked for). Only seeded calls are cached: with a seed the call is meant to be repeatable,
so re-running an experiment returns the same responses and costs nothing. The loop always
passes a seed (reserved per request from the run's seed counter, see
agents/loop.py), so the cache is on by default; ``--no-cache``
or ``[llm] cache = false`` turns it off, ``EQFORGE_CACHE_DIR`` moves it.

Each entry is one small JSON file under ``<dir>/<key[:2]>/<key>.json``, written atomically,
so several runs may share the cache. Failed responses are never stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eqforge.agents.llm.base import Completion, LLMBackend, SamplingParams, WrappedBackend, user_cache_dir
from eqforge.prompts.prompt import Prompt

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return user_cache_dir("responses", "EQFORGE_CACHE_DIR")


class ResponseCache:
    def __init__(self, directory: str | Path | None = None) -> None:
        self.dir = Path(directory).expanduser() if directory else default_cache_dir()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(backend: LLMBackend, prompt: Prompt, sampling: SamplingParams, index: int) -> str:
        desc = backend.describe()
        blob = {
            "backend": backend.name,
            "model": str(desc.get("model", "")),
            "engine": desc.get("engine"),
            "style": backend.prompt_style,
            "prompt": prompt.text_for(backend.prompt_style),
            "sampling": {k: v for k, v in asdict(sampling).items() if k != "seed"},
            "seed": sampling.seed,
            "index": index,
        }
        raw = json.dumps(blob, sort_keys=True, ensure_ascii=False, default=list).encode()
        return hashlib.sha256(raw).hexdigest()

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(entry), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:  # a read-only or full disk must not break a run
            log.warning("response cache: cannot write %s (%s)", path, exc)


class CachedBackend(WrappedBackend):
    """Serve seeded calls from the cache; call the model only for what is missing."""

    def __init__(self, inner: LLMBackend, cache: ResponseCache) -> None:
        super().__init__(inner)
        self.cache = cache

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), "cache": str(self.cache.dir)}

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        if sampling.seed is None:
            return await self.inner.generate(prompt, sampling)
        keys = [self.cache.key(self.inner, prompt, sampling, i) for i in range(sampling.n)]
        entries = [self.cache.get(k) for k in keys]
        if all(e is not None for e in entries):
            self.cache.hits += len(entries)
            return [_from_entry(e) for e in entries]  # type: ignore[arg-type]
        # Sample i of a seeded call depends on the whole call (n, seed), so a partial hit
        # asks for all n again and refreshes the entries.
        self.cache.misses += sampling.n
        out = await self.inner.generate(prompt, sampling)
        for key, c in zip(keys, out, strict=False):
            if c.error is None and c.text:
                self.cache.put(key, _to_entry(c))
        return out


def _to_entry(c: Completion) -> dict[str, Any]:
    return {"text": c.text, "model": c.model, "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens, "finish_reason": c.finish_reason,
            "latency": c.latency, "cost": c.cost, "stored": time.time()}


def _from_entry(e: dict[str, Any]) -> Completion:
    # A cached answer costs nothing this time; what it cost when made is kept in extra.
    return Completion(text=e["text"], model=e.get("model", ""), prompt_tokens=e.get("prompt_tokens"),
                      completion_tokens=e.get("completion_tokens"),
                      finish_reason=e.get("finish_reason"), latency=0.0, cached=True, cost=0.0,
                      extra={"original_cost": e.get("cost"), "original_latency": e.get("latency")})
