"""Hostile and cheating programs through the real ``Evaluator``: the shared corpus and our own.

Asserts what issue #3 asks of ``eqforge evaluate`` over a hostile corpus: the main process
survives, every program gets a machine-readable reason (or, if it runs, scores no better
than the honest best), no marker file is created or deleted, no connection reaches a marker
port, no process is left behind and the wall time stays bounded by the timeouts.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_sandbox_pool import sandbox_leftovers

from eqforge.config import EvaluatorConfig
from eqforge.evaluator.evaluate import EvalResult, Evaluator
from eqforge.problems import load_problem
from eqforge.sandbox.policy import check

TIMEOUT = 3.0
SIG = "def equation(x: np.ndarray, v: np.ndarray, params: np.ndarray) -> np.ndarray:\n"
TRUE_LAW = SIG + (
    "    return params[0] * np.sin(x) + params[1] * x * np.cos(x) + params[2] * x ** 3"
    " + params[3] * v ** 3 + params[4] * x * v\n"
)
OWN_PORT = 47_893
MARKER = str(Path(tempfile.gettempdir()) / f"eqforge-own-marker-{os.getpid()}")
NOT_BETTER = "not-better"  # may run, but must not beat the honest best

# Our own hostile cases, different from the shared corpus: (id, code, expected reasons).
OWN: list[tuple[str, str, set[str] | str]] = [
    ("own-uninit-stateful",  # reads freed fitter buffers (residuals) after many calls
     "def equation(x, v, params, _seen=[]):\n    _seen.append(1)\n"
     "    if len(_seen) < 30:\n        return 0.0 * x + params[0] * 0.0\n"
     "    return -np.empty(len(x))\n", NOT_BETTER),
    ("own-uninit-where", SIG + "    return np.add(x, 0.0, where=False) + params[0] * 0.0\n", NOT_BETTER),
    ("own-stash-in-numpy",  # keeps what it saw during the fit in a numpy module dict
     SIG + "    d = np.sctypeDict\n    key = ('stash', len(x))\n    if key in d:\n        return d[key]\n"
     "    d[key] = params[0] * x\n    return params[0] * x\n", NOT_BETTER),
    ("own-stride-tricks", "import numpy.lib.stride_tricks as st\n" + SIG
     + "    return st.as_strided(x, shape=(len(x),), strides=(0,)) * params[0]\n", {"policy:import"}),
    ("own-from-npyio", "from numpy.lib.npyio import loadtxt\n" + SIG + "    return params[0] * x\n",
     {"policy:import"}),
    ("own-ma-inspect",  # passes the static policy; the runtime attribute guard stops it
     SIG + "    s = np.ma.extras.ma.inspect.stack()\n    return params[0] * x\n", {"policy:runtime"}),
    ("own-ma-operator", SIG + "    g = np.ma.extras.ma.operator.attrgetter('f_locals')\n"
     "    return params[0] * x\n", {"policy:runtime"}),
    ("own-swallowed-refusal", SIG + "    try:\n        w = np.ma.extras.ma.warnings\n"
     "    except Exception:\n        pass\n" + TRUE_LAW.split("\n", 1)[1], {"policy:runtime"}),
    ("own-format-dunder", SIG + "    s = '{0.__class__}'.format(x)\n    return params[0] * x\n",
     {"policy:attribute", "policy:dunder"}),
    ("own-loadtxt-test-split", SIG + "    t = np.loadtxt('/work/shared/data/llmsr/oscillator1/test_ood.csv',"
     " delimiter=',', skiprows=1)\n    return t[:len(x), -1]\n", {"policy:attribute"}),
    ("own-np-save-marker", SIG + f"    np.save({MARKER!r}, x)\n    return params[0] * x\n", {"policy:attribute"}),
    ("own-bitgen-cffi", SIG + "    f = np.random.default_rng().bit_generator.cffi\n    return params[0] * x\n",
     {"policy:attribute"}),
    ("own-ctypes-pointer", SIG + "    p = x.ctypes.data\n    return params[0] * x\n", {"policy:attribute"}),
    ("own-socket-port", SIG + "    import socket\n"
     f"    socket.create_connection(('127.0.0.1', {OWN_PORT}), timeout=1)\n    return params[0] * x\n",
     {"policy:import"}),
    ("own-params-write", SIG + "    params[0] = 1.0\n    return params[0] * x\n", {"exception:ValueError"}),
    ("own-ufunc-out", SIG + "    np.multiply(x, 0.0, out=x)\n    return params[0] * x\n", {"exception:ValueError"}),
    ("own-nan", SIG + "    return params[0] * x * np.nan\n", {"nonfinite"}),
    ("own-short", SIG + "    return params[0] * x[:-1]\n", {"shape"}),
    ("own-2d", SIG + "    return np.stack([x, v]) * params[0]\n", {"shape"}),
    ("own-strings", SIG + "    return np.array(['a'] * len(x))\n", {"dtype"}),
    ("own-hoard", SIG + "    hoard = []\n    while True:\n        hoard.append(np.empty(10 ** 8))\n",
     {"memory"}),
    ("own-busy-numpy", SIG + "    while True:\n        x = np.sort(x + params[0])\n", {"timeout"}),
    ("own-recursion", SIG + "    f = lambda n: f(n + 1) + 1\n    return params[0] * x + f(0)\n",
     {"exception:RecursionError"}),
    ("own-raise", SIG + "    raise ArithmeticError('nope')\n", {"exception:ArithmeticError"}),
]


class PortWatch:
    """Listen on the marker ports and count the connections that arrive."""

    def __init__(self, ports: set[int]) -> None:
        self.connections: list[tuple[int, Any]] = []
        self.unchecked: list[int] = []
        self.socks: list[socket.socket] = []
        for port in ports:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                self.unchecked.append(port)  # someone else listens there: cannot watch it
                s.close()
                continue
            s.listen(8)
            s.settimeout(0.1)
            self.socks.append(s)
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            for s in self.socks:
                try:
                    conn, addr = s.accept()
                    self.connections.append((s.getsockname()[1], addr))
                    conn.close()
                except (TimeoutError, OSError):
                    pass

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        for s in self.socks:
            s.close()


def _markers(programs: list[dict]) -> tuple[list[Path], list[Path], set[int]]:
    create, victims, ports = [Path(MARKER), Path(MARKER + ".npy")], [], {OWN_PORT}
    for p in programs:
        m = p.get("marker")
        if not m:
            continue
        if m.startswith("127.0.0.1:"):
            ports.add(int(m.rsplit(":", 1)[1]))
        elif "victim" in m:
            victims.append(Path(m))
        else:
            create.append(Path(m))
    return create, victims, ports


def test_hostile_corpus_and_own_cases(hostile_programs: list[dict], llmsr_data: Path) -> None:
    problem = load_problem("oscillator1", data=llmsr_data / "oscillator1")
    own = [{"id": i, "code": c, "expect": e, "problem": "oscillator1"} for i, c, e in OWN]
    programs = [{**p, "expect": None} for p in hostile_programs] + own
    assert all(p["problem"] == "oscillator1" for p in programs)
    must_not_exist, victims, ports = _markers(programs)
    for m in must_not_exist:
        m.unlink(missing_ok=True)
    for v in victims:
        v.write_text("victim\n")
    watch = PortWatch(ports)
    start = time.monotonic()
    ev = Evaluator(problem, EvaluatorConfig(timeout=TIMEOUT, workers=2))
    try:
        honest = ev.submit(TRUE_LAW).result()
        assert honest.ok and honest.score is not None and honest.score > -1e-20, honest
        futures = [(p, ev.submit(p["code"])) for p in programs]
        results: dict[str, EvalResult] = {p["id"]: f.result(timeout=120) for p, f in futures}
        zygotes = ev.pool.worker_pids()
        restarts = ev.pool.restarts
    finally:
        ev.close()
        watch.close()
    elapsed = time.monotonic() - start

    table = {pid: r.error or f"ok {r.score:.3g}" for pid, r in results.items()}
    print("\n".join(f"{k:24s} {v}" for k, v in table.items()))
    for p in programs:
        r = results[p["id"]]
        if r.ok:
            # A program that runs must not beat the honest best (the exact law, ~1e-32).
            assert r.score is not None and r.score <= honest.score, (p["id"], r.score, honest.score)
            assert p["expect"] in (None, NOT_BETTER), (p["id"], table[p["id"]])
        else:
            assert r.error, p["id"]
            if isinstance(p["expect"], set):
                assert r.error in p["expect"], (p["id"], r.error, r.detail)
    # Every shared-corpus program is refused with a reason (none of them is a valid equation).
    assert all(not results[p["id"]].ok for p in hostile_programs), table
    for m in must_not_exist:
        assert not m.exists(), f"marker {m} was created"
    for v in victims:
        assert v.exists(), f"victim {v} was deleted"
        v.unlink()
    assert watch.connections == [], watch.connections
    assert sandbox_leftovers(zygotes) == [], "processes left behind"
    assert restarts == 0, "a hostile program killed a zygote"
    # Bounded by the timeouts: each program costs at most about one timeout, two workers.
    assert elapsed < 60, elapsed


def test_runtime_guard_cases_pass_the_static_policy() -> None:
    """The guard is a second line: these get past the AST policy and must be stopped later."""
    for pid, code, expect in OWN:
        if expect == {"policy:runtime"}:
            assert check(code) is None, pid


@pytest.mark.slow
def test_honest_corpus_evaluates_without_sandbox_failures(corpus_programs: list[dict], llmsr_data: Path) -> None:
    """Valid programs run under the full hardening: none trips the hook or the guard."""
    valid = [p for p in corpus_programs if p["kind"] == "valid" and p["problem"] in ("oscillator1", "bactgrow")]
    for name in sorted({p["problem"] for p in valid}):
        items = [p for p in valid if p["problem"] == name]
        with Evaluator(load_problem(name, data=llmsr_data / name), EvaluatorConfig(workers=2)) as ev:
            results = ev.evaluate_many([p["code"] for p in items])
        bad = {p["id"]: (r.error, r.detail) for p, r in zip(items, results, strict=True) if not r.ok}
        assert bad == {}, bad
