"""Deadlines for sympy: every symbolic step on a candidate's expression in a killable helper.

A candidate's program is untrusted, and so is everything sympy does with its expression:
conversion, ``simplify``, ``expand``, printing (``str``, LaTeX, MathML, ``srepr``),
``lambdify`` and law grouping can all take unbounded time or memory on a hostile tree. The
converter bounds sizes before sympy sees them (``functions.bounded``, ``MAX_*``), and
this module is the second wall: the steps run in a child process with a per-call deadline;
when it passes, the process is killed (a fresh one serves the next call) and the caller
records the step as undecided (``timeout``), never as a result.

Deadlines are a safety net, not a budget: the work budgets (``closed_form.MAX_SIMPLIFY_OPS``,
``recovery.MAX_EXPANDED_TERMS``) decide what is attempted, so answers do not depend on the
machine's load. ``call_retry`` retries a timed-out step once with a longer deadline where
the answer is needed.
"""

from __future__ import annotations

import ast
import atexit
import logging
import multiprocessing as mp
import os
import threading
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import sympy as sp

from eqforge.evaluator.analysis import closed_form as closed_form_module
from eqforge.evaluator.analysis.closed_form import PARTS, ClosedForm, closed_form, simplified
from eqforge.evaluator.analysis.laws import law_key
from eqforge.evaluator.analysis.recovery import Recovery, recovery
from eqforge.evaluator.analysis.verify import Verification, check

log = logging.getLogger(__name__)

OK, TIMEOUT, FAILED = "ok", "timeout", "failed"

# ---------------------------------------------------------------------------------------
# the operations (run in the child)


def _finished(cf: ClosedForm, names: list[str], parts: tuple[str, ...] = PARTS) -> ClosedForm:
    """Printed forms and the law key, computed here so the parent never prints."""
    cf.render(parts)
    if cf.ok and cf.law is None:
        cf.law = law_key(cf, names) or ""
    return cf


def _op_convert(code: str, names: list[str], params: list[float] | None) -> ClosedForm:
    return _finished(closed_form(code, names, params), names, ("text",))


def _op_simplify(cf: ClosedForm, params: list[float] | None,
                 names: list[str] | None = None) -> ClosedForm:
    out = simplified(cf, params)
    if out is not cf:
        out.law = None
    return _finished(out, names or [])


def _op_recover(cf: ClosedForm, truth: str, names: list[str], rtol: float,
                atol: float) -> Recovery:
    return recovery(cf, truth, names, rtol=rtol, atol=atol)


def _op_render(cf: ClosedForm) -> dict[str, str]:
    return cf.render().rendered


def _op_verify(exprs: list[sp.Expr], names: list[str], X: np.ndarray,
               reference: np.ndarray) -> Verification:
    return check(exprs, names, X, reference)


def return_line(program: str) -> str:
    """The last ``return`` expression (the live view's fallback without a closed form)."""
    lines = [ln.strip() for ln in program.splitlines() if ln.strip().startswith("return ")]
    if lines:
        return lines[-1][len("return "):]
    rest = program.strip().splitlines()
    return rest[-1] if rest else "–"


def equation_text_here(program: str, params: list[float] | None) -> str:
    """A program as a one-line equation, in this process (the helper runs it: op "text")."""
    try:
        fn = next((n for n in ast.parse(program).body if isinstance(n, ast.FunctionDef)), None)
        if fn is not None:
            names = [a.arg for a in fn.args.args[:-1]]
            cf = closed_form(program, names, params)
            if cf.ok:
                return cf.render(("text",)).text
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    return return_line(program)


def _op_text(program: str, params: list[float] | None) -> str:
    return equation_text_here(program, params)


def _op_call(fn: Callable[..., Any], *args: Any) -> Any:
    """Any module-level function (pickled by name), e.g. rendering a candidate's LaTeX."""
    return fn(*args)


_OPS: dict[str, Callable[..., Any]] = {
    "convert": _op_convert, "simplify": _op_simplify, "recover": _op_recover,
    "verify": _op_verify, "text": _op_text, "render": _op_render, "call": _op_call,
}


def _close_inherited(keep: int) -> None:
    """A forked child holds copies of every descriptor of the parent (the sandbox's pipes,
    sockets): close them, so that the parent's peers see EOF when the parent closes."""
    try:
        fds = [int(f) for f in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass


#: address space the helper may add to what it inherited: sympy on a hostile tree then fails
#: with MemoryError (an answer: "helper-failed") instead of pressing the machine
MEMORY_HEADROOM = 4 << 30


def _limit_memory() -> None:
    try:
        import resource

        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = size + MEMORY_HEADROOM
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        if soft == resource.RLIM_INFINITY or soft > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (OSError, ValueError, ImportError):
        pass


def _serve(conn: Any) -> None:
    import signal
    import sys

    # The parent decides when this process ends (Ctrl-C reaches it there, and it kills
    # us); a forked copy of the parent's handlers (asyncio's) must not run here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    closed_form_module.PRINT_HERE = True
    _close_inherited(conn.fileno())
    _limit_memory()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    logging.disable(logging.CRITICAL)  # the parent's handlers write to its streams
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
    and returns ``None``; so do calls that raise in the child. ``last_status`` says which
    (``"ok"``, ``"timeout"``, ``"failed"``). Use as a context manager.
    """

    def __init__(self) -> None:
        self._proc: Any = None
        self._conn: Any = None
        self.timeouts = 0
        self.last_status = OK
        self.last_error = ""

    def _start(self) -> None:
        # fork: sympy is already imported here, so the helper is ready in milliseconds. The
        # child only runs sympy on pickled data, closes the descriptors it inherited, and a
        # deadline guards against a lock that another thread held at fork time, so Python
        # 3.12's warning about forking a threaded process is silenced rather than paying
        # for spawn's imports.
        methods = mp.get_all_start_methods()
        ctx: Any = mp.get_context("fork" if "fork" in methods else "spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="eqforge-sympy")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            proc.start()
        child.close()
        self._proc, self._conn = proc, parent

    def call(self, op: str, *args: Any, timeout: float) -> Any:
        if timeout <= 0:
            self.last_status = TIMEOUT
            return None
        if self._proc is None or not self._proc.is_alive():
            self._start()
        try:
            self._conn.send((op, args))
            if not self._conn.poll(timeout):
                self.timeouts += 1
                self.last_status = TIMEOUT
                self._kill()
                return None
            ok, value = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            self._kill()  # the child died (memory, a signal): no answer
            self.last_status, self.last_error = FAILED, f"helper process ended ({type(exc).__name__})"
            return None
        if not ok:
            self.last_status, self.last_error = FAILED, str(value).splitlines()[0][:300]
            log.debug("symbolic %s failed: %s", op, value)
            return None
        self.last_status = OK
        return value

    def call_retry(self, op: str, *args: Any, timeout: float, retries: int = 1,
                   factor: float = 4.0) -> Any:
        """``call``, and on a timeout again with a ``factor`` times longer deadline."""
        value = self.call(op, *args, timeout=timeout)
        for _ in range(retries):
            if self.last_status != TIMEOUT:
                break
            timeout *= factor
            value = self.call(op, *args, timeout=timeout)
        return value

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


# ---------------------------------------------------------------------------------------
# one helper shared by the process, for small on-demand jobs (the live view's equation text,
# printing a closed form on first use)

_shared: SymbolicWorker | None = None
_shared_lock = threading.Lock()
#: deadline for printing a closed form that was not printed with its conversion
RENDER_TIMEOUT = 10.0
NOT_PRINTED = "(not printed: the helper process ran out of time)"


def shared_worker() -> SymbolicWorker:
    """The process's shared helper (closed at exit); calls on it are serialised."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = _SerialWorker()
            atexit.register(_shared.close)
        return _shared


class _SerialWorker(SymbolicWorker):
    """A ``SymbolicWorker`` that several threads may call (one call at a time)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def call(self, op: str, *args: Any, timeout: float) -> Any:
        with self._lock:
            return super().call(op, *args, timeout=timeout)


def render_in_helper(cf: ClosedForm) -> dict[str, str]:
    """Every printed form of ``cf``, printed in the shared helper under a deadline."""
    out = shared_worker().call("render", cf, timeout=RENDER_TIMEOUT)
    if isinstance(out, dict):
        return out
    return {part: NOT_PRINTED for part in PARTS}


closed_form_module.RENDERER = render_in_helper


def timeout_form(seconds: float, worker: SymbolicWorker) -> ClosedForm:
    """The closed form of a conversion that got no answer: undecided, with why."""
    if worker.last_status == TIMEOUT:
        return ClosedForm(ok=False, reason="timeout", detail=f"conversion took over {seconds:g} s")
    return ClosedForm(ok=False, reason="helper-failed", detail=worker.last_error)
