"""The zygote: a long-lived, trusted worker that forks fresh children to run candidates.

Started by ``SandboxPool`` as ``python -m eqforge.sandbox.worker`` in an empty temporary
directory with a scrubbed environment, inside its own cgroups. It moves into its own network
namespace, checks which confinements the kernel grants it (chroot, uid change), imports
numpy/scipy and the runner once and warms the fitters up on synthetic data (so lazy imports
happen here and not in a child, and no copy of the real targets is left in freed memory).
It never executes untrusted code itself, so it cannot be corrupted by one.

Each job runs in two phases, each in a fresh child:

1. **fit** — forked from the zygote: the candidate and the trusted fitter run together;
   only the fitted constants (a short vector of floats) come out of this child.
2. **score** — forked from the *scorer*, a second trusted process the zygote forks at
   start-up, before scipy and the fitter are imported (so it is small and cheap to fork)
   and which zeroes its copy of the training targets: its child computes the predictions on
   every split from those constants. These predictions are what the main process scores.

So whatever a candidate learns or stores during the fit (by introspection, by reading
uninitialised memory with ``np.empty``, by keeping state between calls to game the
optimiser) dies with the fit child: the scored predictions are a pure function of the
inputs and the constants, computed where the targets never were readable.

``harden=False`` in the setup skips every confinement and the scoring phase; it exists for
``benchmarks/sandbox_overhead.py`` to measure what hardening costs, and nothing else.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import marshal
import os
import resource
import select
import signal
import sys
import time
import traceback
import types
from typing import Any

import numpy as np

from eqforge.sandbox import cgroups, codec, protocol, runtime

CLONE_NEWNET = 0x40000000
OUTPUT_LIMIT = 4096
# Candidates run under a uid of their own (unique per zygote), so they can neither signal
# the zygote nor candidates of other zygotes, and RLIMIT_NPROC=0 stops any new process.
UID_BASE = 2_000_000_000
FALLBACK_UID = 65534
SCORER_SLACK = 10.0  # seconds the zygote waits for its scorer beyond the scoring deadline


def _isolate_network() -> str:
    """Enter a fresh network namespace (no interfaces up): no connection can be made."""
    try:
        if runtime.libc().unshare(CLONE_NEWNET) == 0:
            return "netns"
        return f"none (unshare errno {ctypes.get_errno()})"
    except (OSError, AttributeError) as exc:
        return f"none ({exc})"


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _synthetic_context(context: dict[str, Any]) -> dict[str, Any]:
    """Same column count as the real data, random values: enough to warm the fitters up."""
    rng = np.random.default_rng(0)
    ncols = len(context.get("columns", {}).get("train", [])) or 1
    return {
        "columns": {"train": [rng.uniform(0.5, 2.0, 200) for _ in range(ncols)]},
        "y_train": rng.uniform(0.5, 2.0, 200),
    }


def _rss_bytes(pid: int | str = "self") -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class ParentGone(Exception):
    """The process that feeds this one went away; stop."""


class Zygote:
    def __init__(self, setup: dict[str, Any], proto_in: int, proto_out: int) -> None:
        self.setup = setup
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.pid = os.getpid()
        self.protected = {self.pid}  # never killed as strays
        self.role = "zygote"
        self.harden = bool(setup.get("harden", True))
        allowed = setup.get("allowed_imports")
        # (the default is looked up only when needed: it imports the policy, and pydantic
        # with it, into a process whose every fork costs in proportion to its size)
        self.allowed = tuple(allowed if allowed is not None else runtime_default_imports())
        self.context = setup.get("context", {})
        self.memory_bytes = setup.get("memory_bytes")
        self.address_space_limit = bool(setup.get("address_space_limit", True))
        cg = setup.get("cgroup") or {}
        self.cgroup_procs = str(cg.get("procs", ""))
        self.oom_file = str(cg.get("oom", ""))
        self.oom_seen = cgroups.oom_kills(self.oom_file)
        self.rescore = self.harden and bool(setup.get("rescore", True))
        self.jail: str | None = None
        self.uid: int | None = None
        self.child_cpu = 0.0
        self.limits: list[tuple[int, int]] = []
        self.code_obj: types.CodeType | None = None
        self.code_imports: list[str] = []  # what the current job's program imports
        self.scorer: tuple[int, int, int] | None = None  # pid, job pipe, reply pipe
        # In the scorer: a child forked and confined ahead of time, waiting for its job.
        self.spare: _PhaseChild | None = None
        # CPU spent between jobs (forking the spare, reaping the last children), charged to
        # the next job.
        self.carry_cpu = 0.0
        self.unreaped: list[int] = []  # children killed after their result came, not yet reaped
        self.rbuf = bytearray(protocol.PIPE_BYTES)  # results are read into this, zeroed after use
        self.spare_timeout = float(setup.get("timeout", 30.0))
        if self.harden:
            runtime.set_oom_score(-1000)  # children volunteer instead (see _child)
            self.network = _isolate_network() if setup.get("isolate_network", True) else "off"
            self.jail, self.uid = self._probe_confinement()
        else:
            self.network = "off"
        if self.rescore:
            self._spawn_scorer()  # now, while this process is still small
        runtime.preload(self.allowed)
        self.runner = _load(setup["runner"])
        warmup = setup.get("warmup")
        if warmup:
            _load(warmup)(_synthetic_context(self.context))
        # Everything the zygote holds now is permanent: keep the children's garbage collector
        # from walking (and so copy-on-write duplicating) the whole inherited heap.
        gc.collect()
        gc.freeze()

    @property
    def isolation(self) -> dict[str, Any]:
        return {
            "harden": self.harden,
            "network": self.network,
            "chroot": self.jail is not None,
            "uid": self.uid,
            "cgroup": bool(self.cgroup_procs),
            "rescore": self.rescore,
        }

    def _probe_confinement(self) -> tuple[str | None, int | None]:
        """Find which of chroot and a uid change the kernel grants, in throwaway children."""
        jail = os.path.abspath("jail")
        try:
            os.mkdir(jail, 0o555)
        except FileExistsError:
            pass
        except OSError:
            jail = ""
        uid = UID_BASE + self.pid
        for j, u in ((jail, uid), (jail, FALLBACK_UID), (None, uid), (None, FALLBACK_UID), (jail, None)):
            if j == "":
                continue
            pid = os.fork()
            if pid == 0:
                try:
                    runtime.confine(j, u, self.pid)
                    os._exit(0)
                except BaseException:  # noqa: BLE001 - the probe only reports yes/no
                    os._exit(1)
            _, status = os.waitpid(pid, 0)
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                return j, u
        return None, None

    # the scorer --------------------------------------------------------------------------
    def _spawn_scorer(self) -> None:
        jobs_r, jobs_w = os.pipe()
        replies_r, replies_w = os.pipe()
        protocol.widen(replies_w)
        pid = os.fork()
        if pid == 0:  # ---- the scorer: never returns
            code = 0
            try:
                os.close(jobs_w)
                os.close(replies_r)
                self._become_scorer(jobs_r, replies_w)
                self.serve()
            except BaseException:  # noqa: BLE001 - a broken scorer makes the zygote restart
                code = 1
            finally:
                os._exit(code)
        os.close(jobs_r)
        os.close(replies_w)
        self.scorer = (pid, jobs_w, replies_r)
        self.protected.add(pid)

    def _become_scorer(self, jobs_r: int, replies_w: int) -> None:
        for fd in (self.proto_in, self.proto_out):
            os.close(fd)  # the scorer talks to its zygote only
        runtime.libc().prctl(runtime.PR_SET_PDEATHSIG, 9, 0, 0, 0)
        if os.getppid() != self.pid:
            os._exit(0)
        self.role = "scorer"
        self.protected = {self.pid, os.getpid()}
        self.pid = os.getpid()
        self.proto_in, self.proto_out = jobs_r, replies_w
        y = self.context.get("y_train")
        n_train = int(y.shape[0]) if isinstance(y, np.ndarray) else 0
        if isinstance(y, np.ndarray) and y.nbytes:
            ctypes.memset(y.ctypes.data, 0, y.nbytes)  # this process never holds the targets
        self.context = {"columns": self.context.get("columns", {}), "n_train": n_train}
        self.runner = _load("eqforge.sandbox.scoring:predict")
        runtime.preload(("numpy", "math"))
        gc.collect()
        gc.freeze()

    def _score_remotely(self, job: dict[str, Any], deadline: float) -> tuple[dict[str, Any], str]:
        """Hand a scoring job to the scorer and wait for its reply (or for a hang-up)."""
        assert self.scorer is not None
        pid, jobs_w, replies_r = self.scorer
        protocol.send(jobs_w, {"jobs": [{**job, "deadline_in": max(0.0, deadline - time.perf_counter())}]})
        poller = select.poll()
        poller.register(replies_r, select.POLLIN | select.POLLHUP | select.POLLERR)
        poller.register(self.proto_in, select.POLLHUP | select.POLLERR)
        limit = deadline + SCORER_SLACK
        while True:
            remaining = limit - time.perf_counter()
            if remaining <= 0:
                raise RuntimeError("the scorer does not answer")
            for fd, _event in poller.poll(max(1, int(remaining * 1000))):
                if fd == self.proto_in:
                    raise ParentGone
                reply = protocol.recv(replies_r)  # EOFError if the scorer died
                self.child_cpu += float(reply.pop("cpu", 0.0))
                return reply, str(reply.pop("output", ""))

    # one job ---------------------------------------------------------------------------
    def run_job(self, job: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        self.child_cpu = 0.0
        own = _own_cpu()
        try:
            if self.role == "scorer" and isinstance(job.get("compiled"), bytes):
                # The zygote compiled this code already; both are trusted, so its code
                # object travels as marshal data rather than being parsed and compiled again.
                if self._preload_imports(job.get("imports", [])):
                    self._drop_spare()  # forked before these modules were imported here
                self.code_obj = marshal.loads(job["compiled"])
            else:
                self.code_obj = runtime.compile_source(str(job.get("code", "")), guard_attributes=self.harden,
                                                       imports=self.code_imports)
            reply, output = self._run_phases(job, start)
        except runtime.CandidateFailure as exc:
            reply, output = {"status": "fail", "reason": exc.reason, "detail": exc.detail[:500]}, ""
        finally:
            self.code_obj = None
        # CPU seconds this job cost here (compiling, forking, collecting), in children, and
        # between the last job and this one.
        cpu = _own_cpu() - own + self.child_cpu + self.carry_cpu
        self.carry_cpu = 0.0
        reply.update(id=job.get("id"), seconds=time.perf_counter() - start, cpu=cpu, output=output)
        return reply

    def _run_phases(self, job: dict[str, Any], start: float) -> tuple[dict[str, Any], str]:
        timeout = float(job.get("timeout", 30.0))
        options = dict(job.get("options", {}))
        if self.role == "scorer":
            deadline = start + float(job.get("deadline_in", timeout))
            return self._phase(job, options, deadline, scoring=True)
        deadline = start + timeout
        if not self.rescore:
            return self._phase(job, options, deadline, scoring=False)
        fit_info = None
        if options.get("params") is None:
            # Predictions made here would be discarded: only the constants leave this child.
            reply, output = self._phase(job, {**options, "predict": False}, deadline, scoring=False)
            if reply.get("status") != "ok":
                return reply, output
            params = _checked_params(reply.get("payload"))
            if params is None:
                return {"status": "fail", "reason": "crash", "detail": "malformed fit result"}, output
            fit_info = _checked_fit(reply["payload"].get("fit"))
            options = {"n_params": options.get("n_params", len(params)), "params": params}
        # The scoring child always gets a fair share of time, even after a long fit.
        floor = time.perf_counter() + max(1.0, 0.25 * timeout)
        scoring_job = {"compiled": marshal.dumps(self.code_obj), "imports": list(self.code_imports),
                       "entry": job.get("entry", "equation"), "options": options, "timeout": timeout}
        reply, output = self._score_remotely(scoring_job, max(deadline, floor))
        if reply.get("status") == "ok":
            tail = reply.pop("tail", None)
            if not isinstance(tail, bytearray):
                return {"status": "fail", "reason": "crash", "detail": "malformed scoring result"}, output
            # What leaves the sandbox: the checked params, sanitised fit information and the
            # scoring child's result as it came; the evaluator's process decodes and checks
            # its predictions (see ``SandboxPool``).
            reply["payload"] = {
                "params": options["params"],
                "scoring_result": bytes(tail),
                "fit": fit_info if fit_info is not None else {"method": "given", "nfev": 0, "starts": 0},
            }
        return reply, output

    def _preload_imports(self, names: Any) -> bool:
        """In the scorer, import (trusted, before forking) the allowed modules a job names.

        Returns whether anything new was imported.
        """
        gate = runtime.ModuleGate(self.allowed)
        before = len(sys.modules)
        for name in names if isinstance(names, list) else []:
            if isinstance(name, str) and name not in sys.modules and gate(name):
                try:
                    importlib.import_module(name)
                except Exception:  # noqa: BLE001 - not a module, or broken: the child will say
                    continue
        if len(sys.modules) == before:
            return False
        gc.freeze()  # whatever was imported is permanent too
        return True

    def _phase(
        self, job: dict[str, Any], options: dict[str, Any], deadline: float, scoring: bool
    ) -> tuple[dict[str, Any], str]:
        seconds = max(0.0, deadline - time.perf_counter())
        spare = self.spare if scoring and self.role == "scorer" else None
        self.spare = None
        if spare is not None and seconds > self.spare_timeout:
            spare.discard(self)  # its CPU-time limit is too tight for this job
            spare = None
        if spare is None:
            spare = self._fork(job, options, seconds, scoring)
        if self.oom_file:
            self.oom_seen = cgroups.oom_kills(self.oom_file)  # the scorer shares the counter
        if spare.job_w is not None:
            try:
                compiled = job.get("compiled") or (self.code_obj and marshal.dumps(self.code_obj))
                protocol.send(spare.job_w, {"code": compiled,
                                            "entry": job.get("entry", "equation"), "options": options})
            except OSError:
                pass  # the child is gone: collecting it says how
            os.close(spare.job_w)
        result, output, status, timed_out = self._collect(spare.pid, spare.res_r, spare.out_r, deadline)
        msg = self._interpret(result, status, timed_out)
        if isinstance(result, memoryview) and "tail" not in msg:
            protocol.zero(result)  # the scorer zeroes a forwarded result once it is sent
        return msg, output

    def _fork(self, job: dict[str, Any] | None, options: dict[str, Any], seconds: float, scoring: bool) -> _PhaseChild:
        """Fork the child of one phase; with ``job`` None it waits for its job on a pipe."""
        res_r, res_w = os.pipe()
        out_r, out_w = os.pipe()
        job_r, job_w = os.pipe() if job is None else (None, None)
        protocol.widen(res_w)
        memory = self.memory_bytes if self.address_space_limit else None
        self.limits = runtime.limit_plan(memory, int(seconds) + 2) if self.harden else []
        pid = os.fork()
        if pid == 0:  # ---- child: never returns
            try:
                for fd in (res_r, out_r, job_w):
                    if fd is not None:
                        os.close(fd)
                self._child(job, options, res_w, out_w, scoring, job_r)
            finally:
                os._exit(70)
        for fd in (res_w, out_w, job_r):
            if fd is not None:
                os.close(fd)
        return _PhaseChild(pid, res_r, out_r, job_w)

    def _fork_spare(self) -> None:
        """In the scorer, between jobs: fork and confine the next scoring child now.

        The zygote's next fit runs meanwhile, so forking, confining and the child's start
        are off the path of the next job's result. The child runs nothing untrusted until
        its job arrives.
        """
        if self.spare is not None or not self.harden:
            return
        own = _own_cpu()
        self.spare = self._fork(None, {}, self.spare_timeout, True)
        self.carry_cpu += _own_cpu() - own

    def _reap(self) -> None:
        """Reap the children killed once their results came; their CPU goes to the next job."""
        while self.unreaped:
            _, _, usage = os.wait4(self.unreaped.pop(), 0)
            self.carry_cpu += usage.ru_utime + usage.ru_stime

    def _drop_spare(self) -> None:
        if self.spare is not None:
            self.spare.discard(self)
            self.spare = None

    def _child(
        self, job: dict[str, Any] | None, options: dict[str, Any], res_w: int, out_w: int, scoring: bool,
        job_r: int | None = None,
    ) -> None:
        os.setpgid(0, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        if self.harden:
            # Nothing but stdin (/dev/null), stdout/stderr (the capture pipe), the result
            # pipe and (for a spare) its job pipe stays open: not the protocol pipes, not
            # anything the zygote holds.
            low = 3
            for fd in sorted(f for f in (res_w, job_r) if f is not None):
                os.closerange(low, fd)
                low = fd + 1
            os.closerange(low, 1 << 20)
        else:
            for fd in (self.proto_in, self.proto_out, out_w):
                try:
                    os.close(fd)
                except OSError:
                    pass
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        arm = None
        if self.harden:
            if scoring and self.role != "scorer":
                os._exit(73)  # scoring children come from the scorer, which has no targets
            runtime.set_oom_score(1000)
            runtime.set_limits(self.limits)
            try:
                runtime.confine(self.jail, self.uid, self.pid)
            except OSError:
                os._exit(72)
            arm = runtime.install_audit_hook()
        namespace = None
        if job_r is not None:
            # A spare: wait (confined, hook installed but not armed) for the scorer to send
            # the job. Trusted data from the trusted scorer; no candidate code has run here.
            namespace = runtime.candidate_namespace(self.allowed, arm)
            try:
                job = protocol.recv(job_r)
            except (EOFError, OSError):
                os._exit(0)  # not needed after all
            os.close(job_r)
            options = dict(job.get("options", {}))
            self.code_obj = marshal.loads(job["code"]) if job.get("code") else None
        assert job is not None
        try:
            assert self.code_obj is not None
            fn = runtime.load_candidate(self.code_obj, str(job.get("entry", "equation")), self.allowed, arm,
                                        namespace)
            payload = self.runner(fn, self.context, options)
            msg: dict[str, Any] = {"status": "ok", "payload": payload}
        except runtime.CandidateFailure as exc:
            msg = {"status": "fail", "reason": exc.reason, "detail": exc.detail[:500]}
        except MemoryError:
            msg = {"status": "fail", "reason": "memory", "detail": "memory limit reached"}
        except RecursionError:
            msg = {"status": "fail", "reason": "exception:RecursionError", "detail": "recursion too deep"}
        except runtime.SandboxViolation as exc:
            msg = {"status": "fail", "reason": "policy:runtime", "detail": str(exc)[:500]}
        except BaseException as exc:  # noqa: BLE001 - anything a candidate raises is a result
            msg = {
                "status": "fail",
                "reason": f"exception:{type(exc).__name__}",
                "detail": str(exc)[:500],
            }
        violations = getattr(arm, "violations", None)
        if violations:
            # The candidate tried something forbidden and swallowed the refusal.
            msg = {"status": "fail", "reason": "policy:runtime",
                   "detail": f"blocked: {', '.join(dict.fromkeys(violations))}"[:500]}
        if arm is not None:
            arm(False)
        try:
            data = codec.encode(msg)
        except (TypeError, ValueError, MemoryError, RecursionError) as exc:
            data = codec.encode({"status": "fail", "reason": "crash", "detail": f"encode: {exc}"})
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        protocol.write_all(res_w, data)
        # End of file on both pipes tells the parent the result is complete, before this
        # process has been torn down (milliseconds for a fork of a large process).
        for fd in (res_w, 1, 2):
            try:
                os.close(fd)
            except OSError:
                pass
        os._exit(0)

    def _collect(
        self, pid: int, res_r: int, out_r: int, deadline: float
    ) -> tuple[memoryview | bytes | None, str, int, bool]:
        buf = self.rbuf  # read into directly: no chunks left on the heap, nothing to allocate
        size = 0
        oversized = False
        output = bytearray()
        open_fds = {res_r, out_r}
        timed_out = False
        parent_gone = False
        poller = select.poll()
        for fd in open_fds:
            poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        # Hang-up on the protocol pipe means the feeding process died: stop at once.
        poller.register(self.proto_in, select.POLLHUP | select.POLLERR)
        while open_fds:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                timed_out = True
                break
            for fd, _event in poller.poll(max(1, int(remaining * 1000))):
                if fd == self.proto_in:
                    parent_gone = True
                    continue
                if fd == res_r:
                    if size == len(buf) and not oversized:
                        if size >= codec.MAX_MESSAGE_BYTES:
                            oversized = True  # keep draining, stop keeping
                        else:
                            grown = bytearray(min(2 * len(buf), codec.MAX_MESSAGE_BYTES))
                            grown[:size] = buf
                            protocol.zero(buf)
                            self.rbuf = buf = grown
                    k = os.readv(fd, [memoryview(buf)[size:]]) if not oversized else len(os.read(fd, 1 << 20))
                    if not k:
                        open_fds.discard(fd)
                        poller.unregister(fd)
                    elif not oversized:
                        size += k
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    open_fds.discard(fd)
                    poller.unregister(fd)
                elif len(output) < OUTPUT_LIMIT:
                    output.extend(chunk[: OUTPUT_LIMIT - len(output)])
            if parent_gone:
                break
        # Kill the child's whole process group (anything it started) and reap it. With its
        # whole result in hand its exit status is not needed, so the reaping waits until the
        # reply is sent (the kernel tears the child down meanwhile).
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        status = 0
        if size and not open_fds and not timed_out and not parent_gone:
            self.unreaped.append(pid)
        else:
            _, status, usage = os.wait4(pid, 0)
            self.child_cpu += usage.ru_utime + usage.ru_stime
        os.close(res_r)
        os.close(out_r)
        self._kill_strays()
        if parent_gone:
            raise ParentGone
        if oversized:
            protocol.zero(buf)
            data: memoryview | bytes | None = b"\0"  # reported as a malformed result
        else:
            data = memoryview(buf)[:size] if size else None
        return data, output.decode("utf-8", "replace"), status, timed_out

    def _kill_strays(self) -> None:
        """Kill anything in this zygote's cgroup but the zygote and scorer (whatever its group).

        The zygote leaves the scorer's children alone: between jobs that is the scorer's
        spare (trusted, waiting), and the scorer kills its own strays.
        """
        if not self.cgroup_procs:
            return
        try:
            with open(self.cgroup_procs) as fh:
                pids = [int(p) for p in fh.read().split()]
        except (OSError, ValueError):
            return
        scorer = self.scorer[0] if self.scorer else None
        for p in pids:
            if p not in self.protected and (scorer is None or _parent_pid(p) != scorer):
                try:
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def _out_of_memory(self) -> bool | None:
        """Whether the kernel OOM-killed a member since the phase began (None: cannot tell)."""
        if not self.oom_file:
            return None
        count = cgroups.oom_kills(self.oom_file)
        killed = count > self.oom_seen
        self.oom_seen = count
        return killed

    def _interpret(self, data: memoryview | bytes | None, status: int, timed_out: bool) -> dict[str, Any]:
        oom = self._out_of_memory() if os.WIFSIGNALED(status) else None
        if data:
            try:
                # The scorer forwards a successful result as it came (the evaluator decodes
                # it): only its header is read here.
                forward = self.role == "scorer"
                msg = codec.decode(data, arrays=not forward)
                if isinstance(msg, dict) and msg.get("status") == "ok" and forward:
                    return {"status": "ok", "tail": data}
                if isinstance(msg, dict) and msg.get("status") in ("ok", "fail"):
                    return msg
            except (ValueError, UnicodeDecodeError, RecursionError):
                pass
            return {"status": "fail", "reason": "crash", "detail": "malformed result"}
        if timed_out:
            return {"status": "fail", "reason": "timeout", "detail": "wall-clock limit reached"}
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if oom:
                return {"status": "fail", "reason": "memory", "detail": "killed by the OOM killer"}
            if sig == signal.SIGXCPU:
                return {"status": "fail", "reason": "timeout", "detail": "CPU-time limit reached"}
            if sig == signal.SIGKILL and oom is None:
                # No cgroup to ask: an unexplained SIGKILL is most likely the OOM killer.
                return {"status": "fail", "reason": "memory", "detail": "killed (out of memory)"}
            return {"status": "fail", "reason": "crash", "detail": f"killed by signal {sig}"}
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        return {"status": "fail", "reason": "crash", "detail": f"exited with status {code}"}

    # main loop -------------------------------------------------------------------------
    def serve(self) -> None:
        if self.role == "zygote":
            rss = _rss_bytes() + (_rss_bytes(self.scorer[0]) if self.scorer else 0)
            protocol.send(self.proto_out, {"ready": True, "pid": self.pid, "network": self.network,
                                           "isolation": self.isolation, "rss": rss,
                                           "scorer": self.scorer[0] if self.scorer else None})
        while True:
            try:
                msg = protocol.recv(self.proto_in)
            except (EOFError, OSError):
                return
            if msg.get("stop"):
                return
            try:
                for job in msg["jobs"]:
                    reply = self.run_job(job)
                    tail = reply.pop("tail", None)
                    protocol.send(self.proto_out, reply, tail)
                    if tail is not None:
                        protocol.zero(tail)
                    self._reap()
                if self.role == "scorer":
                    self.spare_timeout = max(float(job.get("timeout", self.spare_timeout)), 1.0)
                    self._fork_spare()
            except (ParentGone, OSError, EOFError):
                return


def _own_cpu() -> float:
    """CPU seconds (user + system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    try:  # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        return int(stat[stat.rindex(b")") + 2:].split()[1])
    except (ValueError, IndexError):
        return None


class _PhaseChild:
    """A forked phase child: its pid, result and output pipes, and (while it waits) its job pipe."""

    def __init__(self, pid: int, res_r: int, out_r: int, job_w: int | None) -> None:
        self.pid, self.res_r, self.out_r, self.job_w = pid, res_r, out_r, job_w

    def discard(self, owner: Zygote) -> None:
        """Kill and reap an unused spare, charging its CPU time to the current job."""
        for fd in (self.job_w, self.res_r, self.out_r):
            if fd is not None:
                os.close(fd)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _, _, usage = os.wait4(self.pid, 0)
        owner.child_cpu += usage.ru_utime + usage.ru_stime


def _checked_params(payload: Any) -> list[float] | None:
    """The fit child's constants, if they are a short vector of numbers; else None."""
    if not isinstance(payload, dict):
        return None
    try:
        arr = np.asarray(payload.get("params"), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 1 or arr.size > 1000:
        return None
    return [float(v) for v in arr]


def _checked_fit(fit: Any) -> dict[str, Any]:
    """Fit information from a child, reduced to known keys with small, plain values."""
    if not isinstance(fit, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(fit.get("method"), str):
        out["method"] = fit["method"][:64]
    for key in ("nfev", "starts"):
        if type(fit.get(key)) is int:
            out[key] = fit[key]
    if type(fit.get("loss")) in (int, float):
        out["loss"] = float(fit["loss"])
    indices = fit.get("indices")
    if isinstance(indices, list) and len(indices) <= 1000 and all(type(i) is int for i in indices):
        out["indices"] = indices
    notes = fit.get("notes")
    if isinstance(notes, list):
        out["notes"] = [n[:200] for n in notes[:20] if isinstance(n, str)]
    return out


def runtime_default_imports() -> tuple[str, ...]:
    from eqforge.sandbox.policy import DEFAULT_IMPORTS

    return DEFAULT_IMPORTS


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    try:
        setup = protocol.recv(proto_in, scrub=True)
        zygote = Zygote(setup, proto_in, proto_out)
    except Exception:  # noqa: BLE001 - report any setup failure to the parent, then exit
        protocol.send(proto_out, {"ready": False, "error": traceback.format_exc(limit=3)})
        return
    zygote.serve()


if __name__ == "__main__":
    main()
