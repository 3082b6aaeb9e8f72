"""Utilisation guard: a discovery run keeps a latency-bound model server busy.

Issue 23 asks that making evaluation safer never starves the model: against a server that
takes a fixed time per answer, with ``--concurrency 4``, the requests in flight *at the
server*, integrated over the sampling phase, stay ≥ 0.9 × 4 while real programs (distinct,
honest, fitted and scored in the sandbox) are evaluated. A loop that evaluated on the event
loop, or serialised its workers behind the evaluator, would leave the server idle while it
fits, and this test would fail: with 0.3 s of scoring per sample done on the event loop it read 0.891 (and
``test_the_meter_sees_an_idle_server`` checks the meter's arithmetic on a half-idle server).

The meter is server side: the stub's ``in_flight`` counter (raised when a request arrives,
lowered when its answer is ready) is wrapped so that every change adds ``count × dt`` to an
integral. Utilisation = integral / (concurrency × span), the span running from the first
request's arrival to the last answer, so the seed program scored before sampling starts is
not counted against the loop.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from openai_stub import OpenAIStub

from eqforge import api
from eqforge.config import Config

log = logging.getLogger(__name__)

CONCURRENCY = 4
# Each worker samples, then scores what it got, then samples again, so a worker leaves the
# server idle for the evaluation time E of its answer: over R rounds the guard reads
# R·L / (R·L + (R-1)·E). Measured on 2 loaded cores (load 4-5), E ≈ 0.7 s for four honest
# oscillator programs scored at once (0.42 at L = 0.5 s, 0.74 at L = 2 s); L = 8 s over three
# rounds gives ≈ 0.945 (0.955 measured at load 5.9) and fails once E passes ≈ 1.3 s, twice today's evaluation time.
LATENCY = 8.0  # seconds per answer: a reasoning model's time for a short program
SAMPLES = 12  # three rounds of four workers, one sample per request

SHAPES = [
    "    return params[0] * x + params[1] * v + {k} * params[2] * x ** 3\n",
    "    return params[0] * np.sin(x) + params[1] * v ** 3 + {k} * params[2] * x * v\n",
    "    return params[0] * np.exp(params[1] * x / {k}) + params[2] * v\n",
    "    damping = params[3] * v ** 3 + params[4] * x * v\n"
    "    return params[0] * np.sin(x) + params[1] * x * np.cos(x) + {k} * params[2] * x ** 3 + damping\n",
]


def honest_answer(path: str, body: dict, i: int) -> str:
    """A distinct honest oscillator program per (seed + choice), so no answer is a cache hit."""
    k = int(body.get("seed", 0)) + i
    return SHAPES[k % len(SHAPES)].format(k=k + 2)


class MeteredStub(OpenAIStub):
    """The stub with its ``in_flight`` counter integrated over time (the server's own view)."""

    _count = 0
    _since: float | None = None
    first: float | None = None
    last: float | None = None
    busy = 0.0  # ∫ requests in flight dt
    _meter_lock = threading.Lock()

    @property  # type: ignore[override]
    def in_flight(self) -> int:
        return self._count

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        with self._meter_lock:
            now = time.monotonic()
            if self._since is not None:
                self.busy += self._count * (now - self._since)
            if value > self._count and self.first is None:
                self.first = now
            if value < self._count:
                self.last = now
            self._count, self._since = value, now

    def utilisation(self, concurrency: int) -> float:
        assert self.first is not None and self.last is not None, "no request reached the server"
        return self.busy / (concurrency * (self.last - self.first))


def run_against(stub: MeteredStub, data: Path, out: Path, *, samples: int) -> dict[str, Any]:
    backend = {"spec": "openai-compatible", "base_url": stub.base_url, "model": "m", "backoff": 0.01}
    config = Config().with_overrides({
        "run": {"samples": samples},
        "sampler": {"concurrency": CONCURRENCY, "samples_per_prompt": 1},
        "llm": {"backends": [backend], "cache": False}})
    spec = api.RunSpec(problem="oscillator1", data=str(data / "oscillator1"))
    return api.discover(spec, config, out=out)


@pytest.mark.slow
def test_a_latency_bound_server_stays_busy(llmsr_data: Path, tmp_path: Path) -> None:
    with MeteredStub() as stub:
        stub.answer_choice = honest_answer
        stub.delay = LATENCY
        summary = run_against(stub, llmsr_data, tmp_path / "run", samples=SAMPLES)
        u = stub.utilisation(CONCURRENCY)
        span = (stub.last or 0.0) - (stub.first or 0.0)
    log.info("utilisation %.3f over %.1f s at latency %.1f s", u, span, LATENCY)
    assert summary["valid"] >= SAMPLES - 1, summary  # real programs were fitted and scored
    assert stub.peak_in_flight == CONCURRENCY
    idle = (1 - u) * CONCURRENCY * span / (CONCURRENCY * (SAMPLES // CONCURRENCY - 1))
    assert u >= 0.9, (f"utilisation {u:.3f} < 0.9 at concurrency {CONCURRENCY}, latency {LATENCY} s: "
                      f"each worker left the server idle ≈ {idle:.2f} s between answers")


def _post(url: str) -> None:
    req = urllib.request.Request(url + "/chat/completions", data=json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def test_the_meter_sees_an_idle_server() -> None:
    """Two requests at a time against a budget of four read 0.5, and back-to-back pairs stay there.

    This is what a loop that serialised half its workers behind the evaluator looks like; the
    guard above would fail on it.
    """
    with MeteredStub() as stub:
        stub.delay = 0.3
        for _ in range(2):
            threads = [threading.Thread(target=_post, args=(stub.base_url,)) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        u = stub.utilisation(CONCURRENCY)
    assert 0.4 < u < 0.55, u
