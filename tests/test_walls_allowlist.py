"""Issue 20: the sandbox's walls are allowlists. Our own attacks, one group per class.

1. the kernel filter: every system call outside ``seccomp.ALLOWED`` fails (numbers unknown
   to today's kernels too), foreign ABIs are killed, and a candidate sharing the factory's
   uid (no root) cannot act on it: limits, priorities, signals, ptrace, /proc, timestamps;
2. descriptors: no open file description is shared between candidate processes, so no
   flag set while fitting is seen while scoring;
3. the in-process layers, each with the others switched off (``test_walls_inprocess``);
4. a batch of honest programs with hostile ones in between gets exactly the results of a
   clean run of the honest ones alone, as root and (``test_as_an_ordinary_user``) as
   ``nobody``.

The runners in ``attack_runners`` stand for a candidate that has beaten the in-process
layers (they hold real ``os`` and ``ctypes``); pools here switch the audit hook off so that
what they try reaches the kernel.
"""

from __future__ import annotations

import faulthandler
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_sandbox_pool import HONEST, _job
from test_walls_inprocess import NESTED_SPEC, SIG, UNREVIEWED, _pool

from eqforge.config import EvaluatorConfig
from eqforge.evaluator.evaluate import Evaluator
from eqforge.evaluator.roles import ANALYZE
from eqforge.problems import load_problem
from eqforge.sandbox import seccomp
from eqforge.sandbox.messages import Job
from eqforge.sandbox.pool import SandboxPool

TESTS = Path(__file__).resolve().parent
AS_NOBODY = os.environ.get("EQFORGE_AS_NOBODY") == "1"

# Calls no candidate may make, by x86-64 number (from the kernel's syscall_64.tbl): if any
# of them ever lands in the allowlist, this fails before a pool is even started.
NEVER = {
    2: "open", 257: "openat", 437: "openat2", 85: "creat", 3: "close", 32: "dup", 33: "dup2", 292: "dup3",
    72: "fcntl", 16: "ioctl", 41: "socket", 53: "socketpair", 22: "pipe", 293: "pipe2",
    62: "kill", 200: "tkill", 234: "tgkill", 129: "rt_sigqueueinfo", 424: "pidfd_send_signal",
    434: "pidfd_open", 438: "pidfd_getfd", 101: "ptrace", 310: "process_vm_readv", 311: "process_vm_writev",
    302: "prlimit64", 160: "setrlimit", 141: "setpriority", 251: "ioprio_set", 203: "sched_setaffinity",
    144: "sched_setscheduler", 132: "utime", 235: "utimes", 261: "futimesat", 280: "utimensat",
    90: "chmod", 91: "fchmod", 268: "fchmodat", 92: "chown", 93: "fchown", 260: "fchownat",
    56: "clone", 435: "clone3", 57: "fork", 58: "vfork", 59: "execve", 322: "execveat",
    272: "unshare", 308: "setns", 157: "prctl", 317: "seccomp", 10: "mprotect", 29: "shmget",
    319: "memfd_create", 425: "io_uring_setup", 321: "bpf", 298: "perf_event_open", 312: "kcmp",
}


# -- 1. the kernel filter ---------------------------------------------------------------------

def test_the_allowlist_is_small_and_names_no_call_that_reaches_out() -> None:
    assert 0 < len(seccomp.ALLOWED) <= 20, sorted(seccomp.ALLOWED.values())
    assert not set(seccomp.ALLOWED) & set(NEVER), {NEVER[n] for n in set(seccomp.ALLOWED) & set(NEVER)}


def test_the_filter_program_allows_exactly_the_list() -> None:
    insns = seccomp.program()
    for nr in [*range(0, 1100), 4095, 0x3FFF_FFFF, 0xFFFF_FFFF]:
        want = seccomp.ALLOW if nr in seccomp.ALLOWED else seccomp.EPERM
        if nr >= 0x4000_0000:
            want = seccomp.KILL  # the x32 bit, and everything above it
        assert seccomp.evaluate(insns, nr) == want, nr
    for nr in (0, 1, 39, 62):  # the x32 ABI (bit 30 set), even for allowed numbers
        assert seccomp.evaluate(insns, 0x4000_0000 | nr) == seccomp.KILL
    for arch in (0x40000003, 0xC00000B7, 0):  # i386 (int 0x80), aarch64, garbage
        assert seccomp.evaluate(insns, 1, arch) == seccomp.KILL


@pytest.fixture
def kernel_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxPool]:
    """A pool whose candidates run the attack runners with no audit hook: the kernel alone."""
    yield from _pool(monkeypatch, audit_hook=False)


def _run(p: SandboxPool, runner: str, timeout: float = 30, **args: Any) -> Any:
    return p.run("def equation(x, v, params):\n    return x\n", "equation", f"attack_runners:{runner}",
                 args=args, timeout=timeout)


SWEEP = [n for n in [*range(0, 470), 500, 1000, 4095, 0x3FFF_FFFF] if n not in seccomp.ALLOWED]


def _filtered_sweep(numbers: list[int]) -> tuple[dict[int, str], dict[int, int]]:
    """Each number from a child holding only the filter: (calls not refused with EPERM,
    calls that killed the child, with the signal). A child that dies is replaced and the
    sweep goes on after the number it died on."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    through: dict[int, str] = {}
    killed: dict[int, int] = {}
    todo = list(numbers)
    while todo:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(r)
            faulthandler.disable()
            seccomp.install()
            for nr in todo:
                os.write(w, f"?{nr}\n".encode())
                ctypes.set_errno(0)
                ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(0) for _ in range(6)))
                os.write(w, f"={nr} {ret} {ctypes.get_errno()}\n".encode())
            os._exit(0)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 1 << 16):
            chunks.append(chunk)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        last = None
        for line in b"".join(chunks).decode().splitlines():
            if line[0] == "?":
                last = int(line[1:])
            else:
                nr, ret, err = (int(t) for t in line[1:].split())
                last = None
                if not (ret == -1 and err == 1):
                    through[nr] = f"{ret} {err}"
        if last is None:
            break
        killed[last] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1
        todo = todo[todo.index(last) + 1:]
    return through, killed


def _reaches_seccomp(nr: int) -> bool:
    """Whether the kernel shows call ``nr`` to seccomp at all: under a filter that kills
    every call but write and exit_group, a call seccomp sees kills the child with SIGSYS."""
    import ctypes

    kill_all = [(0x20, 0, 0, 0), (0x15, 2, 0, 1), (0x15, 1, 0, 231), (0x06, 0, 0, seccomp.KILL),
                (0x06, 0, 0, seccomp.ALLOW)]
    libc = ctypes.CDLL(None, use_errno=True)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        faulthandler.disable()
        seccomp.Filter(kill_all).install()
        libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(0) for _ in range(6)))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == 31


def _platform_calls() -> set[int]:
    """Numbers of SWEEP this host answers before seccomp looks (a Firecracker guest here
    handles 335 and 336 itself, filter or not): no filter can refuse them."""
    through, killed = _filtered_sweep(SWEEP)
    return {nr for nr in (*through, *killed) if not _reaches_seccomp(nr)}


def test_the_filter_alone_refuses_every_call_outside_the_list() -> None:
    platform = _platform_calls()
    assert len(platform) <= 4, sorted(platform)
    through, killed = _filtered_sweep([n for n in SWEEP if n not in platform])
    assert through == {} and killed == {}, (through, killed)


def test_every_call_outside_the_list_is_refused_in_a_candidate(kernel_pool: SandboxPool) -> None:
    platform = _platform_calls()
    out = _run(kernel_pool, "sweep", numbers=json.dumps([n for n in SWEEP if n not in platform]))
    assert out.ok, (out.reason, out.detail)
    assert json.loads(out.payload["text"]) == {}, "not refused with EPERM"
    # and the candidate could still answer: the calls it needs were all there
    assert kernel_pool.submit(_job(HONEST)).result(timeout=30).ok


@pytest.mark.parametrize("nr", [0x4000_0000 | 39, 0x4000_0000 | 1])
def test_the_x32_abi_kills_the_candidate(kernel_pool: SandboxPool, nr: int) -> None:
    out = _run(kernel_pool, "raw_call", nr=nr)
    assert not out.ok and out.reason == "policy:seccomp", (out.reason, out.detail, out.payload)


def test_a_candidate_cannot_act_on_the_factory_or_the_host(kernel_pool: SandboxPool) -> None:
    null_before = os.stat("/dev/null")
    factory = kernel_pool.factory_pids()[0]
    limits_before = Path(f"/proc/{factory}/limits").read_text()
    out = _run(kernel_pool, "act_on_factory")
    assert out.ok, (out.reason, out.detail)
    results = json.loads(out.payload["text"])
    assert {k: v for k, v in results.items() if v != "refused 1"} == {}
    assert Path(f"/proc/{factory}/limits").read_text() == limits_before
    null_after = os.stat("/dev/null")
    assert (null_after.st_mtime_ns, null_after.st_mode) == (null_before.st_mtime_ns, null_before.st_mode)
    assert kernel_pool.submit(_job(HONEST)).result(timeout=30).ok


# -- 2. no shared open file descriptions ---------------------------------------------------

def _fit_then_score(p: SandboxPool) -> Any:
    job = Job(id=time.monotonic_ns(), program="def equation(x, v, params):\n    return x\n", entry="equation",
              runner="attack_runners:fd_flags", driver="attack_runners:fit_then_score", timeout=30)
    return p.submit(job).result(timeout=60)


def test_flags_set_while_fitting_are_not_seen_while_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the filter off (it refuses fcntl) and no hook: descriptors alone must hold.
    for p in _pool(monkeypatch, audit_hook=False, seccomp=False):
        out = _fit_then_score(p)
    assert out.ok, (out.reason, out.detail)
    got = json.loads(out.payload["text"])
    assert 0 in got["set"] and 1 in got["set"], got  # the fitting process did set them
    assert got["seen"] == [], got  # ...and the scoring process sees none


def test_with_the_filter_no_flag_can_be_set_at_all(kernel_pool: SandboxPool) -> None:
    out = _fit_then_score(kernel_pool)
    assert out.ok and json.loads(out.payload["text"]) == {"set": [], "seen": []}, out


def test_a_fork_bomb_makes_no_process(kernel_pool: SandboxPool) -> None:
    out = _run(kernel_pool, "fork_bomb")
    assert out.ok and out.payload["text"] == "0", out


# -- 4. hostile neighbours cost honest programs nothing -----------------------------------------

HOSTILE_PROGRAMS = [
    *UNREVIEWED.values(),
    NESTED_SPEC,
    SIG + "    import os\n    os.fork()\n    return x\n",
    SIG + "    while True:\n        pass\n",
    SIG + "    h = []\n    while True:\n        h.append(np.ones(10 ** 7))\n",
    SIG + "    m = np.ma.extras.ma.inspect\n    return x\n",
    SIG + "    return np.gradient(x) * params[0]\n",
]


def _honest(corpus: list[dict]) -> list[str]:
    valid = [p["code"] for p in corpus if p["kind"] == "valid" and p["problem"] == "oscillator1"]
    return valid[:5]


def test_hostile_programs_between_honest_ones_change_nothing(corpus_programs: list[dict], llmsr_data: Path) -> None:
    honest = _honest(corpus_programs)
    problem = load_problem("oscillator1", data=llmsr_data / "oscillator1")
    config = EvaluatorConfig(workers=2, timeout=10)  # the fitter gets half: never cut short here
    with Evaluator(problem, config) as ev:
        clean = ev.evaluate_many(honest)
    mixed: list[str] = []
    for i, code in enumerate(honest):
        n = len(HOSTILE_PROGRAMS)
        mixed += [code, HOSTILE_PROGRAMS[(2 * i) % n], HOSTILE_PROGRAMS[(2 * i + 1) % n]]
    mixed += HOSTILE_PROGRAMS[10 % len(HOSTILE_PROGRAMS):]
    with Evaluator(problem, config) as ev:
        results = ev.evaluate_many(mixed)
    got = [r for code, r in zip(mixed, results, strict=True) if code in honest]
    assert [r.error for r in clean] == [None] * len(honest)
    assert [(r.ok, r.error, r.score) for r in got] == [(r.ok, r.error, r.score) for r in clean]
    hostile = [r for code, r in zip(mixed, results, strict=True) if code not in honest]
    assert all(not r.ok for r in hostile), [(r.error, r.score) for r in hostile if r.ok]


def test_hostile_runners_between_honest_jobs_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    codes = [HONEST, HONEST.replace("params[1] * v", "params[1] * np.sin(v)"),
             HONEST.replace("params[0] * x", "params[0] * np.exp(x)")]
    hostile = [("act_on_factory", {}), ("fork_bomb", {}), ("sweep", {"numbers": json.dumps(list(range(0, 470)))}),
               ("raw_call", {"nr": 0x4000_0000 | 39})]
    for p in _pool(monkeypatch, audit_hook=False):
        clean = [p.submit(_job(c)).result(timeout=60) for c in codes]
        futures = []
        for i, c in enumerate(codes):
            runner, args = hostile[i % len(hostile)]
            futures.append(p.submit(Job(id=time.monotonic_ns(), program=SIG + "    return x\n", entry="equation",
                                        runner=f"attack_runners:{runner}", args=args, timeout=30)))
            futures.append(p.submit(_job(c)))
        outcomes = [f.result(timeout=120) for f in futures]
        restarts = p.restarts
    mixed = outcomes[1::2]
    for a, b in zip(clean, mixed, strict=True):
        assert a.ok and b.ok, (a.reason, b.reason, b.detail)
        assert a.payload["params"] == b.payload["params"]
        for split, pred in a.payload["predictions"].items():
            assert np.array_equal(pred, b.payload["predictions"][split])
    assert restarts == 0


# -- as an ordinary user ----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="already an ordinary user: the other tests are the check")
def test_as_an_ordinary_user(shared_dir: Path) -> None:
    """This file and ``test_walls_inprocess`` again as ``nobody``: candidates share the
    zygote's one mapped uid, so the filter alone keeps them off the factory."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    env["EQFORGE_SHARED"] = str(shared_dir)
    cmd = [sys.executable, str(TESTS / "asuser.py"), sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-m", "not slow", str(TESTS / "test_walls_allowlist.py"), str(TESTS / "test_walls_inprocess.py")]
    proc = subprocess.run(cmd, cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True, timeout=900)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail.split("passed")[-1][:40], tail


# -- honest computation beyond the corpus: the filter changes nothing ------------------------

EXTRAS = {
    "special": "from scipy.special import erf, gamma, jv, ellipk, expit\n"
    "def equation(x):\n    return float((erf(x) + gamma(x) + jv(1, x) + ellipk(x / 3) + expit(x)).sum())\n",
    "linalg": "def equation(x):\n    a = np.outer(x, x) + np.eye(len(x))\n"
    "    return float(np.linalg.solve(a, x).sum() + np.linalg.lstsq(a, x, rcond=None)[0].sum()"
    " + np.abs(np.linalg.eigvals(a)).sum())\n",
    "fft and polynomial": "def equation(x):\n    c = np.polynomial.polynomial.polyfit(x, x ** 2, 2)\n"
    "    return float(np.abs(np.fft.rfft(x)).sum() + c.sum())\n",
    "unseeded rng": "def equation(x):\n    r = np.random.default_rng()\n    return float(r.normal(size=3).shape[0])\n",
    "warnings": "def equation(x):\n    y = np.log(x - x) + 1 / (x - x)\n    return str(y[0])\n",
    "errstate": "def equation(x):\n    with np.errstate(all='ignore'):\n        y = np.sqrt(-x)\n"
    "    return str(y[0])\n",
    "print": "def equation(x):\n    print('rows', len(x), x[:3])\n    return 1.0\n",
    "big arrays": "def equation(x):\n    a = [np.ones(10 ** 6) * i for i in range(20)]\n    b = list(range(10 ** 6))\n"
    "    b += b\n    return float(sum(v.sum() for v in a) + len(b))\n",
    "exceptions": "def equation(x):\n    try:\n        raise ValueError('x')\n    except ValueError as e:\n"
    "        return str(e) + str(math.gamma(3.0))\n",
    "nonfinite": "def equation(x):\n    return float(np.exp(1000.0 * x).sum())\n",
}


def test_honest_extras_give_the_same_answers_with_and_without_the_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    x = {"x": np.linspace(0.5, 2.0, 64)}
    answers: dict[bool, dict[str, Any]] = {}
    for on in (True, False):
        for p in _pool(monkeypatch, seccomp=on):
            answers[on] = {}
            for name, code in EXTRAS.items():
                out = p.run(code, "equation", ANALYZE, arrays=x, timeout=30)
                text = out.payload.get("text", "")
                if name == "unseeded rng":
                    text = text[:1]
                answers[on][name] = (out.ok, out.reason, text, out.output)
    assert answers[True] == answers[False]
    assert all(a[0] for a in answers[True].values()), answers[True]
