"""An OpenAI-compatible stub whose chat answers are scripted assistant messages with tool calls.

Built on ``tests.openai_stub.OpenAIStub`` (same server, request log and failure script): each
chat request is answered with the next message of ``turns`` — a dict with ``content`` and/or
``tool_calls`` as ``[(name, arguments_dict), ...]`` — the way the OpenAI API returns tool calls
(``finish_reason: tool_calls``, arguments as a JSON string, one id per call).
"""

from __future__ import annotations

import json
import time
from typing import Any

from openai_stub import OpenAIStub


class ToolCallingStub(OpenAIStub):
    def __init__(self, turns: list[dict[str, Any]], **kw: Any) -> None:
        super().__init__(**kw)
        self.turns = list(turns)
        self._turn = 0

    def _handle(self, path: str, body: dict) -> tuple[int, dict, bool]:
        if not path.endswith("/chat/completions") or self.script:
            return super()._handle(path, body)
        with self._lock:
            self.requests.append(body)
            self.paths.append(path)
            turn = self.turns[self._turn % len(self.turns)]
            self._turn += 1
            n = len(self.requests)
        message: dict[str, Any] = {"role": "assistant", "content": turn.get("content")}
        calls = turn.get("tool_calls") or []
        if calls:
            message["tool_calls"] = [
                {"id": f"call_{n}_{i}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}
                for i, (name, args) in enumerate(calls)]
        usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                 "total_tokens": self.prompt_tokens + self.completion_tokens}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        return 200, {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
                     "model": body.get("model", "m"), "choices": [choice], "usage": usage}, False
