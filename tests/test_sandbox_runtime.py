"""The layers inside a candidate's process: attribute guard, audit hook, OS confinement, cgroups.

Anything that installs an audit hook or changes credentials runs in a forked child (an
audit hook cannot be removed, and the test process must keep its privileges).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eqforge.sandbox import cgroups, guard, runtime
from eqforge.sandbox.policy import DEFAULT_IMPORTS

IS_ROOT = os.geteuid() == 0
UNLOADED = ("colorsys", "sndhdr", "tabnanny", "netrc", "mailcap", "imghdr")

runtime.preload(DEFAULT_IMPORTS)  # as the zygote does, so guarded imports find them


def in_child(fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Run ``fn`` in a forked child; return its JSON-able result (or raise its error)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            out = {"ok": fn()}
        except BaseException as exc:  # noqa: BLE001
            out = {"error": f"{type(exc).__name__}: {exc}", "tb": traceback.format_exc()}
        try:
            os.write(w, json.dumps(out, default=repr).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        chunk = os.read(r, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        assert time.monotonic() < deadline
    os.close(r)
    os.waitpid(pid, 0)
    out = json.loads(b"".join(chunks) or b"{}")
    if "error" in out:
        raise AssertionError(out["error"] + "\n" + out.get("tb", ""))
    return out["ok"]


def guarded(code: str) -> Callable[..., Any]:
    return guard.compile_candidate(code, "equation", DEFAULT_IMPORTS, None)


SIG = "def equation(x, v, params):\n"

# ---------------------------------------------------------------------------------------
# attribute guard and guarded import (no hook needed: these run in this process)


@pytest.mark.parametrize(
    "expr",
    [
        "np.ma.extras.ma.inspect",  # numpy keeps references to modules outside the allowlist
        "np.ma.extras.ma.operator.attrgetter",
        "np.ma.extras.ma.warnings",
        "np.random.bit_generator.re",
        "x.ctypes",  # foreign-function handles, refused by type
    ],
)
def test_guard_refuses_modules_and_handles_outside_the_allowlist(expr: str) -> None:
    fn = guarded(SIG + f"    a = {expr}\n    return x\n")
    with pytest.raises(runtime.SandboxViolation):
        fn(np.ones(3), np.ones(3), np.ones(3))


def test_guard_keeps_honest_attribute_chains() -> None:
    code = SIG + (
        "    import scipy.special\n"
        "    a = np.linalg.norm(np.stack([x, v]), axis=0) + np.emath.sqrt(x).real\n"
        "    b = np.random.default_rng(0).normal(size=x.shape) * 0 + scipy.special.gamma(x + 1)\n"
        "    c = np.polynomial.polynomial.polyval(x, params[:3]) + np.fft.rfft(x).real.sum() * 0\n"
        "    return params[0] * a + b + c + x.T.astype(float).mean() + np.finfo(float).eps\n"
    )
    out = guarded(code)(np.linspace(1, 2, 8), np.linspace(0, 1, 8), np.ones(10))
    assert out.shape == (8,) and np.all(np.isfinite(out))


def test_guarded_import_checks_from_imports() -> None:
    ok = guarded("from numpy import sin\n" + SIG + "    return sin(x)\n")
    assert ok(np.zeros(2), np.zeros(2), np.ones(1)).tolist() == [0.0, 0.0]
    with pytest.raises(ImportError):
        guarded("import os\n" + SIG + "    return x\n")
    with pytest.raises(ImportError):
        guarded("from numpy.random.bit_generator import re\n" + SIG + "    return x\n")
    with pytest.raises(ImportError):
        guarded("import numpy.lib.stride_tricks\n" + SIG + "    return x\n")


def test_restricted_builtins() -> None:
    for name in ("open", "eval", "exec", "getattr", "type", "globals", "vars", "compile", "input"):
        fn = guarded(SIG + f"    return {name}\n")
        with pytest.raises(NameError):
            fn(1, 2, 3)


def test_compile_source_reasons() -> None:
    with pytest.raises(runtime.CandidateFailure) as e:
        guard.compile_source("def f(:\n")
    assert e.value.reason == "syntax"
    with pytest.raises(runtime.CandidateFailure) as e:
        guard.compile_source("x = 1\n" * 100_000)
    assert e.value.reason == "policy:size"
    with pytest.raises(runtime.CandidateFailure) as e:
        guard.compile_candidate("y = 1\n", "equation", DEFAULT_IMPORTS, None)
    assert e.value.reason == "parse:no-equation"


# ---------------------------------------------------------------------------------------
# audit hook: which events CPython raises for the escapes, and that they are refused


def _probe_hook() -> dict[str, str]:
    import gc

    def f() -> int:
        return 1

    try:
        raise ZeroDivisionError("probe")
    except ZeroDivisionError as exc:
        tb = exc.__traceback__

    def gen():  # noqa: ANN202
        yield 1

    g = gen()
    probes: dict[str, Callable[[], Any]] = {
        "sys._getframe": lambda: sys._getframe(),
        "func.__code__": lambda: f.__code__,
        "tb.tb_frame": lambda: tb.tb_frame,  # type: ignore[union-attr]
        "gen.gi_frame": lambda: g.gi_frame,
        "gc.get_objects": lambda: gc.get_objects(),
        "gc.get_referrers": lambda: gc.get_referrers(f),
        "open": lambda: open(os.devnull),
        "os.system": lambda: os.system("true"),
        "os.fork": lambda: os.fork(),
        "os.kill": lambda: os.kill(os.getpid(), 0),
        "subprocess": lambda: subprocess.Popen(["true"]),
        "socket": lambda: __import__("socket").socket(),
        "compile": lambda: compile("1", "s", "eval"),
        "import new module": lambda: __import__(next(m for m in UNLOADED if m not in sys.modules)),
        "ctypes": lambda: __import__("ctypes").string_at(id(f), 1),
    }
    out = {}
    recorded = runtime.install_audit_hook()  # armed from here on, for good
    for name, probe in probes.items():
        try:
            probe()
            out[name] = "allowed"
        except runtime.SandboxViolation as exc:
            out[name] = str(exc)
        except Exception as exc:  # noqa: BLE001
            out[name] = f"other: {type(exc).__name__}: {exc}"
    out["recorded"] = ",".join(recorded)
    return out


def test_audit_hook_refuses_introspection_io_processes_and_code() -> None:
    out = in_child(_probe_hook)
    recorded = out.pop("recorded")
    for name, result in out.items():
        assert result.startswith("blocked: "), (name, result)
    # The events CPython actually raises for the introspection escapes:
    assert out["func.__code__"] == out["tb.tb_frame"] == out["gen.gi_frame"] == "blocked: object.__getattr__"
    assert out["sys._getframe"] == "blocked: sys._getframe"
    assert "gc.get_objects" in recorded and "open" in recorded


def _honest_fit_under_hook() -> dict[str, Any]:
    from local_host import local_fit

    from eqforge.evaluator import runner

    rng = np.random.default_rng(1)
    X = {s: rng.uniform(0.5, 2, (300, 2)) for s in ("train", "test_id")}
    y = 0.7 * np.sin(X["train"][:, 0]) + 1.3 * X["train"][:, 1] ** 2
    runner.warmup({})  # as the zygote does: lazy imports happen before the hook
    results = {}
    codes = {
        "sin": SIG + "    return params[0] * np.sin(x) + params[1] * v ** 2\n",
        "exp": SIG + "    return params[0] * np.exp(-params[1] * x) + params[2] * np.log(v)\n",
        "special": "from scipy.special import erf\n" + SIG + "    return params[0] * erf(x) + params[1] * v\n",
    }
    compiled = {name: guard.compile_source(code) for name, code in codes.items()}  # before the hook
    recorded = runtime.install_audit_hook(allow_exec=tuple(compiled.values()))
    for name, code_obj in compiled.items():
        fn = guard.load_candidate(code_obj, "equation", DEFAULT_IMPORTS, recorded)
        for opts in ({"n_params": 4, "fitter": "llmsr"}, {"n_params": 4, "indices": [0, 1, 2]}):
            out = local_fit(fn, X, y, opts)
            results[f"{name}-{opts.get('fitter', 'default')}"] = float(np.mean((out["predictions"]["train"] - y) ** 2))
    results["violations"] = list(recorded)
    return results


def test_honest_fitting_never_trips_the_hook() -> None:
    out = in_child(_honest_fit_under_hook, timeout=120)
    assert out.pop("violations") == []
    assert out["sin-default"] < 1e-12 and out["sin-llmsr"] < 1e-6


# ---------------------------------------------------------------------------------------
# OS confinement (root only): chroot into an empty directory, unprivileged uid, no processes


@pytest.mark.skipif(not IS_ROOT, reason="chroot and uid changes need root")
def test_confinement_blocks_files_processes_and_signals(llmsr_data: Path) -> None:
    jail = tempfile.mkdtemp(prefix="eqforge-test-jail-")
    os.chmod(jail, 0o555)
    marker = Path(tempfile.gettempdir()) / f"eqforge-confine-{os.getpid()}"
    target = str(llmsr_data / "oscillator1" / "test_ood.csv")
    parent = os.getpid()

    def body() -> dict[str, str]:
        runtime.apply_limits(1 << 30, 10)
        runtime.confine(jail, 2_000_000_000 + os.getpid(), parent)
        out = {"root": ",".join(os.listdir("/"))}
        for name, probe in {
            "write marker": lambda: open(str(marker), "w"),
            "read test split": lambda: open(target).read(),
            "write in jail": lambda: open("/x", "w"),
            "fork": lambda: os.fork(),
            "signal parent": lambda: os.kill(parent, 0),
            "raise limits": lambda: __import__("resource").setrlimit(
                __import__("resource").RLIMIT_NPROC, (100, 100)),
            "chroot escape": lambda: os.chroot("/"),
        }.items():
            try:
                probe()
                out[name] = "allowed"
            except (OSError, ValueError) as exc:
                out[name] = type(exc).__name__
        return out

    try:
        out = in_child(body)
    finally:
        os.rmdir(jail)
    assert out.pop("root") == ""
    assert all(v != "allowed" for v in out.values()), out
    assert not marker.exists()


# ---------------------------------------------------------------------------------------
# cgroups


def _cgroups_or_skip() -> cgroups.CgroupSet:
    cg = cgroups.CgroupSet.create("test", pids_max=4)
    if cg is None:
        pytest.skip("cgroups are not writable here")
    return cg


FORKER = (
    "import os, sys, time\n"
    "sys.stdin.readline()\n"
    "ok = 0\n"
    "for _ in range(10):\n"
    "    try:\n"
    "        if os.fork() == 0:\n"
    "            time.sleep(60); os._exit(0)\n"
    "        ok += 1\n"
    "    except OSError:\n"
    "        pass\n"
    "print(ok, flush=True)\n"
    "time.sleep(60)\n"
)


def test_cgroup_caps_processes_and_kills_everything_on_close() -> None:
    cg = _cgroups_or_skip()
    dirs = list(cg.dirs.values())
    proc = subprocess.Popen([sys.executable, "-c", FORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        cg.add(proc.pid)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        forked = int(proc.stdout.readline())
        assert forked == 3  # pids.max=4 counts the parent
        members = [int(p) for p in Path(cg.procs_file).read_text().split()]
        assert proc.pid in members and len(members) == 4
    finally:
        cg.close()
        proc.wait(timeout=10)
    assert proc.returncode == -9
    assert not any(d.exists() for d in dirs)
    for pid in members:
        assert not Path(f"/proc/{pid}").exists() or _zombie_or_gone(pid)


def _zombie_or_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_stale_cgroups_of_dead_owners_are_swept() -> None:
    cg = _cgroups_or_skip()
    try:
        parent = next(iter(cg.dirs.values())).parent
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        stale = parent / f"{cgroups.PREFIX}{int(dead.stdout)}-w0-deadbeef"
        stale.mkdir()
        again = cgroups.CgroupSet.create("test2", pids_max=4)
        assert again is not None
        again.close()
        assert not stale.exists()
    finally:
        cg.close()


def test_oom_counter_parsing(tmp_path: Path) -> None:
    f = tmp_path / "memory.oom_control"
    f.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert cgroups.oom_kills(str(f)) == 3
    assert cgroups.oom_kills(str(tmp_path / "missing")) == 0
    assert cgroups.oom_kills("") == 0
