"""How the agent talks to a model: the OpenAI tools API, or a text protocol small models follow.

Hosted and OpenAI-compatible chat models get the five tools as JSON-schema functions
(``tools``), answer with ``tool_calls`` and receive ``role: tool`` replies — the API they
were trained on. Completion-style and in-process models get the *text protocol*: the model
ends a message with ``Action: NAME [ARG]`` followed, for code-taking tools, by one fenced
Python block; the reply comes back as a user message starting ``Observation:``. A message
with no action but a ``def equation`` block counts as ``submit`` (small models often just
answer). Both paths return one ``ModelTurn`` so the episode logic does not care which.

Everything the model sends is untrusted: an action's argument, a tool call's name and its
JSON arguments (any size, numbers of any size, ``1e999``, ``NaN``, deep nesting, wrong
types). ``validate_call`` turns each call into a ``ToolCall`` with typed, bounded arguments
(the pydantic models below), or one whose ``error`` is the message the model gets back
instead of a result; nothing a model writes raises out of a turn. Parsing is linear-time
(``prompts/scanning.py``) and the text is capped (``agents/llm/bounded.py``) first.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eqforge.agents.llm.base import LLMBackend, SamplingParams, WrappedBackend
from eqforge.agents.llm.bounded import cap_text, count_response, response_limit, truncation_extra
from eqforge.problems.entry import ENTRY
from eqforge.prompts.prompt import Prompt
from eqforge.prompts.scanning import Fence, fences, line_starts_with

TOOL_NAMES = ("describe_data", "analyze", "evaluate", "best_programs", "submit")
_CODE = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": name, "description": desc, "parameters": params}}
    for name, desc, params in [
        ("describe_data", "Summary statistics per column and the correlation matrix of the "
         "training data.", {"type": "object", "properties": {}}),
        ("analyze", "Run your own numpy analysis code on the training data (inputs and target "
         "bound by their names, np imported); returns what it prints.", _CODE),
        ("evaluate", "Fit the params of a candidate `def equation(...)` now; returns its NMSE "
         "and where its residuals are large. Counts against the sample budget.", _CODE),
        ("best_programs", "The best programs found so far with their NMSE.",
         {"type": "object", "properties": {"k": {"type": "integer", "minimum": 1, "maximum": 5}}}),
        ("submit", "Submit your final `def equation(...)` for this episode; ends the episode.", _CODE),
    ]
]
COMPLETION_STOPS = ("\nObservation:",)
# Anchored at a line start, no class can cross a newline: linear over the text.
_ACTION = re.compile(r"^[ \t>*_`]*Action[*_`]*:[*_`]*[ \t]*`?([A-Za-z_]+)`?[ \t]*(\S*)", re.M)
MAX_CODE_CHARS = 32_768  # one code argument (analyze, evaluate, submit)
MAX_ARGUMENTS_CHARS = 65_536  # one tool call's raw JSON arguments
MAX_CALLS_PER_TURN = 8
MAX_NUMBER_CHARS = 32  # digits of one JSON number
MAX_NAME_CHARS = 64


@dataclass
class ToolCall:
    """One call the model made. ``error`` set: the call is invalid and ``error`` is the
    message the model gets back instead of running the tool (``arguments`` is then empty)."""

    name: str
    arguments: dict[str, Any]
    id: str = ""
    error: str | None = None


class _Args(BaseModel):
    """A tool's arguments: unknown keys ignored (models add some), known ones typed and bounded."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _NoArgs(_Args):
    pass


class _CodeArgs(_Args):
    code: str = Field(min_length=1, max_length=MAX_CODE_CHARS)


class _BestArgs(_Args):
    k: int = 3

    @field_validator("k")
    @classmethod
    def _clamp(cls, k: int) -> int:  # the schema says 1..5; a model asking for 10 gets 5
        return max(1, min(5, k))


ARGUMENTS: dict[str, type[_Args]] = {"describe_data": _NoArgs, "analyze": _CodeArgs, "evaluate": _CodeArgs,
                                     "best_programs": _BestArgs, "submit": _CodeArgs}


class _BadJSON(ValueError):
    pass


def _json_number(text: str, kind: type) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadJSON(f"a number with {len(text)} characters")
    value = kind(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise _BadJSON(f"the number {text} is not finite")
    return value


def _json_constant(name: str) -> Any:
    raise _BadJSON(f"{name} is not a number the tools take")


def _loads(raw: str) -> Any:
    """``json.loads`` with numbers bounded (no 5000-digit ints, no 1e999/NaN/Infinity)."""
    return json.loads(raw, parse_int=lambda t: _json_number(t, int),
                      parse_float=lambda t: _json_number(t, float), parse_constant=_json_constant)


def _short(text: object, limit: int = MAX_NAME_CHARS) -> str:
    s = text if isinstance(text, str) else repr(text)
    return s if len(s) <= limit else s[:limit] + "…"


def validate_call(name: object, arguments: object, call_id: object = "") -> ToolCall:
    """A model's tool call as a ``ToolCall`` with validated arguments, or with ``error`` set.

    ``arguments``: a JSON string (the tools API) or an already-decoded object (the text
    protocol). Never raises for anything a model can write.
    """
    cid = call_id if isinstance(call_id, str) else ""
    tool = name.strip() if isinstance(name, str) else ""
    if tool not in ARGUMENTS:
        return ToolCall(_short(tool or name), {}, cid, error=f"unknown tool {_short(tool or name)!r}; the tools "
                        f"are: {', '.join(TOOL_NAMES)}")
    raw: object = arguments
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raw = {}
    elif isinstance(raw, str):
        if len(raw) > MAX_ARGUMENTS_CHARS:
            return ToolCall(tool, {}, cid, error=f"{tool}: the arguments are {len(raw)} characters; "
                            f"at most {MAX_ARGUMENTS_CHARS} are read")
        try:
            raw = _loads(raw)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and _BadJSON are ValueErrors
            reason = str(exc) if isinstance(exc, _BadJSON) else "not valid JSON"
            return ToolCall(tool, {}, cid, error=f"{tool}: cannot read the arguments ({_short(reason, 200)}); "
                            "send one JSON object")
    if not isinstance(raw, dict):
        return ToolCall(tool, {}, cid, error=f"{tool}: the arguments must be a JSON object, "
                        f"not {type(raw).__name__}")
    try:
        args = ARGUMENTS[tool].model_validate(raw)
    except (ValidationError, RecursionError) as exc:
        errors = exc.errors() if isinstance(exc, ValidationError) else [{"loc": (), "msg": "nested too deeply"}]
        where = ".".join(str(p) for p in errors[0]["loc"]) or "arguments"
        return ToolCall(tool, {}, cid, error=f"{tool}: {_short(where)}: {_short(errors[0]['msg'], 200)}")
    return ToolCall(tool, args.model_dump(), cid)


@dataclass
class ModelTurn:
    """One model answer: its text, the tool calls in it, and what it cost."""

    text: str
    calls: list[ToolCall]
    message: dict[str, Any]  # the assistant message, as it goes back into the conversation
    model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float = 0.0
    seconds: float = 0.0
    finish_reason: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _first_fence(text: str, start: int = 0) -> Fence | None:
    return next(fences(text, start), None)


def parse_action(text: str) -> list[ToolCall]:
    """The text protocol: the last ``Action:`` line and the code block after it."""
    found = deque(_ACTION.finditer(text), maxlen=1)  # the last one is wanted
    last = found[0] if found else None
    if last is None:
        block = _first_fence(text)
        if block and line_starts_with(block.body, f"def {ENTRY}"):
            return [validate_call("submit", {"code": block.body})]
        return []
    name, arg = last.group(1).lower(), last.group(2)
    if name in ("analyze", "evaluate", "submit"):
        block = _first_fence(text, last.end()) or _first_fence(text)
        code = block.body if block else text[last.end():].strip()
        return [validate_call(name, {"code": code})]
    if name == "best_programs":
        if not arg:
            return [validate_call(name, {})]
        if arg.isascii() and arg.isdigit() and len(arg) <= 3:
            return [validate_call(name, {"k": int(arg)})]
        return [ToolCall(name, {}, error=f"best_programs takes a number from 1 to 5, not {_short(arg, 20)!r}")]
    return [validate_call(name, {})]


def render_transcript(messages: list[dict[str, Any]]) -> str:
    """The conversation as raw text a completion model continues."""
    parts = []
    for m in messages:
        content = str(m.get("content") or "")
        parts.append(content if m["role"] != "assistant" else content.rstrip())
    return "\n\n".join(parts).rstrip() + "\n\n"


async def text_turn(backend: LLMBackend, messages: list[dict[str, Any]],
                    sampling: SamplingParams) -> ModelTurn:
    """One turn over any backend's ``generate`` (chat messages or the rendered transcript)."""
    prompt = Prompt(completion=render_transcript(messages),
                    messages=[{"role": m["role"], "content": str(m.get("content") or "")}
                              for m in messages], version=0, template="agent")
    t0 = time.monotonic()
    [c] = await backend.generate(prompt, sampling)
    text, original = cap_text(c.text or "", response_limit(backend))  # the wrappers' cap, or the default
    return ModelTurn(text=text, calls=parse_action(text) if not c.error else [],
                     message={"role": "assistant", "content": text}, model=c.model,
                     prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                     cost=c.cost or 0.0, seconds=time.monotonic() - t0,
                     finish_reason=c.finish_reason, error=c.error,
                     extra={"prompt_hash": prompt.hash, **truncation_extra(original),
                            **{k: v for k, v in c.extra.items() if k.startswith("response_")}})


def supports_tools(backend: LLMBackend) -> bool:
    inner, _ = _unwrap(backend)
    return callable(getattr(inner, "chat_raw", None)) and backend.prompt_style == "chat"


def _unwrap(backend: LLMBackend) -> tuple[Any, Any]:
    """The innermost backend (an ``OpenAIBackend`` for the tools API) and its pricing layer."""
    priced = None
    while isinstance(backend, WrappedBackend):
        priced = priced or (backend if hasattr(backend, "table") else None)
        backend = backend.inner
    return backend, priced


async def tools_turn(backend: LLMBackend, messages: list[dict[str, Any]],
                     sampling: SamplingParams) -> ModelTurn:
    """One turn over the OpenAI tools API (``OpenAIBackend.chat_raw`` with ``tools``)."""
    inner, priced = _unwrap(backend)
    t0 = time.monotonic()
    # the backend's own machinery: capability table, rate gate, bounded retries
    resp = await inner.chat_raw(messages, sampling, tools=TOOLS)
    count_response(backend)
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:  # a server may send anything
        return ModelTurn(text="", calls=[], message={"role": "assistant", "content": ""}, model=inner.name,
                         seconds=time.monotonic() - t0, error="llm:empty")
    choice = choices[0]
    msg = getattr(choice, "message", None)
    listed = getattr(msg, "tool_calls", None)
    calls: list[ToolCall] = []
    echoed: list[dict[str, Any]] = []
    for i, tc in enumerate(listed if isinstance(listed, list) else []):
        fn = getattr(tc, "function", None)
        name, raw = getattr(fn, "name", None), getattr(fn, "arguments", None)
        call_id = tc.id if isinstance(getattr(tc, "id", None), str) else f"call_{i}"
        if i >= MAX_CALLS_PER_TURN:  # every call id still needs its reply message
            call = ToolCall(_short(name), {}, call_id, error=f"more than {MAX_CALLS_PER_TURN} tool calls "
                            "in one message; this one was not run")
        else:
            call = validate_call(name, raw, call_id)
        calls.append(call)
        # the conversation keeps what was asked, bounded (it is sent again every turn)
        kept = raw if isinstance(raw, str) and len(raw) <= MAX_ARGUMENTS_CHARS and call.error is None else "{}"
        echoed.append({"id": call_id, "type": "function", "function": {"name": call.name, "arguments": kept}})
    content = getattr(msg, "content", None)
    text, original = cap_text(content if isinstance(content, str) else "", response_limit(backend))
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if echoed:
        message["tool_calls"] = echoed
    elif text:
        calls = parse_action(text)  # a model that writes the action instead of calling it
    usage = getattr(resp, "usage", None)
    p_tok = _tokens(getattr(usage, "prompt_tokens", None))
    c_tok = _tokens(getattr(usage, "completion_tokens", None))
    finish = choice.finish_reason if isinstance(getattr(choice, "finish_reason", None), str) else None
    cost = 0.0 if priced is None or priced.free else priced.table.cost(priced.model, p_tok, c_tok)
    return ModelTurn(text=text, calls=calls, message=message, model=inner.name,
                     prompt_tokens=p_tok, completion_tokens=c_tok, cost=cost,
                     seconds=time.monotonic() - t0, finish_reason=finish,
                     extra=truncation_extra(original))


def _tokens(value: object) -> int | None:
    """A token count as the server reported it, if it is a plausible one."""
    return value if type(value) is int and 0 <= value < 10**12 else None
