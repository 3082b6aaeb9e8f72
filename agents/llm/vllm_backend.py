"""In-process vLLM: ``--llm vllm:MODEL`` for GPU users who want no server.

The supported way to use vLLM is its OpenAI-compatible server through ``--llm
openai-compatible`` (see docs/backends.md); this backend runs ``vllm.LLM`` inside the eqforge
process instead. ``vllm`` is imported lazily and the model is loaded on the first prompt (in
a thread, so the event loop stays free). Install with ``pip install -e ".[vllm]"`` (CUDA).

Options (``engine_args`` of its ``[[llm.backends]]`` entry): ``max_model_len``, ``gpu_memory_utilization``,
``tensor_parallel_size``, ``dtype``. Chat models (a tokenizer with a chat template) get the
chat form through ``LLM.chat``; base models the completion text through ``LLM.generate``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import time
from pathlib import Path
from typing import Any

from eqforge.agents.llm.base import Completion, LLMBackend, SamplingParams
from eqforge.config import BackendConfig
from eqforge.errors import BackendError
from eqforge.prompts.prompt import Prompt

ENGINE_KEYS = ("max_model_len", "gpu_memory_utilization", "tensor_parallel_size", "dtype",
               "enforce_eager", "download_dir")


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _has_chat_template(model: str) -> bool | None:
    """For a local model folder, whether its tokenizer has a chat template (None: unknown)."""
    p = Path(model)
    if not p.is_dir():
        return None
    if (p / "chat_template.jinja").is_file() or (p / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((p / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return None


class VLLMBackend(LLMBackend):
    cacheable = True
    max_concurrency = 1  # vllm.LLM batches the n samples of a prompt itself

    def __init__(self, model: str, options: BackendConfig | None = None) -> None:
        if not model:
            raise BackendError("--llm vllm:MODEL needs a model name or folder, e.g. vllm:Qwen/Qwen2.5-7B-Instruct")
        if not vllm_available():
            raise BackendError('vllm is not installed: pip install -e ".[vllm]" (needs a CUDA GPU), or run '
                               "`vllm serve MODEL` and pass --llm openai-compatible --base-url URL --model MODEL")
        self.model = model
        options = options or BackendConfig(spec=f"vllm:{model}")
        extra = options.engine_args
        self.engine_args = {k: extra[k] for k in ENGINE_KEYS if k in extra}
        style = options.prompt_style
        if style in ("chat", "completion"):
            self.prompt_style = style  # type: ignore[assignment]
        else:
            has = _has_chat_template(model)
            self.prompt_style = "completion" if has is False else "chat"
        self.name = f"vllm:{model}"
        self._llm: Any = None
        self._lock = threading.Lock()
        self.load_seconds: float | None = None

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "model": self.model, "engine": "vllm",
                "engine_args": self.engine_args, "load_seconds": self.load_seconds}

    def load(self) -> None:
        with self._lock:
            if self._llm is not None:
                return
            t0 = time.perf_counter()
            try:
                import vllm

                self._llm = vllm.LLM(model=self.model, **self.engine_args)
            except Exception as exc:  # noqa: BLE001 - CUDA, memory, missing weights ...
                first = str(exc).splitlines()[0][:200] if str(exc) else ""
                raise BackendError(f"{self.name}: cannot load the model ({type(exc).__name__}: {first})") from None
            self.load_seconds = round(time.perf_counter() - t0, 2)

    def _sync(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        import vllm

        self.load()
        sp = vllm.SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                                 max_tokens=sampling.max_tokens, seed=sampling.seed,
                                 stop=list(sampling.stop) or None)
        t0 = time.perf_counter()
        try:
            if self.prompt_style == "chat":
                result = self._llm.chat(prompt.messages, sp, use_tqdm=False)[0]
            else:
                result = self._llm.generate([prompt.completion], sp, use_tqdm=False)[0]
        except ValueError as exc:  # prompt longer than max_model_len, among others
            msg = str(exc)
            reason = "llm:context-length" if "length" in msg.lower() or "context" in msg.lower() else "llm:error"
            return [Completion(text="", model=self.name, error=reason, extra={"detail": msg[:300]})
                    for _ in range(sampling.n)]
        latency = time.perf_counter() - t0
        p_tok = len(result.prompt_token_ids or [])
        out = []
        for i, o in enumerate(result.outputs):
            out.append(Completion(
                text=o.text, model=self.name, prompt_tokens=p_tok if i == 0 else 0,
                completion_tokens=len(o.token_ids), finish_reason=o.finish_reason, latency=latency,
                cost=0.0, error=None if o.text.strip() else "llm:empty"))
        return out

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        return await asyncio.to_thread(self._sync, prompt, sampling)

    async def aclose(self) -> None:
        self._llm = None
