"""In-process local models: ``--llm local:NAME_OR_PATH``, and ``local:`` for the default model.

A GGUF file or a Hugging Face model folder is loaded on this machine (CPU, or GPU where the
engine has one) and sampled n times per prompt with the run's temperature, top-p, max
tokens and seed. The pieces live in their own modules: which files ``local:`` knows and how
they are fetched (``model_files``, ``gguf``), the engines (``engines``,
``engine_llamacpp``, ``engine_transformers``, ``llama_build``) and the body-end rule
(``stops``). This module is the backend that ties them together.

``local:`` with no name picks the default by measurement (benchmarks/local_model.py,
docs/backends.md): Qwen2.5-Coder 1.5B on the llama.cpp engine, which beats the seed on
oscillator1 within a few dozen samples, where Gemma 3 270M almost never does. When the
llama.cpp engine cannot be had (built once on first use, ``llama_build``), it falls back to
Gemma 3 270M on the transformers engine and says so in one line. ``local:gemma-3-270m``,
``local:qwen2.5-coder-0.5b`` and ``local:qwen2.5-coder-1.5b`` name a model explicitly.

Prompt style under ``auto``: the known small base and coder models get the completion form
(LLM-SR's raw form: the model continues the body of ``equation_vN``) even when the file
carries a chat template (measured: the chat form makes Qwen2.5-Coder repeat the prompt and
add prose, 6x the tokens and fewer valid programs); other files get chat when they have a
template. Which one and why is logged once and recorded in ``describe()``. Generation runs in
a thread (``asyncio.to_thread``) so the event loop stays free; engines are imported lazily.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

from eqforge.agents.llm.base import Completion, LLMBackend, SamplingParams
from eqforge.agents.llm.engine_transformers import snapshot_dir
from eqforge.agents.llm.engines import (
    ENGINES,
    Sample,
    available_engines,
    choose_engine,
    default_threads,
)
from eqforge.agents.llm.gguf import gguf_metadata
from eqforge.agents.llm.model_files import (
    COMPLETION_FIRST,
    GEMMA,
    INSTALL_HINT,
    QWEN_15B,
    gemma_file,
    known_name,
    model_file,
    resolve_model,
)
from eqforge.agents.llm.stops import body_end, cut
from eqforge.config import BackendConfig
from eqforge.errors import BackendError
from eqforge.prompts.prompt import Prompt

log = logging.getLogger(__name__)

__all__ = ["ENGINES", "LocalBackend", "Sample", "available_engines", "body_end", "chat_template_of", "cut",
           "default_model_file", "gguf_metadata", "make_local_backend", "resolve_model"]


def chat_template_of(path: Path) -> str | None:
    """The model's chat template, read from metadata without loading the weights."""
    if path.is_dir():
        import json

        for name in ("chat_template.jinja", "chat_template.json"):
            if (path / name).is_file():
                return (path / name).read_text(encoding="utf-8")
        try:
            cfg = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
            return cfg.get("chat_template") or None
        except (OSError, ValueError):
            return None
    value = gguf_metadata(path, "tokenizer.chat_template")
    return value if isinstance(value, str) else None


def default_model_file() -> Path:
    """Gemma 3 270M's file: the model every engine can run (vLLM's conversion, the server
    tests). The offline default of ``local:`` is chosen in ``make_local_backend``."""
    return gemma_file()


def choose_style(path: Path, requested: str) -> tuple[str, str]:
    """The prompt style for ``path`` and why (``--prompt-style auto`` decides by model)."""
    if requested in ("chat", "completion"):
        return requested, "requested"
    template = chat_template_of(path)
    known = known_name(path)
    if known in COMPLETION_FIRST:
        why = (f"{known} is a known small model that writes better programs as raw completions"
               + (" (its chat template is not used)" if template else ""))
        return "completion", why
    if template:
        return "chat", "the model has a chat template"
    return "completion", "no chat template (a base model): LLM-SR's raw completion form"


class LocalBackend(LLMBackend):
    # One generation at a time keeps runs exactly repeatable (and the cache effective);
    # evaluation of a handful of programs is short next to generation on CPU.
    max_concurrency = 1
    cacheable = True

    def __init__(self, path: Path, *, engine: str = "auto", prompt_style: str = "auto",
                 n_ctx: int = 4096, threads: int | None = None, default: bool = False) -> None:
        self.path = path
        self.engine_name = choose_engine(path, engine)
        style, self.style_reason = choose_style(path, prompt_style)
        self.prompt_style = style  # type: ignore[assignment]
        if prompt_style == "auto":
            log.info("%s: %s prompts (%s)", path.name, style, self.style_reason)
        self.name = f"local:{path.name}"
        self.n_ctx = n_ctx
        self.threads = int(threads) if threads else default_threads()
        self.default_reason = ""
        self.default = default
        self._engine: Any = None
        self._lock = threading.Lock()
        self._aload: asyncio.Lock | None = None
        self.load_seconds: float | None = None
        self.load_source: str | None = None
        self.gen_seconds = 0.0
        self.gen_tokens = 0
        self.samples = 0

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {
            **super().describe(), "model": str(self.path), "engine": self.engine_name,
            "prompt_style_reason": self.style_reason, "default_model": self.default, "threads": self.threads,
            "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 2),
        }
        if self.default_reason:
            d["default_model_reason"] = self.default_reason
        if self.load_source:
            d["loaded_from"] = self.load_source  # gguf (converted now), snapshot or folder
        if self.gen_seconds > 0:
            d["tokens_per_second"] = round(self.gen_tokens / self.gen_seconds, 2)
            d["seconds_per_sample"] = round(self.gen_seconds / max(1, self.samples), 2)
        return d

    def load(self) -> None:
        """Load the weights (blocking; ``generate`` does it in a thread on first use)."""
        with self._lock:
            if self._engine is not None:
                return
            t0 = time.perf_counter()
            first = (self.engine_name == "transformers" and self.path.is_file()
                     and not (snapshot_dir(self.path) / ".complete").is_file())
            log.info("loading %s with %s%s", self.path.name, self.engine_name,
                     " (the first time: weights are de-quantised once and kept)" if first else "")
            try:
                if self.engine_name == "llama-cpp":
                    from eqforge.agents.llm.engine_llamacpp import LlamaCppEngine

                    self._engine = LlamaCppEngine(self.path, n_ctx=self.n_ctx, threads=self.threads, seed=0)
                else:
                    from eqforge.agents.llm.engine_transformers import TransformersEngine

                    self._engine = TransformersEngine(self.path, threads=self.threads)
            except ImportError as exc:
                raise BackendError(f"{self.name}: {self.engine_name} engine unavailable ({exc}); "
                                   f"{INSTALL_HINT}") from None
            except Exception as exc:  # noqa: BLE001 - engines raise many kinds
                raise BackendError(f"{self.name}: cannot load the model with {self.engine_name} "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
                                   ) from None
            self.load_seconds = time.perf_counter() - t0
            self.load_source = getattr(self._engine, "source", None)
            log.info("loaded %s in %.1f s", self.path.name, self.load_seconds)

    def _generate_sync(self, prompt: Prompt, sampling: SamplingParams) -> list[Sample]:
        self.load()
        with self._lock:
            return self._engine.sample(prompt, self.prompt_style, sampling)

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        if self._engine is None:
            if self._aload is None:
                self._aload = asyncio.Lock()
            async with self._aload:
                await asyncio.to_thread(self.load)
        t0 = time.perf_counter()
        samples = await asyncio.to_thread(self._generate_sync, prompt, sampling)
        dt = time.perf_counter() - t0
        self.gen_seconds += dt
        self.gen_tokens += sum(s.completion_tokens for s in samples)
        self.samples += len(samples)
        out = []
        for s in samples:
            error = s.error or (None if s.text.strip() else "llm:empty")
            out.append(Completion(
                text=s.text, model=self.name, prompt_tokens=s.prompt_tokens,
                completion_tokens=s.completion_tokens, finish_reason=s.finish_reason,
                latency=dt, cost=0.0, error=error,
                extra={"detail": s.detail} if s.detail else {},
            ))
        return out

    async def aclose(self) -> None:
        self._engine = None


def default_model(engine: str) -> tuple[Path, str]:
    """The offline default's file and why it was chosen.

    Qwen2.5-Coder 1.5B on llama.cpp when that engine is (or can be made) available; else
    Gemma 3 270M, which the transformers engine runs at a usable speed."""
    from eqforge.agents.llm import llama_build

    if engine in ("auto", "llama-cpp"):
        reason = llama_build.ensure()
        if reason is None:
            try:
                return model_file(QWEN_15B), f"{QWEN_15B} on llama.cpp (measured best, docs/backends.md)"
            except BackendError as exc:
                reason = str(exc)
        if engine == "llama-cpp":
            raise BackendError(f"the llama.cpp engine is not available: {reason}")
        why = f"the llama.cpp engine for {QWEN_15B} is not available ({reason})"
    else:
        why = f"the {engine} engine runs {QWEN_15B} too slowly (>200 s per sample)"
    path = gemma_file()  # raises the one-line install hint when Gemma is missing too
    log.warning("%s: using %s instead, which rarely improves on the seed (see docs/backends.md)", why, GEMMA)
    return path, f"{why}: fell back to {GEMMA}"


def make_local_backend(arg: str | None, options: BackendConfig) -> LocalBackend:
    """``local:`` (the default model) or ``local:NAME_OR_PATH``, as ``options`` configure it."""
    extra = options.engine_args
    why = ""
    if arg:
        path = resolve_model(arg)
    else:
        path, why = default_model(options.engine)
    threads = options.threads or extra.get("threads")
    backend = LocalBackend(
        path,
        engine=options.engine,
        prompt_style=options.prompt_style,
        n_ctx=int(extra.get("n_ctx", 4096)),
        threads=int(threads) if threads else None,
        default=not arg,
    )
    backend.default_reason = why
    return backend
