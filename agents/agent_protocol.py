"""How the agent talks to a model: the OpenAI tools API, or a text protocol small models follow.

Hosted and OpenAI-compatible chat models get the five tools as JSON-schema functions
(``tools``), answer with ``tool_calls`` and receive ``role: tool`` replies — the API they
were trained on. Completion-style and in-process models get the *text protocol*: the model
ends a message with ``Action: NAME [ARG]`` followed, for code-taking tools, by one fenced
Python block; the reply comes back as a user message starting ``Observation:``. A message
with no action but a ``def equation`` block counts as ``submit`` (small models often just
answer). Both paths return one ``ModelTurn`` so the episode logic does not care which.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from eqforge.agents.llm.base import LLMBackend, SamplingParams, WrappedBackend
from eqforge.problems.entry import ENTRY
from eqforge.prompts.prompt import Prompt

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
_ACTION = re.compile(r"^[ \t>*_`]*Action[*_`]*:[*_`]*[ \t]*`?([A-Za-z_]+)`?[ \t]*(\S*)", re.M)
_FENCE = re.compile(r"```[ \t]*(?:python|py)?[^\n]*\n(.*?)(?:```|\Z)", re.S)


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = ""


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


def parse_action(text: str) -> list[ToolCall]:
    """The text protocol: the last ``Action:`` line and the code block after it."""
    matches = list(_ACTION.finditer(text))
    if not matches:
        block = _FENCE.search(text)
        if block and re.search(rf"^\s*def {ENTRY}", block.group(1), re.M):
            return [ToolCall("submit", {"code": block.group(1)})]
        return []
    m = matches[-1]
    name, arg = m.group(1).lower(), m.group(2)
    rest = text[m.end():]
    if name in ("analyze", "evaluate", "submit"):
        block = _FENCE.search(rest) or _FENCE.search(text)
        code = block.group(1) if block else rest.strip()
        return [ToolCall(name, {"code": code})]
    if name == "best_programs":
        k = int(arg) if arg.isdigit() else 3
        return [ToolCall(name, {"k": k})]
    return [ToolCall(name, {})]


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
    return ModelTurn(text=c.text, calls=parse_action(c.text) if not c.error else [],
                     message={"role": "assistant", "content": c.text}, model=c.model,
                     prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                     cost=c.cost or 0.0, seconds=time.monotonic() - t0,
                     finish_reason=c.finish_reason, error=c.error,
                     extra={"prompt_hash": prompt.hash})


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
    choice = resp.choices[0]
    msg = choice.message
    calls = []
    for tc in msg.tool_calls or []:
        try:
            args = json.loads(tc.function.arguments or "{}")
        except json.JSONDecodeError:
            args = {"_invalid": tc.function.arguments[:200]}
        calls.append(ToolCall(tc.function.name, args if isinstance(args, dict) else {}, tc.id))
    text = msg.content or ""
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if msg.tool_calls:
        message["tool_calls"] = [{"id": tc.id, "type": "function", "function": {
            "name": tc.function.name, "arguments": tc.function.arguments}} for tc in msg.tool_calls]
    elif text:
        calls = parse_action(text)  # a model that writes the action instead of calling it
    usage = resp.usage
    p_tok = getattr(usage, "prompt_tokens", None)
    c_tok = getattr(usage, "completion_tokens", None)
    cost = 0.0 if priced is None or priced.free else priced.table.cost(priced.model, p_tok, c_tok)
    return ModelTurn(text=text, calls=calls, message=message, model=inner.name,
                     prompt_tokens=p_tok, completion_tokens=c_tok, cost=cost,
                     seconds=time.monotonic() - t0, finish_reason=choice.finish_reason)
