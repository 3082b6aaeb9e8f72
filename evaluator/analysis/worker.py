"""Deadlines for sympy: symbolic operations in a helper process that can be killed.

sympy itself can take unbounded time (simplify, expand, printing huge trees), so the costly
steps run in a child process with a per-call deadline; when it passes, the process is
killed and the caller keeps the unsimplified result.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from eqforge.evaluator.analysis.closed_form import ClosedForm, closed_form, simplified
from eqforge.evaluator.analysis.recovery import Recovery, recovery

# ---------------------------------------------------------------------------------------
# deadlines: a helper process that can be killed


def _op_convert(code: str, names: list[str], params: list[float] | None) -> ClosedForm:
    return closed_form(code, names, params)


def _op_simplify(cf: ClosedForm, params: list[float] | None) -> ClosedForm:
    return simplified(cf, params)


def _op_recover(cf: ClosedForm, truth: str, names: list[str], rtol: float,
                atol: float) -> Recovery:
    return recovery(cf, truth, names, rtol=rtol, atol=atol)


_OPS: dict[str, Callable[..., Any]] = {
    "convert": _op_convert, "simplify": _op_simplify, "recover": _op_recover,
}


def _serve(conn: Any) -> None:
    import signal
    import sys

    # The parent decides when this process ends (Ctrl-C reaches it there, and it kills
    # us); a forked copy of the parent's handlers (asyncio's) must not run here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        op, args = msg
        try:
            conn.send((True, _OPS[op](*args)))
        except Exception as exc:  # noqa: BLE001 - report any failure to the parent
            conn.send((False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))


class SymbolicWorker:
    """Runs symbolic operations in a child process with a deadline per call.

    A call that overruns has its process killed (a fresh one starts for the next call)
    and returns ``None``; so do calls that raise in the child. Use as a context manager.
    """

    def __init__(self) -> None:
        self._proc: Any = None
        self._conn: Any = None
        self.timeouts = 0

    def _start(self) -> None:
        # fork: sympy is already imported here, so the helper is ready in milliseconds. The
        # child only runs sympy on pickled data, and a deadline guards against a lock that
        # another thread held at fork time, so Python 3.12's warning about forking a
        # threaded process is silenced rather than paying for spawn's imports.
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="eqforge-sympy")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            proc.start()
        child.close()
        self._proc, self._conn = proc, parent

    def call(self, op: str, *args: Any, timeout: float) -> Any:
        if timeout <= 0:
            return None
        if self._proc is None or not self._proc.is_alive():
            self._start()
        try:
            self._conn.send((op, args))
            if not self._conn.poll(timeout):
                self.timeouts += 1
                self._kill()
                return None
            ok, value = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._kill()
            return None
        return value if ok else None

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._proc.join(1)
        self._kill()

    def __enter__(self) -> SymbolicWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
