"""The zygote pool: crashes, killed zygotes, killed main process, OOM, cleanup, fresh state.

``crash_runner`` below is imported by the zygotes of one test (``tests/`` is put on their
``PYTHONPATH``), so this module must stay importable without side effects.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eqforge.evaluator.runner import prepare_context, run
from eqforge.sandbox import cgroups
from eqforge.sandbox.policy import DEFAULT_IMPORTS
from eqforge.sandbox.pool import SandboxPool
from eqforge.sandbox.worker import UID_BASE

TESTS = Path(__file__).resolve().parent
SIG = "def equation(x, v, params):\n"
HONEST = SIG + "    return params[0] * x + params[1] * v\n"
LOOP = SIG + "    while True:\n        pass\n"


def crash_runner(fn: Any, context: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The real runner, or a segfault of the candidate's process when asked to."""
    if options.get("crash"):
        faulthandler._sigsegv()
    return run(fn, context, options)


def _setup(**extra: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    X = {"train": rng.uniform(0.5, 2.0, (200, 2)), "test_id": rng.uniform(0.5, 2.0, (50, 2))}
    y = 1.5 * X["train"][:, 0] - 0.5 * X["train"][:, 1]
    return {
        "runner": "eqforge.evaluator.runner:run",
        "warmup": "eqforge.evaluator.runner:warmup",
        "context": prepare_context(X, y),
        "allowed_imports": list(DEFAULT_IMPORTS),
        "memory_bytes": 1 << 30,
        **extra,
    }


def _job(code: str, timeout: float = 10.0, **options: Any) -> dict[str, Any]:
    return {"code": code, "options": {"n_params": 4, "indices": [0, 1], **options}, "timeout": timeout}


def _status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _alive(pid: int) -> bool:
    st = _status(pid)
    return bool(st) and not st.get("State", "").startswith(("Z", "X"))


def sandbox_leftovers(zygotes: list[int]) -> list[int]:
    """Live processes that are these zygotes, their children, or run as a candidate uid."""
    uids = {str(UID_BASE + z) for z in zygotes}
    zs = {str(z) for z in zygotes}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        st = _status(int(entry.name))
        if not st or st.get("State", "").startswith(("Z", "X")):
            continue
        if entry.name in zs or st.get("PPid") in zs or st.get("Uid", "").split()[:1] in ([u] for u in uids):
            found.append(int(entry.name))
    return found


def _candidates(zygote: int, scorer: int | None) -> list[int]:
    """Live candidate processes of a zygote: children of it or of its scorer."""
    parents = {str(zygote), str(scorer)}
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != scorer:
            st = _status(int(p.name))
            if st.get("PPid") in parents and not st.get("State", "").startswith(("Z", "X")):
                found.append(int(p.name))
    return found


def _wait_for(cond: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def pool() -> Iterator[SandboxPool]:
    p = SandboxPool(_setup(), workers=1)
    try:
        yield p
    finally:
        p.close()


def test_honest_job_and_reported_isolation(pool: SandboxPool) -> None:
    reply = pool.submit(_job(HONEST)).result(timeout=30)
    assert reply["status"] == "ok", reply
    params = np.asarray(reply["payload"]["params"])
    assert np.allclose(params[:2], [1.5, -0.5])
    assert reply["payload"]["fit"]["indices"] == [0, 1]
    iso = pool.isolation
    assert iso["harden"] and iso["rescore"]
    if os.geteuid() == 0:
        assert iso["network"] == "netns" and iso["chroot"] and iso["uid"] == UID_BASE + pool.worker_pids()[0]
        zygote = pool.worker_pids()[0]
        assert os.readlink(f"/proc/{zygote}/ns/net") != os.readlink("/proc/self/ns/net")


def test_child_crash_leaves_the_zygote_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    with SandboxPool(_setup(runner="test_sandbox_pool:crash_runner"), workers=1) as p:
        zygote = p.worker_pids()[0]
        crashed = p.submit(_job(HONEST, crash=True)).result(timeout=30)
        assert crashed["status"] == "fail" and crashed["reason"] == "crash", crashed
        assert "signal 11" in crashed["detail"]
        ok = p.submit(_job(HONEST)).result(timeout=30)
        assert ok["status"] == "ok", ok
        assert p.worker_pids() == [zygote] and p.restarts == 0


def test_timeout_kills_the_candidate(pool: SandboxPool) -> None:
    zygote, scorer = pool.worker_pids()[0], pool.scorer_pids()[0]
    start = time.monotonic()
    reply = pool.submit(_job(LOOP, timeout=1.0)).result(timeout=30)
    assert reply["reason"] == "timeout" and time.monotonic() - start < 5
    assert _candidates(zygote, scorer) == []


def test_killed_zygote_is_replaced_and_its_child_dies(pool: SandboxPool) -> None:
    zygote, scorer = pool.worker_pids()[0], pool.scorer_pids()[0]
    fut = pool.submit(_job(LOOP, timeout=60.0))
    assert _wait_for(lambda: _candidates(zygote, scorer))
    child = _candidates(zygote, scorer)[0]
    os.kill(zygote, signal.SIGKILL)
    reply = fut.result(timeout=15)
    assert reply["status"] == "fail" and reply["reason"] == "crash"
    assert _wait_for(lambda: not _alive(child) and not _alive(scorer), 5), "the candidate outlived its zygote"
    ok = pool.submit(_job(HONEST)).result(timeout=60)
    assert ok["status"] == "ok", ok
    assert pool.restarts == 1 and pool.worker_pids() != [zygote]


def test_close_leaves_no_process_directory_or_cgroup() -> None:
    p = SandboxPool(_setup(), workers=2)
    zygotes = p.worker_pids()
    workers = [w for w in p._workers if w is not None]
    tmpdirs = [w.tmpdir for w in workers]
    cgdirs = [d for w in workers if w.cgroup is not None for d in w.cgroup.dirs.values()]
    futs = [p.submit(_job(HONEST)) for _ in range(4)] + [p.submit(_job(LOOP, timeout=1.0))]
    assert [f.result(timeout=60)["status"] for f in futs] == ["ok"] * 4 + ["fail"]
    p.close()
    assert sandbox_leftovers(zygotes) == []
    assert not any(Path(d).exists() for d in tmpdirs)
    assert not any(d.exists() for d in cgdirs)


MAIN = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_sandbox_pool import _setup, _job, LOOP
    from eqforge.sandbox.pool import SandboxPool
    p = SandboxPool(_setup(), workers=1)
    p.submit(_job(LOOP, timeout=120.0))
    print(p.worker_pids()[0], p.scorer_pids()[0], flush=True)
    time.sleep(300)
    """
)


def test_main_process_killed_leaves_nothing_behind() -> None:
    proc = subprocess.Popen([sys.executable, "-c", MAIN.format(tests=str(TESTS))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        zygote, scorer = (int(v) for v in proc.stdout.readline().split())
        assert _wait_for(lambda: _candidates(zygote, scorer), 20), "the candidate never started"
        child = _candidates(zygote, scorer)[0]
        proc.kill()
        proc.wait(timeout=10)
        # The zygote sees its protocol pipe hang up and stops; its scorer and child die with it.
        assert _wait_for(lambda: not any(_alive(p) for p in (zygote, scorer, child)), 10)
        assert sandbox_leftovers([zygote]) == []
    finally:
        if proc.poll() is None:
            proc.kill()
    # Its cgroups are swept by the next pool that starts.
    stale = [d for ctrl in ("pids", "memory") for d in (cgroups.ROOT / ctrl).rglob(f"{cgroups.PREFIX}{proc.pid}-*")]
    if stale:
        with SandboxPool(_setup(), workers=1):
            pass
        assert not any(d.exists() for d in stale)


def test_cgroup_oom_kill_is_reported_as_memory() -> None:
    # Without the address-space rlimit the memory cgroup is what stops the candidate.
    with SandboxPool(_setup(address_space_limit=False, memory_bytes=64 << 20), workers=1) as p:
        if not p.isolation.get("cgroup_memory"):
            pytest.skip("no writable memory cgroup here")
        zygote = p.worker_pids()[0]
        hog = SIG + "    a = np.ones(200_000_000)\n    return params[0] * x + a[0]\n"
        reply = p.submit(_job(hog, timeout=30.0)).result(timeout=60)
        assert reply["status"] == "fail" and reply["reason"] == "memory", reply
        assert "OOM" in reply["detail"]
        assert p.worker_pids() == [zygote] and _alive(zygote)
        assert p.submit(_job(HONEST)).result(timeout=30)["status"] == "ok"


def test_address_space_limit_reports_memory(pool: SandboxPool) -> None:
    hog = SIG + "    a = np.ones(400_000_000)\n    return params[0] * x + a[0]\n"
    reply = pool.submit(_job(hog)).result(timeout=60)
    assert reply["reason"] == "memory", reply


def test_output_is_captured_and_truncated(pool: SandboxPool) -> None:
    flood = SIG + "    print('A' * 100_000)\n    return params[0] * x + params[1] * v\n"
    reply = pool.submit(_job(flood)).result(timeout=30)
    assert reply["status"] == "ok"
    assert 0 < len(reply["output"]) <= 4096 and set(reply["output"]) <= {"A", "\n"}


def test_scored_predictions_come_from_a_fresh_process(pool: SandboxPool) -> None:
    # State kept between calls during the fit (here a call counter) is gone when the
    # predictions that get scored are made: they depend on the inputs and params only.
    stateful = ("def equation(x, v, params, _calls=[]):\n"
                "    _calls.append(1)\n"
                "    return params[0] * x + params[1] * v + len(_calls)\n")
    reply = pool.submit(_job(stateful)).result(timeout=30)
    assert reply["status"] == "ok", reply
    p = reply["payload"]["params"]
    assert reply["payload"]["fit"]["nfev"] > 3
    ctx = _setup()["context"]
    x, v = ctx["columns"]["train"]
    assert np.allclose(reply["payload"]["predictions"]["train"], p[0] * x + p[1] * v + 1)


def test_a_candidate_cannot_affect_the_next(pool: SandboxPool) -> None:
    vandal = SIG + ("    d = np.sctypeDict\n    d.clear()\n    np.ma.masked_print_option.set_display('X')\n"
                    "    return params[0] * x\n")
    pool.submit(_job(vandal)).result(timeout=30)
    after = pool.submit(_job(HONEST)).result(timeout=30)
    assert after["status"] == "ok" and np.allclose(after["payload"]["params"][:2], [1.5, -0.5])


def test_unhardened_mode_for_the_benchmark_still_works() -> None:
    with SandboxPool(_setup(harden=False), workers=1) as p:
        assert p.isolation["harden"] is False and p.isolation["network"] == "off"
        reply = p.submit(_job(HONEST)).result(timeout=30)
        assert reply["status"] == "ok" and np.allclose(reply["payload"]["params"][:2], [1.5, -0.5])


def test_degrades_with_a_warning_without_cgroups(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cgroups, "version", lambda: 0)
    monkeypatch.setattr(cgroups, "_warned", False)
    with caplog.at_level("WARNING", logger="eqforge.sandbox.cgroups"), SandboxPool(_setup(), workers=1) as p:
        assert p.isolation["cgroup"] is False
        assert p.submit(_job(HONEST)).result(timeout=30)["status"] == "ok"
        assert p.submit(_job(LOOP, timeout=1.0)).result(timeout=30)["reason"] == "timeout"
    assert any("cgroups unavailable" in r.getMessage() for r in caplog.records)


def _memory_contains(pid: int, needle: bytes) -> bool:
    """Whether any private writable mapping of ``pid`` holds ``needle`` (needs ptrace rights)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            parts = line.split()
            if not parts[1].startswith("rw"):
                continue
            lo, hi = (int(v, 16) for v in parts[0].split("-"))
            try:
                mem.seek(lo)
                if needle in mem.read(hi - lo):
                    return True
            except OSError:
                continue
    return False


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's memory needs root")
def test_the_scorer_never_holds_the_training_targets() -> None:
    setup = _setup()
    y = np.random.default_rng(7).uniform(3.0, 4.0, 200)  # distinctive values
    setup["context"]["y_train"] = y
    needle = y[100:108].tobytes()
    with SandboxPool(setup, workers=1) as p:
        zygote, scorer = p.worker_pids()[0], p.scorer_pids()[0]
        assert p.submit(_job(HONEST)).result(timeout=30)["status"] == "ok"
        assert _memory_contains(zygote, needle)  # the search works: the zygote has them
        assert not _memory_contains(scorer, needle)
