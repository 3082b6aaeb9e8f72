"""Backends for hosted OpenAI models and any server speaking the OpenAI API.

Both go through the official ``openai`` async client with a request timeout, a bounded
number of retries with exponential backoff on 429/5xx/connection errors, and a
concurrency limit. Errors that retrying cannot fix (missing key, bad URL after retries,
unknown model) become one-line ``BackendError``s that stop the run cleanly; errors that
concern one request only (context length exceeded, empty answers) become per-sample
failure reasons.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from typing import Any

from eqforge.agents.llm.base import Completion, LLMBackend, PromptStyle, SamplingParams
from eqforge.errors import BackendError
from eqforge.prompts.prompt import Prompt

log = logging.getLogger(__name__)


class OpenAIBackend(LLMBackend):
    cacheable = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        prompt_style: PromptStyle = "chat",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        label: str | None = None,
        native_n: bool = True,
    ) -> None:
        try:
            import openai
        except ImportError:  # pragma: no cover - a core dependency
            raise BackendError("the openai package is missing: pip install openai") from None
        key = api_key or os.environ.get(api_key_env)
        if not key:
            if base_url is None:
                raise BackendError(
                    f"{api_key_env} is not set: export your OpenAI API key, or use "
                    "--llm openai-compatible --base-url URL for a local server"
                )
            key = "EMPTY"  # local OpenAI-compatible servers usually accept any key
        self._openai = openai
        self.client = openai.AsyncOpenAI(
            api_key=key, base_url=base_url, timeout=timeout, max_retries=0
        )
        self.model = model
        self.base_url = base_url
        self.prompt_style = prompt_style
        self.max_concurrency = concurrency
        self._sem = asyncio.Semaphore(concurrency)
        self.max_retries = max_retries
        self.backoff = backoff
        self.native_n = native_n
        self.name = label or (f"openai:{model}" if base_url is None else f"openai-compatible:{model}")

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "model": self.model, "base_url": self.base_url}

    # -- one HTTP request, with retries ----------------------------------------------------
    async def _request(self, prompt: Prompt, sampling: SamplingParams, n: int) -> Any:
        o = self._openai
        common: dict[str, Any] = {
            "model": self.model,
            "n": n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            common["seed"] = sampling.seed
        if sampling.stop:
            common["stop"] = list(sampling.stop)[:4]
        attempt = 0
        while True:
            try:
                async with self._sem:
                    if self.prompt_style == "completion":
                        return await self.client.completions.create(
                            prompt=prompt.completion, **common
                        )
                    return await self.client.chat.completions.create(
                        messages=prompt.messages, **common
                    )
            except o.AuthenticationError as exc:
                raise BackendError(f"{self.name}: authentication failed ({_msg(exc)}); check the API key") from None
            except o.NotFoundError as exc:
                raise BackendError(
                    f"{self.name}: model or endpoint not found ({_msg(exc)}); check --model and --base-url"
                ) from None
            except o.BadRequestError as exc:
                text = _msg(exc).lower()
                if "context" in text and ("length" in text or "window" in text or "token" in text):
                    return _Failure("llm:context-length", _msg(exc))
                return _Failure("llm:bad-request", _msg(exc))
            except (o.RateLimitError, o.APIConnectionError, o.APITimeoutError,
                    o.InternalServerError) as exc:
                attempt += 1
                if attempt > self.max_retries:
                    where = self.base_url or "api.openai.com"
                    if isinstance(exc, o.APIConnectionError | o.APITimeoutError):
                        raise BackendError(
                            f"{self.name}: cannot reach {where} after {attempt} attempts "
                            f"({type(exc).__name__}); is the server running?"
                        ) from None
                    raise BackendError(
                        f"{self.name}: giving up after {attempt} attempts ({_msg(exc)})"
                    ) from None
                delay = self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
                log.warning("%s: %s; retry %d in %.1fs", self.name, type(exc).__name__, attempt, delay)
                await asyncio.sleep(delay)
            except o.APIStatusError as exc:
                raise BackendError(f"{self.name}: server error {exc.status_code} ({_msg(exc)})") from None

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        start = time.perf_counter()
        out: list[Completion] = []
        if self.native_n:
            resp = await self._request(prompt, sampling, sampling.n)
            out.extend(self._completions(resp, start, sampling.n))
        # Servers that ignore ``n`` (llama.cpp) return fewer choices: ask for the rest
        # concurrently, one per request.
        missing = sampling.n - len(out)
        if missing > 0:
            have = len(out)  # the first request used ``seed``: continue from seed + have
            resps = await asyncio.gather(
                *(self._request(prompt, _with_seed(sampling, have + i), 1) for i in range(missing))
            )
            for resp in resps:
                out.extend(self._completions(resp, start, 1))
        return out[: sampling.n]

    def _completions(self, resp: Any, start: float, n: int) -> list[Completion]:
        latency = time.perf_counter() - start
        if isinstance(resp, _Failure):
            return [Completion(text="", model=self.name, error=resp.reason, latency=latency,
                               extra={"detail": resp.detail}) for _ in range(n)]
        usage = getattr(resp, "usage", None)
        choices = list(resp.choices or [])
        k = max(1, len(choices))
        p_tok = getattr(usage, "prompt_tokens", None)
        c_tok = getattr(usage, "completion_tokens", None)
        out = []
        for ch in choices:
            if self.prompt_style == "completion":
                text = getattr(ch, "text", "") or ""
            else:
                msg = getattr(ch, "message", None)
                text = (getattr(msg, "content", None) or "") if msg is not None else ""
            finish = getattr(ch, "finish_reason", None)
            error = None
            if not text.strip():
                error = "llm:empty"
            out.append(Completion(
                text=text, model=self.name,
                # usage covers all choices: split prompt tokens once, completion evenly
                prompt_tokens=p_tok if ch is choices[0] else 0,
                completion_tokens=(c_tok // k) if c_tok is not None else None,
                finish_reason=finish, latency=latency, error=error,
            ))
        return out

    async def aclose(self) -> None:
        await self.client.close()


class _Failure:
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail[:300]


def _with_seed(sampling: SamplingParams, i: int) -> SamplingParams:
    if sampling.seed is None:
        return sampling
    from dataclasses import replace

    return replace(sampling, seed=sampling.seed + i)


def _msg(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:200]
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
