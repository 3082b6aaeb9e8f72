"""The llama.cpp engine: GGUF weights as they are, fast on CPU.

Each of the n samples is one streamed completion that stops the moment its function body
is complete (``stops.StopScanner``, the rule every transport shares), with a token budget
of one body (``BODY_TOKENS``). The n samples of one prompt share its evaluation:
llama-cpp-python keeps the KV cache of the previous call and re-evaluates only the tokens
after the longest common prefix, so sample 2..n start decoding at once. The high-level API
decodes one sequence at a time; batching several prompts' decodes would need its low-level
batch API and a sampler per sequence, not worth it at 2 cores where one sequence already
keeps both busy.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from eqforge.agents.llm.base import PromptStyle, SamplingParams
from eqforge.agents.llm.engines import BODY_TOKENS, Sample
from eqforge.agents.llm.stops import StopScanner, cut
from eqforge.prompts.prompt import Prompt


class LlamaCppEngine:
    source = "gguf"

    def __init__(self, path: Path, *, n_ctx: int, threads: int, seed: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads,
                         n_threads_batch=threads, seed=seed, verbose=False)

    def count(self, text: str, bos: bool = False) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=bos))

    def sample(self, prompt: Prompt, style: PromptStyle, sp: SamplingParams) -> list[Sample]:
        out = []
        for i in range(sp.n):
            seed = (sp.seed + i) if sp.seed is not None else random.randrange(2**31)
            try:
                out.append(self._one(prompt, style, sp, seed))
            except ValueError as exc:  # e.g. "Requested tokens (…) exceed context window of …"
                msg = str(exc)
                reason = "llm:context-length" if "context" in msg.lower() else "llm:error"
                out.append(Sample("", 0, 0, "error", reason, msg[:300]))
        return out

    def _one(self, prompt: Prompt, style: PromptStyle, sp: SamplingParams, seed: int) -> Sample:
        common: dict[str, Any] = dict(temperature=sp.temperature, top_p=sp.top_p, top_k=0, min_p=0.0,
                                      repeat_penalty=1.0, seed=seed)
        if style == "chat":
            resp: Any = self.llm.create_chat_completion(messages=prompt.messages, max_tokens=sp.max_tokens,
                                                        stop=list(sp.stop) or None, **common)
            ch = resp["choices"][0]
            usage = resp.get("usage") or {}
            return Sample(ch["message"].get("content") or "", usage.get("prompt_tokens", 0),
                          usage.get("completion_tokens", 0), ch.get("finish_reason") or "stop")
        scanner = StopScanner(sp.stop, True)
        finish, tokens = "length", 0
        stream: Any = self.llm.create_completion(prompt.completion, stop=list(sp.stop) or [], stream=True,
                                                 max_tokens=min(sp.max_tokens, BODY_TOKENS), **common)
        for chunk in stream:
            ch = chunk["choices"][0]
            tokens += 1
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
            if scanner.feed(ch.get("text") or ""):
                finish = "stop"
                break
        text, was_cut = cut(scanner.text, sp.stop, True)
        return Sample(text, self.count(prompt.completion, bos=True), tokens, "stop" if was_cut else finish)
