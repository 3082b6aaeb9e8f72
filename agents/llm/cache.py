"""A content-addressed on-disk cache of model responses.

The key of one response is the hash of (backend name, model, the prompt as rendered for
the backend's style, the sampling parameters, the seed, the sample's index among the n
asked for, and which server or weights answer). Model names alone do not say which model
answers: two local servers both calling theirs ``model`` or ``qwen`` (a base checkpoint and
its fine-tune) must not share answers. So the key also holds the server's identity, asked
once per backend (``server_identity``): the base URL, plus what the server says about the
model where it says it (vLLM's ``/v1/models`` ``root``, llama.cpp's model path); a server
that does not answer is keyed on its base URL alone. In-process backends key on their
weights' file (path, size, modification time). Hosted OpenAI keys are unchanged.

Only seeded calls are cached: with a seed the call is meant to be repeatable,
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
    def key(backend: LLMBackend, prompt: Prompt, sampling: SamplingParams, index: int,
            server: dict[str, Any] | None = None) -> str:
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
        if server:  # absent (not empty) for hosted OpenAI: its keys stay what they were
            blob["server"] = server
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
        self._server: dict[str, Any] | None = None

    def describe(self) -> dict[str, object]:
        out = {**self.inner.describe(), "cache": str(self.cache.dir)}
        if self._server:
            out["cache_server"] = self._server
        return out

    async def server(self) -> dict[str, Any]:
        """Which server or weights answer, asked once (two first calls at once both ask: harmless)."""
        if self._server is None:
            self._server = await server_identity(self.inner)
        return self._server

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        if sampling.seed is None:
            return await self.inner.generate(prompt, sampling)
        server = await self.server()
        keys = [self.cache.key(self.inner, prompt, sampling, i, server) for i in range(sampling.n)]
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


def innermost(backend: LLMBackend) -> LLMBackend:
    while isinstance(backend, WrappedBackend):
        backend = backend.inner
    return backend


async def server_identity(backend: LLMBackend) -> dict[str, Any]:
    """The base URL and what the server says about its model; an in-process model's weights file.

    Never raises: a server that cannot be asked is identified by its base URL alone.
    """
    inner = innermost(backend)
    desc = inner.describe()
    out: dict[str, Any] = {}
    base = desc.get("base_url")
    if base:
        out["base_url"] = str(base).rstrip("/")
        ask = getattr(inner, "server_identity", None)
        if callable(ask):
            try:
                said = await ask()
            except Exception as exc:  # noqa: BLE001 - a coarser key, never a failed run
                log.debug("response cache: %s did not say which model it serves (%s)", base, exc)
                said = {}
            if said:
                out["model"] = said
    elif desc.get("engine"):  # in-process (local:, vllm:): the weights it loads
        weights = weights_identity(str(desc.get("model") or ""))
        if weights:
            out["weights"] = weights
    return out


def weights_identity(path: str) -> dict[str, Any]:
    """A weights file (or folder of files) by resolved path, sizes and modification times;
    {} for a name that is no local path (a hub id: the name is in the key already)."""
    if not path:
        return {}
    p = Path(path).expanduser()
    try:
        if p.is_file():
            st = p.stat()
            return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file())[:256]
            digest = hashlib.sha256()
            for f in files:
                st = f.stat()
                digest.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            return {"path": str(p.resolve()), "files": digest.hexdigest()[:32]}
    except OSError:
        return {}
    return {}
