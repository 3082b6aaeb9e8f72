"""A tiny OpenAI-compatible HTTP server for tests (stdlib only, 127.0.0.1, a free port).

It answers ``POST /v1/chat/completions`` and ``POST /v1/completions`` with canned
responses, ``GET /v1/models`` with one model, records every request body, and can be told
to fail: ``stub.script`` is a list of ``(status, message[, code])`` consumed one per request before
the canned answers (status 200 in the script means "answer normally"), ``stub.restart_after``
restarts the server (connections refused meanwhile) after that many requests.

It can also answer as today's APIs do (each off by default unless it concerns the model name):

* models named like OpenAI's reasoning models (``o1``, ``o3``, ``o4-mini``, ``gpt-5*``, not
  ``gpt-5-chat*``) reject ``max_tokens``, a ``temperature`` / ``top_p`` other than 1 and
  ``stop`` with OpenAI's 400s (message, ``param``, ``code``), spend ``reasoning_tokens`` per
  choice out of ``max_completion_tokens`` (an answer that does not fit comes back empty with
  ``finish_reason: length``) and report them in ``completion_tokens_details``;
* ``max_n = 1``: a server that refuses ``n`` > 1 with a 400 whose message names ``n``;
* ``chat_template = False``: vLLM's 400 for a chat request to a model without a template;
* ``rate_limit_for = s``: every request in the first ``s`` seconds (from the first request)
  gets 429 with ``Retry-After: retry_after``; ``max_in_flight = k``: requests beyond ``k``
  at once get that 429 (what AIMD must learn); ``delay``: seconds each answer takes;
* ``answer_choice(path, body, i)``: the answer as a function of the request and choice index
  (e.g. of ``body["seed"] + i``); ``reasoning``: a ``reasoning_content`` trace per choice.

Requests with ``"stream": true`` get server-sent events as vLLM sends them: the choices'
pieces (about one word each) interleaved, ``piece_delay`` seconds apart, each choice's
finish chunk, a usage chunk when ``stream_options.include_usage`` asks, then ``[DONE]``.
``tail`` text is appended to every streamed answer (what a model writes after its body);
``cancelled`` counts streams the client closed before the end, ``pieces_sent`` the pieces
written.
"""

from __future__ import annotations

import json
import re
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
        self.answer_choice: Callable[[str, dict, int], str] | None = None
        self.reasoning: Callable[[str, dict, int], str] | None = None
        self.reasoning_tokens = 50
        self.max_n: int | None = None
        self.chat_template = True
        self.rate_limit_for: float | None = None
        self.max_in_flight: int | None = None
        self.retry_after = "1"
        self.retry_after_ms: str | None = None
        self.delay = 0.0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.statuses: list[int] = []
        self.first_request: float | None = None
        self.piece_delay = 0.0
        self.tail = ""
        self.cancelled = 0
        self.pieces_sent = 0
        self.models: list[dict[str, Any]] | None = None  # GET /v1/models data (default: one model "m")

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

            def _send(self, status: int, obj: dict, headers: dict | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _send_stream(self, obj: dict, body: dict) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    for event in stub._events(obj, body):
                        self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                        self.wfile.flush()
                        if event.get("choices"):
                            with stub._lock:
                                stub.pieces_sent += 1
                        if stub.piece_delay:
                            time.sleep(stub.piece_delay)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    with stub._lock:
                        stub.cancelled += 1

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {"object": "list", "data": stub.models or [{"id": "m", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with stub._lock:
                    stub.in_flight += 1
                    stub.peak_in_flight = max(stub.peak_in_flight, stub.in_flight)
                try:
                    status, obj, restart = stub._handle(self.path, body)
                    headers = obj.pop("_headers", None)
                    if status == 200 and stub.delay:
                        time.sleep(stub.delay)
                finally:
                    with stub._lock:
                        stub.in_flight -= 1
                        stub.statuses.append(status)
                if status == 200 and body.get("stream"):
                    self._send_stream(obj, body)
                else:
                    self._send(status, obj, headers)
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
    def _next_text(self, path: str, body: dict, i: int = 0) -> str:
        if self.answer_choice is not None:
            return self.answer_choice(path, body, i)
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
                status, message, *code = self.script.pop(0)  # (status, message[, error code])
                if status != 200:
                    return status, {"error": {"message": message, "type": "error",
                                              "code": code[0] if code else status}}, restart
            now = time.monotonic()
            self.first_request = self.first_request or now
            limited = (self.rate_limit_for is not None and now - self.first_request < self.rate_limit_for) or (
                self.max_in_flight is not None and self.in_flight > self.max_in_flight)
            if limited:
                headers = {"Retry-After": self.retry_after}
                if self.retry_after_ms is not None:
                    headers["retry-after-ms"] = self.retry_after_ms
                return 429, {"error": {"message": "Rate limit reached for requests per min (RPM): Limit 60. "
                                                  "Please try again in 1s.", "type": "requests",
                                       "param": None, "code": "rate_limit_exceeded"}, "_headers": headers}, restart
            chat = path.endswith("/chat/completions")
            refusal = self._refuse(chat, body)
            if refusal is not None:
                return 400, {"error": refusal}, restart
            n = int(body.get("n") or 1) if self.honour_n else 1
            texts = [self._next_text(path, body, i) for i in range(n)]
            traces = [self.reasoning(path, body, i) if self.reasoning else None for i in range(n)]
        reasoning = self._is_reasoning(body.get("model", ""))
        r_tok = self.reasoning_tokens if reasoning else 0
        finish = ["stop"] * n
        if reasoning and r_tok + self.completion_tokens > int(body.get("max_completion_tokens") or 10**9):
            texts, finish = [""] * n, ["length"] * n  # the budget went to reasoning
        usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": (self.completion_tokens + r_tok) * n,
                 "total_tokens": self.prompt_tokens + (self.completion_tokens + r_tok) * n}
        if reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": r_tok * n}
        if chat:
            choices = []
            for i, t in enumerate(texts):
                message = {"role": "assistant", "content": t}
                if traces[i] is not None:
                    message["reasoning_content"] = traces[i]
                choices.append({"index": i, "message": message, "finish_reason": finish[i]})
            obj = "chat.completion"
        else:
            choices = [{"index": i, "text": t, "finish_reason": finish[i], "logprobs": None}
                       for i, t in enumerate(texts)]
            obj = "text_completion"
        return 200, {"id": f"cmpl-{len(self.requests)}", "object": obj, "created": int(time.time()),
                     "model": body.get("model", "m"), "choices": choices, "usage": usage}, restart

    def _events(self, obj: dict, body: dict) -> list[dict]:
        """The stream of ``obj`` (a whole answer) as chunk objects, choices interleaved."""
        chat = obj["object"] == "chat.completion"
        kind = "chat.completion.chunk" if chat else "text_completion"
        queues = []
        for ch in obj["choices"]:
            text = (ch["message"]["content"] if chat else ch["text"]) or ""
            if text and self.tail:
                text += self.tail
            pieces: list[dict] = []
            if chat and ch["message"].get("reasoning_content"):
                pieces.append({"reasoning_content": ch["message"]["reasoning_content"]})
            pieces += [{"content": p} for p in re.findall(r"\s*\S+|\s+", text)]
            queues.append((ch["index"], pieces, ch["finish_reason"]))
        events: list[dict] = []
        base = {"id": obj["id"], "object": kind, "created": obj["created"], "model": obj["model"]}
        step = 0
        while any(step <= len(p) for _, p, _ in queues):
            for idx, pieces, finish in queues:
                if step < len(pieces):
                    piece = pieces[step]
                    if chat:
                        choice = {"index": idx, "delta": {"role": "assistant", **piece}, "finish_reason": None}
                    else:
                        choice = {"index": idx, "text": piece.get("content", ""), "finish_reason": None}
                elif step == len(pieces):
                    choice = ({"index": idx, "delta": {}, "finish_reason": finish} if chat
                              else {"index": idx, "text": "", "finish_reason": finish})
                else:
                    continue
                events.append({**base, "choices": [choice]})
            step += 1
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "choices": [], "usage": obj["usage"]})
        return events

    # -- how today's APIs refuse requests ----------------------------------------------------
    @staticmethod
    def _is_reasoning(model: str) -> bool:
        name = model.rsplit("/", 1)[-1]
        return bool(re.match(r"^(o\d+|gpt-5)([.-]|$)", name)) and not re.match(r"^gpt-5(\.\d+)?-chat", name)

    def _refuse(self, chat: bool, body: dict) -> dict | None:
        """The 400 error object today's APIs answer with, or None to answer normally."""
        if chat and not self.chat_template:  # vLLM, model without a chat template
            return {"message": "As of transformers v4.44, default chat template is no longer allowed, so you must "
                               "provide a chat template if the tokenizer does not define one.",
                    "type": "BadRequestError", "param": None, "code": 400}
        if self.max_n is not None and int(body.get("n") or 1) > self.max_n:
            return {"message": f"'n' must be at most {self.max_n} for this model (got {body.get('n')})",
                    "type": "invalid_request_error", "param": None, "code": None}
        if not self._is_reasoning(str(body.get("model", ""))):
            return None
        if "max_tokens" in body:
            return {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                               "'max_completion_tokens' instead.", "type": "invalid_request_error",
                    "param": "max_tokens", "code": "unsupported_parameter"}
        for name in ("temperature", "top_p"):
            if name in body and body[name] != 1:
                return {"message": f"Unsupported value: '{name}' does not support {body[name]} with this model. "
                                   "Only the default (1) value is supported.", "type": "invalid_request_error",
                        "param": name, "code": "unsupported_value"}
        if "stop" in body:
            return {"message": "Unsupported parameter: 'stop' is not supported with this model.",
                    "type": "invalid_request_error", "param": "stop", "code": "unsupported_parameter"}
        return None
