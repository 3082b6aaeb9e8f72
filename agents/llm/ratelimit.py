"""Rate limits as weather: wait as the API asks, send less while it pushes back, then more.

A hosted API that answers 429 with ``Retry-After: 10`` for a minute is not broken; a run
should slow down, not die. One ``RateGate`` per backend holds every request of that backend:

* a **pause**: after a 429, no request is sent before the time the server named
  (``retry-after-ms`` or ``Retry-After``, seconds or an HTTP date; without either,
  exponential backoff with jitter) — all requests wait, not only the one that was refused;
* **AIMD** on requests in flight: a 429 halves the limit (once per round trip, so a burst of
  429s from one window counts once), every success adds ``1/limit`` (about +1 per round trip),
  up to the configured concurrency;
* **patience**: the backend gives up only when the API has rate-limited it without a single
  success for longer than this (default minutes), then stops the run cleanly.

The ``openai`` client's own retries also honour ``Retry-After``, but they retry invisibly
(nothing can show "rate-limited, waiting", lower the concurrency, or bound the wait in time
rather than in attempts), so the backend turns them off and uses this instead.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from typing import Any

#: the longest single wait between attempts when the server names no time
MAX_BACKOFF = 60.0


def retry_after(headers: Any) -> float | None:
    """Seconds to wait according to a response's headers (None: the server did not say)."""
    if headers is None:
        return None
    get = getattr(headers, "get", None)
    if get is None:
        return None
    ms = get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    raw = get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RateGate:
    def __init__(self, limit: int, *, patience: float = 300.0, backoff: float = 1.0) -> None:
        self.max_limit = max(1, int(limit))
        self.limit = float(self.max_limit)
        self.patience = patience
        self.backoff = backoff
        self.in_flight = 0
        self.paused_until = 0.0
        self.limited_since: float | None = None  # start of the current run of 429s
        self.rate_limited = 0  # 429s seen
        self._streak = 0  # 429s since the last success (for backoff without Retry-After)
        self._last_cut = float("-inf")
        self._cond: asyncio.Condition | None = None

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:  # created in the running loop (the backend may be built outside)
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> float:
        """Wait for a free slot and the end of any pause; returns when the request was let go."""
        cond = self._condition()
        async with cond:
            while True:
                wait = self.paused_until - time.monotonic()
                if wait > 0:
                    try:
                        await asyncio.wait_for(cond.wait(), timeout=wait)
                    except TimeoutError:
                        pass
                    continue
                if self.in_flight < self.allowed:
                    self.in_flight += 1
                    return time.monotonic()
                await cond.wait()

    async def release(self, started: float, *, ok: bool = False, limited: bool = False,
                      wait: float | None = None) -> float:
        """Give the slot back; after a 429 (``limited``) returns the pause it set, in seconds."""
        cond = self._condition()
        pause = 0.0
        async with cond:
            self.in_flight -= 1
            now = time.monotonic()
            if ok:
                self.limited_since = None
                self._streak = 0
                self.limit = min(float(self.max_limit), self.limit + 1.0 / self.limit)
            elif limited:
                self.rate_limited += 1
                self._streak += 1
                if self.limited_since is None:
                    self.limited_since = now
                if started >= self._last_cut:  # one cut per round trip
                    self.limit = max(1.0, self.limit / 2)
                    self._last_cut = now
                if wait is None:
                    wait = min(MAX_BACKOFF, self.backoff * 2 ** min(self._streak - 1, 16)) * (0.5 + random.random())
                pause = wait
                self.paused_until = max(self.paused_until, now + wait)
            cond.notify_all()
        return pause

    def limited_for(self) -> float:
        """Seconds the API has been rate-limiting without a success in between (0: not now)."""
        return 0.0 if self.limited_since is None else time.monotonic() - self.limited_since

    def status(self) -> str | None:
        wait = self.paused_until - time.monotonic()
        if wait > 0:
            return f"rate-limited, waiting {wait:.0f}s ({self.allowed}/{self.max_limit} requests in flight allowed)"
        if self.allowed < self.max_limit:
            return f"rate limits: {self.allowed}/{self.max_limit} requests in flight allowed"
        return None
