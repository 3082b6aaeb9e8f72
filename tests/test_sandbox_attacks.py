"""Our own attacks, one group per class of the red team's findings (issue #12).

1. a guard-free attribute read (``functools``) hands out the real builtins;
2. the fit-time process writes its own result;
3. in-process defences switched off from inside;
4. a covert channel between the fit-time and scoring processes;
5. the trusted side crashing on hostile input;
6. all of it again as an ordinary user (``test_as_an_ordinary_user`` re-runs this file and
   the hostile corpus as ``nobody`` when the suite runs as root).

The runners in ``attack_runners`` stand for a candidate that has already beaten the
in-process guard (they hold real ``os``/``socket``/``ctypes``): what they are refused is what
the kernel layers refuse on their own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from test_sandbox_pool import HONEST, LOOP, _candidates, _job, _setup, _status, _wait_for

from eqforge.config import EvaluatorConfig
from eqforge.evaluator import roles
from eqforge.evaluator.evaluate import Evaluator
from eqforge.problems.spec import Problem, ProblemSpec, Split, Variable
from eqforge.sandbox import messages
from eqforge.sandbox import pool as pool_module
from eqforge.sandbox.policy import DEFAULT_IMPORTS, check
from eqforge.sandbox.pool import SandboxPool

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
AS_NOBODY = os.environ.get("EQFORGE_AS_NOBODY") == "1"


@pytest.fixture
def attack_pool(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    setup, trusted = _setup()
    runners = (*setup.runners, "attack_runners:escape", "attack_runners:switch_off")
    with SandboxPool(dataclasses.replace(setup, runners=runners), trusted, workers=1) as p:
        yield p


def _escape(p: SandboxPool, marker: Path, secret: str) -> messages.Outcome:
    return p.run("def equation(x, v, params):\n    return x\n", "equation", "attack_runners:escape",
                 args={"marker": str(marker), "secret": secret, "victim": p.worker_pids()[0]}, timeout=20)


# -- 1 and 6: beyond the guard, the kernel refuses ------------------------------------------

def test_functools_and_name_lookups_are_off_the_allowlist() -> None:
    assert "functools" not in DEFAULT_IMPORTS
    for code in ("import functools\n", "from functools import reduce\n", "import operator\n", "import copyreg\n"):
        v = check(code + "def equation(x, params):\n    return params[0] * x\n")
        assert v is not None and v.reason == "policy:import", code


def test_a_candidate_past_the_guard_meets_the_kernel_walls(attack_pool: SandboxPool, tmp_path: Path) -> None:
    marker = tmp_path / "escaped"
    out = _escape(attack_pool, marker, str(REPO / "pyproject.toml"))
    # every attempt was refused, and the hook's records (kept outside the process) fail the job
    assert not out.ok and out.reason == "policy:runtime", out
    for event in ("open", "socket", "os.kill", "os.fork", "os.mkdir"):
        assert event in out.detail, out.detail
    assert not marker.exists()


def test_without_the_hook_the_kernel_still_refuses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # attack class 3 taken to its end: no audit hook at all in the candidate process
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    setup, trusted = _setup()
    setup = dataclasses.replace(setup, audit_hook=False, runners=(*setup.runners, "attack_runners:escape"))
    marker = tmp_path / "escaped"
    with SandboxPool(setup, trusted, workers=1) as p:
        out = _escape(p, marker, str(REPO / "pyproject.toml"))
    assert out.ok, out
    results = json.loads(out.payload["text"])
    allowed = {k: v for k, v in results.items() if not v.startswith("refused")}
    assert allowed == {}, allowed
    assert not marker.exists()
    # refused by the kernel, not by Python: EPERM from the seccomp allowlist (which has no
    # open at all; tests/test_walls_allowlist.py shows the empty root alone)
    assert results["open a socket"] == "refused: errno 1" and results["create SysV shared memory"] == "refused: errno 1"
    assert results["read the test targets"] == "refused: errno 1"


# -- 2: the fit-time process writes nothing of its own result -------------------------------

def test_the_trusted_side_decides_params_and_their_count(attack_pool: SandboxPool) -> None:
    # a program that reads params[0] and params[1] only: whatever its process answers, the
    # accepted vector has exactly those two fitted and the rest at 1.0
    code = "def equation(x, v, params):\n    return params[0] * x + params[1] * v + 0 * params[2:10].sum()\n"
    out = attack_pool.submit(_job(code, n_params=10, indices=[0, 1])).result(timeout=30)
    assert out.ok and out.payload["n_params"] == 2 and out.payload["params"][2:] == [1.0] * 8


# -- 3: records a candidate cannot erase -----------------------------------------------------

def test_a_switched_off_hook_and_erased_record_still_fail_the_job(attack_pool: SandboxPool) -> None:
    job = _job(HONEST, runner_name="attack_runners:switch_off")
    out = attack_pool.submit(job).result(timeout=30)
    assert not out.ok and out.reason == "policy:runtime" and "open" in out.detail, out
    # the second forbidden call, made after every attempt to switch the hook off, was refused
    assert "os.listdir" in out.detail, out.detail
    assert attack_pool.submit(_job(HONEST)).result(timeout=30).ok


# -- 4: no channel between the fit-time and the scoring process ------------------------------

def _ns(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


@pytest.mark.skipif(os.geteuid() != 0 and not AS_NOBODY, reason="reads other processes' namespaces")
def test_each_candidate_process_has_its_own_ipc_namespace_and_uid() -> None:
    setup, trusted = _setup()
    with SandboxPool(setup, trusted, workers=1) as p:
        factory = p.factory_pids()[0]
        seen = []
        for _ in range(2):
            fut = p.submit(_job(LOOP, timeout=20.0))
            assert _wait_for(lambda: _candidates(factory), 20)
            child = _candidates(factory)[0]
            seen.append((_ns(child, "ipc"), _status(child).get("Uid", "").split()[0], _ns(child, "pid")))
            os.kill(child, 9)
            fut.result(timeout=30)
        # (namespace ids are recycled once one is gone: consecutive ones may show the same id)
        for ipc, _, _ in seen:
            assert ipc not in (_ns(os.getpid(), "ipc"), _ns(factory, "ipc"))
        assert seen[0][2] != _ns(os.getpid(), "pid")  # a PID namespace of their own
        if os.geteuid() == 0:
            assert seen[0][1] != seen[1][1]  # distinct uids (a user namespace maps only one)


def test_shared_memory_left_by_a_fit_cannot_be_read_when_scoring(attack_pool: SandboxPool) -> None:
    # the red team's channel, tried honestly: create a segment while being fitted, read it
    # while being scored. Both calls are refused by the kernel; a scored program that relied
    # on it gets nothing.
    code = ("def equation(x, v, params):\n    return params[0] * x + params[1] * v\n")
    before = Path("/proc/sysvipc/shm").read_text()
    assert attack_pool.submit(_job(code)).result(timeout=30).ok
    assert Path("/proc/sysvipc/shm").read_text() == before


# -- 5: the trusted side survives any text and any reply ------------------------------------

PATHOLOGICAL = {
    "minus": "def equation(x, params):\n    return " + "-" * 5000 + "x\n",
    "sum": "def equation(x, params):\n    return " + "+".join(["x"] * 6000) + "\n",
    "ifexp": "def equation(x, params):\n    return " + "x if x else " * 1400 + "x\n",
    "power": "def equation(x, params):\n    return " + "**".join(["x"] * 3000) + "\n",
    "parens": "def equation(x, params):\n    return " + "(" * 300 + "x" + ")" * 300 + "\n",
    "huge": "def equation(x, params):\n    return x\n" + "# " + "a" * 10_000_000 + "\n",
    "nul": "def equation(x, params):\n    return x\x00\n",
    "surrogate": "def equation(x, params):\n    return x  # \udcff\n",
}


def test_pathological_sources_get_reasons_and_the_batch_goes_on() -> None:
    x = np.linspace(0.5, 2.0, 200)
    spec = ProblemSpec(name="t", description="t", inputs=[Variable(name="x")], output=Variable(name="y"))
    problem = Problem(spec, {"train": Split(x[:, None], 2 * x), "test_id": Split(x[:, None], 2 * x)})
    with Evaluator(problem, EvaluatorConfig(workers=1, timeout=5)) as ev:
        futs = {k: ev.submit(c) for k, c in PATHOLOGICAL.items()}
        honest = ev.submit("def equation(x, params):\n    return params[0] * x\n")
        results = {k: f.result(timeout=60) for k, f in futs.items()}
        assert honest.result(timeout=60).ok
    for name, r in results.items():
        assert not r.ok and r.error and (r.error.startswith("policy:") or r.error == "syntax"), (name, r.error)


@pytest.mark.parametrize("frame", [
    b"", b"EQF", b"EQF\x01\xff\xff\xff\xff", b"XYZ\x01\x00\x00\x00\x02{}", b"EQF\x02\x00\x00\x00\x02{}",
    b"EQF\x01\x00\x00\x00\x02[]", b"EQF\x01\x00\x00\x00\x05\xff\xfe\xfd\xfc\xfb",
])
def test_decoder_refuses_garbage_with_one_exception_type(frame: bytes) -> None:
    with pytest.raises(messages.BadMessage):
        messages.decode(frame, messages.Reply)


def _frame(header: dict, body: bytes = b"") -> bytes:
    head = json.dumps(header).encode()
    return b"EQF\x01" + len(head).to_bytes(4, "big") + head + body


@pytest.mark.parametrize("header", [
    {"type": "Reply", "fields": {"ok": True}, "arrays": [["v", [2 ** 62, 2 ** 62]]]},  # overflows int64
    {"type": "Reply", "fields": {"ok": True}, "arrays": [["v", [-1]]]},
    {"type": "Reply", "fields": {"ok": True}, "arrays": [["v", [1.5]]]},
    {"type": "Reply", "fields": {"ok": True}, "arrays": [["v", [True]]]},
    {"type": "Reply", "fields": {"ok": True}, "arrays": [["v", [3]]]},  # bytes missing
    {"type": "Reply", "fields": {"ok": "yes"}, "arrays": []},
    {"type": "Call", "fields": {"op": "x"}, "arrays": []},
    {"type": "Reply", "fields": {"ok": True, "text": 5}, "arrays": []},
    {"type": "Reply", "fields": {"ok": True}, "arrays": [["v", [1] * 50]]},
])
def test_decoder_checks_shapes_counts_and_types(header: dict) -> None:
    with pytest.raises(messages.BadMessage):
        messages.decode(_frame(header), messages.Reply)


def test_decoder_checks_what_was_asked() -> None:
    ok = messages.encode(messages.Reply(True, {"values": np.zeros((1, 3))}))
    assert messages.decode(ok, messages.Reply, {"values": (1, 3)}).arrays["values"].shape == (1, 3)
    with pytest.raises(messages.BadMessage):
        messages.decode(ok, messages.Reply, {"values": (1, 4)})
    with pytest.raises(messages.BadMessage):
        messages.decode(_frame({"type": "Reply", "fields": {"ok": True}, "arrays": []}) + b"x" * 8, messages.Reply)
    text = "a" * (messages.MAX_HEADER_BYTES + 1)
    huge = _frame({"type": "Reply", "fields": {"ok": True, "text": text}, "arrays": []})
    with pytest.raises(messages.BadMessage):
        messages.decode(huge, messages.Reply)


# -- 6: no kernel wall, no run; and everything above as an ordinary user ---------------------

def test_refuses_without_kernel_walls_unless_the_risk_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "kernel_walls", lambda layers: False)
    monkeypatch.delenv("EQFORGE_ACCEPT_RISK", raising=False)
    with pytest.raises(RuntimeError, match="EQFORGE_ACCEPT_RISK"):
        SandboxPool(*_setup(), workers=1)
    monkeypatch.setenv("EQFORGE_ACCEPT_RISK", "1")
    with SandboxPool(*_setup(), workers=1) as p:
        assert p.submit(_job(HONEST)).result(timeout=30).ok


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="already an ordinary user: the other tests are the check")
def test_as_an_ordinary_user(shared_dir: Path) -> None:
    """This file and the hostile corpus again, as ``nobody``: user namespaces instead of root."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    env["EQFORGE_SHARED"] = str(shared_dir)
    cmd = [sys.executable, str(TESTS / "asuser.py"), sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-m", "not slow", str(TESTS / "test_sandbox_attacks.py"),
           str(TESTS / "test_hostile_corpus.py") + "::test_hostile_corpus_and_own_cases"]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True, timeout=900)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail.split("passed")[-1][:40], tail
    assert time.monotonic() - start < 900


# -- the agent's analysis code: it sees the training targets, so nothing may outlive it -----

def test_analysis_code_cannot_leave_the_targets_for_a_later_candidate(attack_pool: SandboxPool) -> None:
    x = np.linspace(0, 1, 50)
    y = np.sin(7 * x) + 0.123456789
    stash = ("def analysis(x, y):\n    d = np.sctypeDict\n    d['stash'] = y\n"
             "    np.ma.masked_print_option.set_display(str(y[0]))\n    return 'stashed'\n")
    out = attack_pool.run(stash, "analysis", roles.ANALYZE, arrays={"x": x, "y": y}, timeout=10)
    assert out.ok and out.payload["text"] == "stashed"
    look = ("def analysis(x):\n    d = np.sctypeDict\n"
            "    return str(d.get('stash')) + ' ' + str(np.ma.masked_print_option)\n")
    seen = attack_pool.run(look, "analysis", roles.ANALYZE, arrays={"x": x}, timeout=10)
    assert seen.ok and seen.payload["text"].startswith("None") and "0.123" not in seen.payload["text"]
    # and a candidate being fitted right after finds nothing either
    probe = ("def equation(x, v, params):\n    s = np.sctypeDict.get('stash')\n"
             "    return params[0] * x + params[1] * v + (0.0 if s is None else 1e9)\n")
    fitted = attack_pool.submit(_job(probe)).result(timeout=30)
    assert fitted.ok and np.allclose(fitted.payload["params"][:2], [1.5, -0.5])
