"""Running eqforge's coroutines from synchronous code, in scripts and in notebooks alike.

``asyncio.run`` refuses to start where an event loop already runs — which is every Jupyter
cell — so ``run_sync`` runs the coroutine on a fresh loop in a worker thread there, and
with ``asyncio.run`` everywhere else. Ctrl-C (a notebook's "interrupt kernel") reaches the
calling thread either way: the worker's task is cancelled, which lets the discovery loop
write its summary and close its sandbox before the ``KeyboardInterrupt`` propagates, so
the run stays resumable.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CANCEL_GRACE_SECONDS = 30.0  # how long an interrupted run may take to write its records


def loop_is_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, whether or not a loop is running."""
    if not loop_is_running():
        return asyncio.run(coro)
    return _run_in_thread(coro)


def _run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    handle: queue.Queue[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = queue.Queue(1)
    outcome: dict[str, Any] = {}

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        handle.put((asyncio.get_running_loop(), task))
        return await coro

    finished = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread as is
            outcome["error"] = exc
        finally:
            finished.set()

    # The caller's context (logging setup, contextvars) carries over into the thread.
    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(target,), name="eqforge-run", daemon=True)
    thread.start()
    # Wait on an Event, not Thread.join: a join interrupted by KeyboardInterrupt can leave
    # the thread looking finished (is_alive() False) while it still runs.
    try:
        while not finished.wait(0.2):
            pass
    except KeyboardInterrupt:
        try:
            loop, task = handle.get(timeout=5)
            loop.call_soon_threadsafe(task.cancel)
        except queue.Empty:
            pass
        finished.wait(CANCEL_GRACE_SECONDS)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
