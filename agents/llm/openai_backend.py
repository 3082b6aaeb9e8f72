"""Backends for hosted OpenAI models and any server speaking the OpenAI API.

Both go through the official ``openai`` async client with a request timeout. What goes
into a request follows the model's capabilities (``capabilities``): reasoning models get
``max_completion_tokens`` with headroom for their hidden reasoning and no sampling
settings they would reject. When a server still refuses a parameter with a 400 that names
it, the backend adapts once (drop it, rename ``max_tokens``, split ``n`` into single
requests, fall back from chat to completion style for a model without a chat template
under ``--prompt-style auto``), logs it in one line, records it in ``describe()`` (the
run's summary) and retries. Rate limits go through a ``RateGate`` (``ratelimit``): waits as
long as the API asks, fewer requests in flight while it pushes back, a patience in time.
Other transient errors (5xx, connection) get a bounded number of retries with exponential
backoff. Errors retrying cannot fix (missing key, unreachable server, unknown model,
exhausted quota) become one-line ``BackendError``s that stop the run cleanly; errors that
concern one request only (context length exceeded, empty answers) become per-sample
failure reasons.

Servers on this machine or a laptop (``--base-url``) are slow: a CPU vLLM writes ~20
tokens/s in aggregate, and a request of 4 choices x 1,024 tokens outlasted any sensible
total timeout. So answers from such servers are streamed (``stream``: on for a base URL,
off for api.openai.com unless asked): ``timeout`` then bounds the silence between two
pieces, not the whole answer. Each choice in completion style is ended on the client side
once its function body is complete (``stops.StopScanner``, the rule the in-process engines
use), in chat style once a fenced code block with a ``def`` has closed outside any reasoning
trace (``chat_stop``; never for models whose template may open the trace); when every choice
is over the stream is closed, which makes the server cancel the rest. Completion-style
requests ask for at most ``BODY_TOKENS`` (one equation body). Each completion records
whether the client cut it (``extra["cut"] = "client"``) or the token budget did
(``finish_reason == "length"``, ``extra["truncated"]``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from dataclasses import replace
from typing import Any

from eqforge.agents.llm.base import Completion, LLMBackend, PromptStyle, SamplingParams
from eqforge.agents.llm.capabilities import (
    DEFAULT_REASONING_HEADROOM,
    capabilities_for,
    is_missing_chat_template,
    refused_parameter,
)
from eqforge.agents.llm.chat_stop import ChatStop, may_open_trace_in_template
from eqforge.agents.llm.engines import BODY_TOKENS
from eqforge.agents.llm.ratelimit import RateGate, retry_after
from eqforge.agents.llm.stops import StopScanner
from eqforge.agents.llm.streaming import (
    StreamChoice,
    Streamed,
    StreamInterrupted,
    choice_parts,
    read_stream,
)
from eqforge.errors import BackendError
from eqforge.prompts.prompt import COMPLETION_STOPS, Prompt

log = logging.getLogger(__name__)


class OpenAIBackend(LLMBackend):
    cacheable = True
    #: seconds a stream whose choices are all complete is read on for the usage chunk
    USAGE_GRACE = 0.3

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        prompt_style: PromptStyle | str = "chat",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        patience: float = 300.0,
        reasoning_headroom: int = DEFAULT_REASONING_HEADROOM,
        label: str | None = None,
        native_n: bool = True,
        stream: bool | None = None,
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
        # the client's own retries are off: they would retry 429s invisibly (see ratelimit)
        self.client = openai.AsyncOpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
        self.model = model
        self.base_url = base_url
        self.name = label or (f"openai:{model}" if base_url is None else f"openai-compatible:{model}")
        self.caps = capabilities_for(model)
        self.adaptations: list[dict[str, str]] = []
        self.auto_style = prompt_style == "auto"
        if prompt_style == "auto":
            self.prompt_style: PromptStyle = "completion" if self.caps.base else "chat"
            if self.caps.base:
                self._adapt("prompt_style", "completion", f"{model} is a base model (no chat template)")
        else:
            self.prompt_style = prompt_style  # type: ignore[assignment]
        self.max_concurrency = concurrency
        self.gate = RateGate(concurrency, patience=patience, backoff=backoff)
        self.max_retries = max_retries
        self.backoff = backoff
        self.patience = patience
        self.reasoning_headroom = reasoning_headroom
        self.native_n = native_n
        self.stream = base_url is not None if stream is None else stream
        self.length_param = self.caps.length_param
        self.omit: set[str] = set()
        if not self.caps.sampling:
            self.omit |= {"temperature", "top_p"}
        if not self.caps.stop:
            self.omit.add("stop")
        self._noted_table = False

    def describe(self) -> dict[str, object]:
        out = {**super().describe(), "model": self.model, "base_url": self.base_url, "model_kind": self.caps.kind}
        if self.adaptations:
            out["adaptations"] = list(self.adaptations)
        if self.gate.rate_limited:
            out["rate_limited"] = self.gate.rate_limited
        return out

    def status(self) -> str | None:
        return self.gate.status()

    async def server_identity(self) -> dict[str, object]:
        """What an OpenAI-compatible server says about the model it serves as ``self.model``
        (``GET /v1/models``: vLLM's ``root``, the weights' path; llama.cpp's model path and
        ``meta``), for the response cache's key (agents/llm/cache.py). ``{}`` for OpenAI itself
        or when the server says nothing: the cache then keys on the base URL alone."""
        if self.base_url is None:
            return {}
        try:
            page = await self.client.with_options(timeout=10.0, max_retries=0).models.list()
            served = [m.model_dump() for m in page.data]
        except Exception as exc:  # noqa: BLE001 - any failure only makes the key coarser
            log.debug("%s: no model list from %s (%s)", self.name, self.base_url, exc)
            return {}
        mine = [m for m in served if m.get("id") == self.model] or (served if len(served) == 1 else [])
        if not mine:
            return {"served": sorted(str(m.get("id")) for m in served)[:16]}
        keep = ("id", "root", "parent", "owned_by", "max_model_len", "meta")  # not "created": per request
        return {k: mine[0][k] for k in keep if mine[0].get(k) is not None}

    @property
    def _sem(self) -> _GateSlot:
        """``async with backend._sem:`` holds one request slot of the rate gate (older callers)."""
        return _GateSlot(self.gate)

    async def chat_raw(self, messages: list[dict[str, Any]], sampling: SamplingParams, **extra: Any) -> Any:
        """One chat request with extra fields (``tools=...``), returning the client's response.

        It goes through the same machinery as ``generate``: the capability table and one-time
        fallbacks, the rate gate and its patience, bounded retries; failures that concern this
        request only raise ``BackendError`` with the reason.
        """
        prompt = Prompt(completion="", messages=messages, version=0)
        resp = await self._request(prompt, replace(sampling, n=1), 1, extra=extra, style="chat")
        if isinstance(resp, _Failure):
            raise BackendError(f"{self.name}: the request failed ({resp.reason}: {resp.detail})")
        return resp.response

    # -- adapting to what the server accepts -----------------------------------------------
    def _adapt(self, param: str, action: str, why: str) -> None:
        """Record (in describe(), hence the run's summary) and log one adaptation."""
        self.adaptations.append({"param": param, "action": action, "reason": why[:200]})
        log.warning("%s: %s -> %s (%s)", self.name, param, action, why[:200])

    def _note_table(self, sampling: SamplingParams) -> None:
        """Say once which of the run's settings the capability table keeps from the API."""
        self._noted_table = True
        skipped = []
        if "temperature" in self.omit and sampling.temperature != 1.0:
            skipped.append(f"temperature {sampling.temperature:g}")
        if "top_p" in self.omit and sampling.top_p != 1.0:
            skipped.append(f"top_p {sampling.top_p:g}")
        if skipped:
            self._adapt("sampling", "not sent", f"{self.model} is a {self.caps.kind} model that accepts only the "
                        f"default; {' and '.join(skipped)} not applied")

    def _refusal(self, param: str, message: str, sampling: SamplingParams) -> bool:
        """Adapt to a 400 that refuses ``param``; False when there is nothing left to change."""
        if param == "n":
            if not self.native_n:
                return False
            self.native_n = False
            self._adapt("n", "one request per sample", message)
        elif param == "max_tokens":
            if self.length_param == "max_completion_tokens":
                return False
            self.length_param = "max_completion_tokens"
            self._adapt("max_tokens", f"max_completion_tokens (+{self.reasoning_headroom} reasoning headroom)",
                        message)
        else:
            if param in self.omit:
                return False
            self.omit.add(param)
            value = getattr(sampling, param, None)
            self._adapt(param, "not sent", f"{message}; the run's {param} {value!r} is not applied")
        return True

    def _params(self, sampling: SamplingParams, n: int, style: PromptStyle) -> dict[str, Any]:
        p: dict[str, Any] = {"model": self.model}
        if n != 1 or self.native_n:
            p["n"] = n
        if style == "completion":  # the legacy endpoint knows only max_tokens; one body is enough
            p["max_tokens"] = min(sampling.max_tokens, BODY_TOKENS)
        elif self.length_param == "max_completion_tokens":
            reasoning = self.caps.reasoning or any(a["param"] == "max_tokens" for a in self.adaptations)
            p["max_completion_tokens"] = sampling.max_tokens + (self.reasoning_headroom if reasoning else 0)
        else:
            p["max_tokens"] = sampling.max_tokens
        for name in ("temperature", "top_p"):
            if name not in self.omit:
                p[name] = getattr(sampling, name)
        if sampling.seed is not None and "seed" not in self.omit:
            p["seed"] = sampling.seed
        stop = sampling.stop or (COMPLETION_STOPS if style == "completion" else ())
        if stop and "stop" not in self.omit:
            p["stop"] = list(stop)[:4]
        return p

    # -- one HTTP request, with retries ----------------------------------------------------
    async def _request(self, prompt: Prompt, sampling: SamplingParams, n: int, *,
                       extra: dict[str, Any] | None = None, style: PromptStyle | None = None) -> Any:
        o = self._openai
        if not self._noted_table:
            self._note_table(sampling)
        attempt = 0
        fixed_style = style
        client: Any = self.client  # parameters are built at run time: checked by the API, not here
        while True:
            style = fixed_style or self.prompt_style
            params = {**self._params(sampling, n, style), **(extra or {})}
            started = await self.gate.acquire()
            outcome: dict[str, Any] = {}
            resp: Any
            try:
                if self.stream and not extra:
                    resp = await self._streamed(prompt, params, style, sampling)
                elif style == "completion":
                    resp = await client.completions.create(prompt=prompt.completion, **params)
                else:
                    resp = await client.chat.completions.create(messages=prompt.messages, **params)
                outcome["ok"] = True
                return _Answer(resp, style)
            except StreamInterrupted:
                if self.stream:
                    self.stream = False
                    self._adapt("stream", "off", "the server ended a streamed answer before it finished (as "
                                "llama.cpp's server does when another request arrives); asking without streaming")
                continue
            except o.RateLimitError as exc:
                if _code(exc) == "insufficient_quota":
                    raise BackendError(f"{self.name}: quota exhausted ({_msg(exc)}); check the plan and billing "
                                       "of this API key") from None
                outcome.update(limited=True, wait=retry_after(getattr(exc.response, "headers", None)))
                limit_msg = _msg(exc)
            except o.AuthenticationError as exc:
                raise BackendError(f"{self.name}: authentication failed ({_msg(exc)}); check the API key") from None
            except o.NotFoundError as exc:
                raise BackendError(
                    f"{self.name}: model or endpoint not found ({_msg(exc)}); check --model and --base-url"
                ) from None
            except o.BadRequestError as exc:
                text = _msg(exc)
                low = text.lower()
                if "context" in low and ("length" in low or "window" in low or "token" in low):
                    return _Failure("llm:context-length", text)
                if style == "chat" and self.auto_style and fixed_style is None and is_missing_chat_template(text):
                    self.prompt_style = "completion"
                    self._adapt("prompt_style", "completion", f"the server has no chat template for {self.model}: "
                                f"{text}")
                    continue
                param = refused_parameter(text, _param(exc))
                if param == "n" and n > 1:  # (a request sent before another one's refusal too)
                    if self.native_n:
                        self._refusal("n", text, sampling)
                    return _NEEDS_SINGLE
                if param is not None and param != "n" and self._refusal(param, text, sampling):
                    continue
                return _Failure("llm:bad-request", text)
            except (o.APIConnectionError, o.APITimeoutError, o.InternalServerError) as exc:
                attempt += 1
                if attempt > self.max_retries:
                    where = self.base_url or "api.openai.com"
                    if isinstance(exc, o.APIConnectionError | o.APITimeoutError):
                        raise BackendError(
                            f"{self.name}: cannot reach {where} after {attempt} attempts "
                            f"({type(exc).__name__}); is the server running?"
                        ) from None
                    raise BackendError(f"{self.name}: giving up after {attempt} attempts ({_msg(exc)})") from None
                delay = self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
                log.warning("%s: %s; retry %d in %.1fs", self.name, type(exc).__name__, attempt, delay)
                outcome["delay"] = delay
            except o.APIStatusError as exc:
                raise BackendError(f"{self.name}: server error {exc.status_code} ({_msg(exc)})") from None
            finally:
                pause = await self.gate.release(started, ok=bool(outcome.get("ok")),
                                                limited=bool(outcome.get("limited")), wait=outcome.get("wait"))
            if outcome.get("limited"):
                waited = self.gate.limited_for()
                if waited + pause > self.patience:
                    raise BackendError(
                        f"{self.name}: still rate-limited after {waited:.0f}s, past the patience of "
                        f"{self.patience:.0f}s ({limit_msg}); raise --patience or lower --concurrency") from None
                log.warning("%s: rate-limited (429), waiting %.1fs; %d request(s) in flight allowed",
                            self.name, pause, self.gate.allowed)
            elif "delay" in outcome:
                await asyncio.sleep(outcome["delay"])

    async def _streamed(self, prompt: Prompt, params: dict[str, Any], style: PromptStyle,
                        sampling: SamplingParams) -> Streamed:
        """One streamed request, each choice ended as soon as its program is complete."""
        o = self._openai
        n = int(params.get("n", 1))
        stops = tuple(sampling.stop or (COMPLETION_STOPS if style == "completion" else ()))
        # usage in the last chunk (OpenAI, llama.cpp) and, with vLLM, in every chunk: a stream
        # closed early still knows its prompt tokens
        opts = {} if "stream_options" in self.omit else {
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
        client: Any = self.client  # the stream's chunk types differ by style; read duck-typed
        if style == "completion":
            stream = await client.completions.create(prompt=prompt.completion, stream=True, **opts, **params)
        else:
            stream = await client.chat.completions.create(messages=prompt.messages, stream=True, **opts, **params)
        fence = style == "chat" and not may_open_trace_in_template(self.model)
        out = Streamed([StreamChoice(StopScanner(stops, style == "completion"), ChatStop() if fence else None)
                        for _ in range(n)])
        try:
            await read_stream(stream, out, style, self.USAGE_GRACE)
        except (o.APIError, StreamInterrupted):
            raise
        except Exception as exc:  # noqa: BLE001 - the HTTP library's own errors while reading
            request = getattr(getattr(stream, "response", None), "request", None)
            if "timeout" in type(exc).__name__.lower():
                raise o.APITimeoutError(request=request) from exc
            raise o.APIConnectionError(message=f"the stream broke: {type(exc).__name__}", request=request) from exc
        finally:
            await stream.close()
        # a server that ignores ``n`` streams one choice: report only what came, so the
        # caller asks for the rest (see ``generate``)
        out.choices = [c for c in out.choices if c.pieces or c.finish_reason]
        return out

    async def generate(self, prompt: Prompt, sampling: SamplingParams) -> list[Completion]:
        start = time.perf_counter()
        out: list[Completion] = []
        if self.native_n or sampling.n == 1:
            resp = await self._request(prompt, sampling, sampling.n)
            if resp is not _NEEDS_SINGLE:
                out.extend(self._completions(resp, start, sampling.n))
        # Servers that ignore ``n`` (llama.cpp) return fewer choices, and some refuse n > 1:
        # ask for the rest concurrently, one per request, choice i with seed + i.
        missing = sampling.n - len(out)
        if missing > 0:
            have = len(out)
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
        style = resp.style
        resp = resp.response
        usage = getattr(resp, "usage", None)
        choices = list(getattr(resp, "choices", None) or [])
        k = max(1, len(choices))
        p_tok = getattr(usage, "prompt_tokens", None)
        c_tok = getattr(usage, "completion_tokens", None)
        details = getattr(usage, "completion_tokens_details", None)
        r_tok = getattr(details, "reasoning_tokens", None) if details is not None else None
        if isinstance(resp, Streamed):
            # a stream closed early has no final usage (or only an earlier chunk's running count,
            # llama.cpp's first chunk says 0): each piece is about one token, a lower bound
            c_tok = max(c_tok or 0, sum(c.pieces for c in resp.choices)) or None
        out = []
        for ch in choices:
            text, reasoning = choice_parts(ch, style, "message")
            finish = getattr(ch, "finish_reason", None)
            error = None
            extra: dict[str, Any] = {"prompt_style": style}
            if getattr(ch, "cut", False):
                extra["cut"] = "client"  # ended here at the body's end; the server was told to stop
            if finish == "length":
                extra["truncated"] = True  # the token budget ended it, not the model
            if reasoning:
                extra["reasoning_chars"] = len(reasoning)
            if r_tok:
                extra["reasoning_tokens"] = r_tok // k
            if not text.strip():
                error = "llm:truncated" if finish == "length" else "llm:empty"
                if finish == "length" and (reasoning or r_tok):
                    extra["detail"] = ("the model spent its token budget on reasoning before answering; "
                                       "raise --max-tokens")
            out.append(Completion(
                text=text, model=self.name,
                # usage covers all choices: prompt tokens once, completion (incl. reasoning) evenly
                prompt_tokens=p_tok if ch is choices[0] else 0,
                completion_tokens=(c_tok // k) if c_tok is not None else None,
                finish_reason=finish, latency=latency, error=error, extra=extra,
            ))
        return out

    async def aclose(self) -> None:
        await self.client.close()


class _GateSlot:
    def __init__(self, gate: RateGate) -> None:
        self.gate = gate
        self.started = 0.0

    async def __aenter__(self) -> _GateSlot:
        self.started = await self.gate.acquire()
        return self

    async def __aexit__(self, exc_type: Any, *rest: Any) -> None:
        await self.gate.release(self.started, ok=exc_type is None)


class _Answer:
    def __init__(self, response: Any, style: PromptStyle) -> None:
        self.response = response
        self.style = style


class _Failure:
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail[:300]


_NEEDS_SINGLE = object()  # the server refused n > 1: ask again one sample per request


def _with_seed(sampling: SamplingParams, i: int) -> SamplingParams:
    out = replace(sampling, n=1)
    return out if sampling.seed is None else replace(out, seed=sampling.seed + i)


def _body_error(exc: Exception) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return err
    return {}


def _param(exc: Exception) -> str | None:
    value = _body_error(exc).get("param")
    return str(value) if value else None


def _code(exc: Exception) -> str | None:
    value = _body_error(exc).get("code")
    return str(value) if value else None


def _msg(exc: Exception) -> str:
    err = _body_error(exc)
    if err.get("message"):
        return str(err["message"])[:300]
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
