"""The zygote pool: crashes, killed zygotes, killed main process, OOM, cleanup, fresh state.

``crash_runner`` below is imported by the zygotes of one test (``tests/`` is put on their
``PYTHONPATH``), so this module must stay importable without side effects.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eqforge.evaluator import runner
from eqforge.evaluator.in_sandbox import predict
from eqforge.sandbox import cgroups
from eqforge.sandbox.messages import Job, Outcome, Reply, Setup, TrustedData
from eqforge.sandbox.policy import DEFAULT_IMPORTS
from eqforge.sandbox.pool import SandboxPool
from eqforge.sandbox.worker import candidate_uid

TESTS = Path(__file__).resolve().parent
SIG = "def equation(x, v, params):\n"
HONEST = SIG + "    return params[0] * x + params[1] * v\n"
LOOP = SIG + "    while True:\n        pass\n"
LIAR = "test_sandbox_pool:liar_runner"


def liar_runner(fn: Any, inputs: Any, call: Any, state: dict[str, Any]) -> Reply:
    """The real predictor, or a candidate process that answers what it was not asked
    (``args.lie``): it stands for a candidate that took over its own process."""
    lie = call.args.get("lie") or ("wrong-count" if getattr(fn, "__name__", "") == "lies" else "")
    if lie == "segfault":
        # a real fault, read from an unmapped address (the seccomp allowlist refuses a
        # signal even to itself, so faulthandler._sigsegv's raise() no longer kills)
        float(np.lib.stride_tricks.as_strided(np.zeros(1), shape=(2,), strides=(1 << 46,))[1])
    if lie in ("length", "header", "shape"):
        if lie == "length":
            data = struct.pack("!I", 0xFFFFFFF0)
        elif lie == "header":
            data = struct.pack("!I", 8 + (60 << 20)) + struct.pack("!3sBI", b"EQF", 1, 60 << 20)
        else:
            head = b'{"type": "Reply", "fields": {"ok": true}, "arrays": [["values", [4611686018427387904, 4]]]}'
            frame = struct.pack("!3sBI", b"EQF", 1, len(head)) + head
            data = struct.pack("!I", len(frame)) + frame
        for fd in range(3, 64):  # the first descriptor that takes a write is the reply pipe
            try:
                os.write(fd, data)
                break
            except OSError:
                continue
        time.sleep(30)
    if lie == "wrong-count":
        return Reply(True, {"values": np.zeros((1, 3))})
    return predict.serve(fn, inputs, call, state)


def _data() -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    X = {"train": rng.uniform(0.5, 2.0, (200, 2)), "test_id": rng.uniform(0.5, 2.0, (50, 2))}
    return X, 1.5 * X["train"][:, 0] - 0.5 * X["train"][:, 1]


def _setup(y: np.ndarray | None = None, **extra: Any) -> tuple[Setup, TrustedData]:
    X, y0 = _data()
    y = y0 if y is None else y
    setup = Setup(
        inputs={s: tuple(np.ascontiguousarray(c) for c in x.T) for s, x in X.items()},
        runners=(runner.PREDICT, runner.ANALYZE), drivers=(runner.DRIVER,), warmup="eqforge.evaluator.runner:warmup",
        allowed_imports=DEFAULT_IMPORTS, **{"memory_bytes": 1 << 30, **extra})
    return setup, TrustedData({"y_train": y, "extremes": np.array([0.0, 1.0])})


def _job(code: str, timeout: float = 10.0, runner_name: str = runner.PREDICT, **options: Any) -> Job:
    return Job(id=time.monotonic_ns(), program=code, entry="equation", runner=runner_name, driver=runner.DRIVER,
               options={"n_params": 4, "indices": [0, 1], **options}, timeout=timeout)


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
    uids = {str(candidate_uid(z, c)) for z in zygotes for c in range(256)}
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


def _candidates(factory: int) -> list[int]:
    """Live candidate processes of a worker: the children of its factory."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            st = _status(int(p.name))
            if st.get("PPid") == str(factory) and not st.get("State", "").startswith(("Z", "X")):
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
    p = SandboxPool(*_setup(), workers=1)
    try:
        yield p
    finally:
        p.close()


def _ok(o: Outcome) -> dict[str, Any]:
    assert o.ok, (o.reason, o.detail)
    return dict(o.payload)


def test_honest_job_and_reported_layers(pool: SandboxPool) -> None:
    payload = _ok(pool.submit(_job(HONEST)).result(timeout=30))
    assert np.allclose(payload["params"][:2], [1.5, -0.5]) and payload["params"][2:] == [1.0, 1.0]
    assert payload["fit"]["indices"] == [0, 1] and payload["n_params"] == 2
    assert set(payload["predictions"]) == {"train", "test_id"}
    iso = pool.isolation
    assert iso["harden"] and iso["seccomp"] and iso["chroot"]
    if os.geteuid() == 0:
        assert iso["network"] == "netns" and iso["uid"] == "distinct" and iso["ipc"] and iso["pid"]
        zygote = pool.worker_pids()[0]
        assert os.readlink(f"/proc/{zygote}/ns/net") != os.readlink("/proc/self/ns/net")


def test_one_shot_job_like_funsearch(pool: SandboxPool) -> None:
    code = "def analyze(x, y):\n    print('rows', len(x))\n    return float(np.corrcoef(x, y)[0, 1])\n"
    x = np.linspace(0, 1, 50)
    out = pool.run(code, "analyze", runner.ANALYZE, arrays={"x": x, "y": 2 * x + 1}, timeout=10)
    assert out.ok and float(out.payload["text"]) == pytest.approx(1.0) and "rows 50" in out.output
    bad = pool.run("def analyze(x):\n    return np.ma.extras.ma.inspect.stack()\n", "analyze", runner.ANALYZE,
                   arrays={"x": x})
    assert not bad.ok and bad.reason == "policy:runtime"


def _lying_pool(monkeypatch: pytest.MonkeyPatch) -> SandboxPool:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    setup, trusted = _setup()
    import dataclasses
    return SandboxPool(dataclasses.replace(setup, runners=(*setup.runners, LIAR)), trusted, workers=1)


def test_malformed_and_oversized_replies_fail_one_job_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with _lying_pool(monkeypatch) as p:
        zygote = p.worker_pids()[0]
        code = "def equation(x, v, params):\n    return params[0] * x + params[1] * v\n"
        jobs = []
        for lie in ("length", "header", "shape", "segfault", None):
            job = Job(id=lie, program=code, entry="equation", runner=LIAR, op="predict",
                      args={"lie": lie or "", "split": "train"}, arrays={"params": np.ones((1, 4))}, timeout=5)
            jobs.append(p.submit(job))
        fit = p.submit(_job(HONEST, runner_name=LIAR))
        outcomes = [f.result(timeout=60) for f in jobs]
        assert [o.ok for o in outcomes] == [False] * 4 + [True], [(o.reason, o.detail) for o in outcomes]
        assert all(o.reason == "crash" for o in outcomes[:4]), [(o.reason, o.detail) for o in outcomes]
        assert "oversized reply" in outcomes[0].detail and "oversized header" in outcomes[1].detail
        assert "malformed" in outcomes[2].detail and "signal 11" in outcomes[3].detail
        assert fit.result(timeout=60).ok
        assert p.worker_pids() == [zygote] and p.restarts == 0


def test_a_lying_fit_process_cannot_set_params_or_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    # the candidate process answers with a count of predictions it was not asked for: the job
    # fails with a reason, nothing is scored, and the worker goes on
    with _lying_pool(monkeypatch) as p:
        lies = HONEST.replace("def equation", "def lies")
        job = Job(id="lies", program=lies, entry="lies", runner=LIAR, driver=runner.DRIVER,
                  options={"n_params": 4, "indices": [0, 1]}, timeout=10)
        out = p.submit(job).result(timeout=30)
        assert not out.ok and out.reason == "crash" and "malformed reply" in out.detail, out
        assert p.submit(_job(HONEST)).result(timeout=30).ok and p.restarts == 0


def test_timeout_kills_the_candidate(pool: SandboxPool) -> None:
    factory = pool.factory_pids()[0]
    start = time.monotonic()
    reply = pool.submit(_job(LOOP, timeout=1.0)).result(timeout=30)
    assert reply.reason == "timeout" and time.monotonic() - start < 5
    assert _candidates(factory) == []


def test_killed_zygote_is_replaced_and_its_child_dies(pool: SandboxPool) -> None:
    zygote, factory = pool.worker_pids()[0], pool.factory_pids()[0]
    fut = pool.submit(_job(LOOP, timeout=60.0))
    assert _wait_for(lambda: _candidates(factory))
    child = _candidates(factory)[0]
    os.kill(zygote, signal.SIGKILL)
    reply = fut.result(timeout=15)
    assert not reply.ok and reply.reason == "crash"
    assert _wait_for(lambda: not _alive(child) and not _alive(factory), 5), "the candidate outlived its zygote"
    assert pool.submit(_job(HONEST)).result(timeout=60).ok
    assert pool.restarts == 1 and pool.worker_pids() != [zygote]


def test_close_leaves_no_process_directory_or_cgroup() -> None:
    p = SandboxPool(*_setup(), workers=2)
    zygotes = p.worker_pids()
    workers = [w for w in p._workers if w is not None]
    tmpdirs = [w.tmpdir for w in workers]
    cgdirs = [d for w in workers if w.cgroup is not None for d in w.cgroup.dirs.values()]
    futs = [p.submit(_job(HONEST)) for _ in range(4)] + [p.submit(_job(LOOP, timeout=1.0))]
    assert [f.result(timeout=60).ok for f in futs] == [True] * 4 + [False]
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
    p = SandboxPool(*_setup(), workers=1)
    p.submit(_job(LOOP, timeout=120.0))
    print(p.worker_pids()[0], p.factory_pids()[0], flush=True)
    time.sleep(300)
    """
)


def test_main_process_killed_leaves_nothing_behind() -> None:
    proc = subprocess.Popen([sys.executable, "-c", MAIN.format(tests=str(TESTS))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        zygote, factory = (int(v) for v in proc.stdout.readline().split())
        assert _wait_for(lambda: _candidates(factory), 20), "the candidate never started"
        child = _candidates(factory)[0]
        proc.kill()
        proc.wait(timeout=10)
        # The zygote sees its protocol pipe hang up and stops; its factory and child die with it.
        assert _wait_for(lambda: not any(_alive(p) for p in (zygote, factory, child)), 10)
        assert sandbox_leftovers([zygote]) == []
    finally:
        if proc.poll() is None:
            proc.kill()
    stale = [d for ctrl in ("pids", "memory") for d in (cgroups.ROOT / ctrl).rglob(f"{cgroups.PREFIX}{proc.pid}-*")]
    if stale:
        with SandboxPool(*_setup(), workers=1):
            pass
        assert not any(d.exists() for d in stale)


def test_cgroup_oom_kill_is_reported_as_memory() -> None:
    # Without the address-space rlimit the memory cgroup is what stops the candidate.
    with SandboxPool(*_setup(address_space_limit=False, memory_bytes=64 << 20), workers=1) as p:
        if not p.isolation.get("cgroup_memory"):
            pytest.skip("no writable memory cgroup here")
        zygote = p.worker_pids()[0]
        hog = SIG + "    a = np.ones(200_000_000)\n    return params[0] * x + a[0]\n"
        reply = p.submit(_job(hog, timeout=30.0)).result(timeout=60)
        assert not reply.ok and reply.reason == "memory", reply
        assert p.worker_pids() == [zygote] and _alive(zygote)
        assert p.submit(_job(HONEST)).result(timeout=30).ok


def test_address_space_limit_reports_memory(pool: SandboxPool) -> None:
    hog = SIG + "    a = np.ones(400_000_000)\n    return params[0] * x + a[0]\n"
    reply = pool.submit(_job(hog)).result(timeout=60)
    assert reply.reason == "memory", reply


def test_output_is_captured_and_truncated(pool: SandboxPool) -> None:
    flood = SIG + "    print('A' * 100_000)\n    return params[0] * x + params[1] * v\n"
    reply = pool.submit(_job(flood)).result(timeout=30)
    assert reply.ok
    assert 0 < len(reply.output) <= 4096 and set(reply.output) <= {"A", "\n"}


def test_scored_predictions_come_from_a_fresh_process(pool: SandboxPool) -> None:
    # State kept between calls (here a call counter) never reaches a score: the scoring
    # process is fresh, and a program whose answers depend on what it was asked before is
    # not a law of each row (the pointwise contract: probes and two processes disagree).
    stateful = ("def equation(x, v, params, _calls=[]):\n"
                "    _calls.append(1)\n"
                "    return params[0] * x + params[1] * v + len(_calls)\n")
    out = pool.submit(_job(stateful)).result(timeout=30)
    assert not out.ok and out.reason == "policy:row-coupling" and not out.payload, out


def test_a_candidate_cannot_affect_the_next(pool: SandboxPool) -> None:
    vandal = SIG + ("    d = np.sctypeDict\n    d.clear()\n    np.ma.masked_print_option.set_display('X')\n"
                    "    return params[0] * x\n")
    pool.submit(_job(vandal)).result(timeout=30)
    after = _ok(pool.submit(_job(HONEST)).result(timeout=30))
    assert np.allclose(after["params"][:2], [1.5, -0.5])


def test_unhardened_mode_for_the_benchmark_still_works() -> None:
    with SandboxPool(*_setup(harden=False), workers=1) as p:
        assert p.isolation["harden"] is False
        payload = _ok(p.submit(_job(HONEST)).result(timeout=30))
        assert np.allclose(payload["params"][:2], [1.5, -0.5])


def test_degrades_with_a_warning_without_cgroups(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cgroups, "version", lambda: 0)
    monkeypatch.setattr(cgroups, "_warned", False)
    with caplog.at_level("WARNING", logger="eqforge.sandbox.cgroups"), SandboxPool(*_setup(), workers=1) as p:
        assert p.isolation["cgroup"] is False
        assert p.submit(_job(HONEST)).result(timeout=30).ok
        assert p.submit(_job(LOOP, timeout=1.0)).result(timeout=30).reason == "timeout"
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
def test_no_candidate_process_nor_their_factory_ever_holds_the_targets() -> None:
    y = np.random.default_rng(7).uniform(3.0, 4.0, 200)  # distinctive values
    needle = y[100:108].tobytes()
    with SandboxPool(*_setup(y=y), workers=1) as p:
        zygote, factory = p.worker_pids()[0], p.factory_pids()[0]
        assert p.submit(_job(HONEST)).result(timeout=30).ok
        fut = p.submit(_job(LOOP, timeout=20.0))
        assert _wait_for(lambda: _candidates(factory))
        child = _candidates(factory)[0]
        assert _memory_contains(zygote, needle)  # the search works: the trusted zygote has them
        assert not _memory_contains(factory, needle)
        assert not _memory_contains(child, needle)
        os.kill(child, signal.SIGKILL)
        fut.result(timeout=30)
