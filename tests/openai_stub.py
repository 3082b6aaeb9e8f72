"""A tiny OpenAI-compatible HTTP server for tests (stdlib only, 127.0.0.1, a free port).

It answers ``POST /v1/chat/completions`` and ``POST /v1/completions`` with canned
responses, ``GET /v1/models`` with one model, records every request body, and can be told
to fail: ``stub.script`` is a list of ``(status, message)`` consumed one per request before
the canned answers (status 200 in the script means "answer normally"), ``stub.restart_after``
restarts the server (connections refused meanwhile) after that many requests.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_RESPONSES = [
    "```python\ndef equation_v1(x, v, params):\n    return params[0] * x + params[1] * v + params[2] * x**3\n```",
    "    return params[0] * x + params[1] * v\n",
    "```python\ndef equation_v1(x, v, params):\n    return params[0] * np.sin(x) + params[1] * v**3\n```",
    "I cannot help with that.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OpenAIStub:
    def __init__(self, responses: list[str] | None = None, *, honour_n: bool = True,
                 prompt_tokens: int = 100, completion_tokens: int = 20) -> None:
        self.responses = list(responses or DEFAULT_RESPONSES)
        self.honour_n = honour_n
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.script: list[tuple[int, str]] = []
        self.restart_after: int | None = None
        self.restart_pause = 0.5
        self.answer: Callable[[str, dict], str] | None = None
        self._i = 0
        self._lock = threading.Lock()
        self.port = free_port()
        self.server: ThreadingHTTPServer | None = None
        self.restarts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def calls(self) -> int:
        return len(self.requests)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> OpenAIStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, obj, restart = stub._handle(self.path, body)
                self._send(status, obj)
                if restart:
                    threading.Thread(target=stub._restart, daemon=True).start()

        self._handler = Handler
        self._serve()
        return self

    def _serve(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def _restart(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        time.sleep(self.restart_pause)
        self._serve()
        self.restarts += 1

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- answers -----------------------------------------------------------------------
    def _next_text(self, path: str, body: dict) -> str:
        if self.answer is not None:
            return self.answer(path, body)
        text = self.responses[self._i % len(self.responses)]
        self._i += 1
        return text

    def _handle(self, path: str, body: dict) -> tuple[int, dict, bool]:
        with self._lock:
            self.requests.append(body)
            self.paths.append(path)
            restart = self.restart_after is not None and len(self.requests) == self.restart_after
            if self.script:
                status, message = self.script.pop(0)
                if status != 200:
                    return status, {"error": {"message": message, "type": "error", "code": status}}, restart
            n = int(body.get("n") or 1) if self.honour_n else 1
            texts = [self._next_text(path, body) for _ in range(n)]
        usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens * n,
                 "total_tokens": self.prompt_tokens + self.completion_tokens * n}
        if path.endswith("/chat/completions"):
            choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                       for i, t in enumerate(texts)]
            obj = "chat.completion"
        else:
            choices = [{"index": i, "text": t, "finish_reason": "stop", "logprobs": None}
                       for i, t in enumerate(texts)]
            obj = "text_completion"
        return 200, {"id": f"cmpl-{len(self.requests)}", "object": obj, "created": int(time.time()),
                     "model": body.get("model", "m"), "choices": choices, "usage": usage}, restart
