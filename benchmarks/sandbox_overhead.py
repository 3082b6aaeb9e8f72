"""What the sandbox costs honest programs, measured in one process.

Every ``valid`` program of ``programs.jsonl`` is evaluated in three modes:

* ``direct`` — no sandbox at all: the trusted fitting driver calls the program in this very
  process (what an unsandboxed tool does; never do this with model output);
* ``off`` — the sandbox's process structure without its walls (``harden=False``): the
  optimiser in the zygote, the candidate in a process of its own answering one round trip
  per batch of parameter vectors, a second fresh process for the scored predictions — but
  no namespaces, chroot, uid change, seccomp, rlimits, cgroups, audit hook or guard;
* ``on`` — the default: all of it;
* ``unchecked`` — the default on a copy of the problem that opts out of the pointwise
  contract: ``on`` against it is the price of enforcing that contract.

``off`` against ``direct`` is the price of keeping targets out of every process that runs
candidate code (round trips and the two processes); ``on`` against ``off`` is the price of
the walls. The pools of a problem are alive at once and each program is evaluated by each
mode in turn, in rotating order, for several rounds: on a shared machine the load changes
from second to second, and pairing single programs lets every mode see the same load. Pool
start-up is excluded; the figure is the cost per program once the pool is warm.

Reported per mode: programs/s and ms/program of wall time (one worker), and CPU ms/program
(sandbox modes: zygote and candidate processes, from ``rusage``; ``direct``: this process),
which moves less with the load of other processes. Scores must agree within fitting
tolerance. Writes ``benchmarks/results/sandbox_overhead.json``.

    python benchmarks/sandbox_overhead.py [--rounds 5] [--workers 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

import eqforge.evaluator.evaluate as evaluate_module
from eqforge.config import EvaluatorConfig
from eqforge.evaluator.evaluate import Evaluator
from eqforge.problems import load_problem
from eqforge.sandbox.pool import SandboxPool

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EQFORGE_SHARED", REPO.parent / "shared"))
RESULTS = REPO / "benchmarks" / "results" / "sandbox_overhead.json"
RTOL, ATOL = 1e-6, 1e-12  # scores may differ only by what the fitter's tolerance allows
# A generous timeout: the fitter's time budget (half of it) must never cut a fit short here,
# or the two modes could stop at different points and their scores differ for that reason.
TIMEOUT = 300.0
MODES = ("direct", "off", "on", "unchecked")
LABELS = {"direct": "no sandbox (in-process)", "off": "sandbox structure, no walls", "on": "hardened (default)",
          "unchecked": "hardened, pointwise check off"}
SETUPS: dict[str, dict[str, Any]] = {"off": {"harden": False}, "on": {}, "unchecked": {}}
# "unchecked" is the default on a copy of the problem that opts out of the pointwise contract
# (``pointwise = false``: stored row order, no probes, no second-process comparison): "on"
# against it is what enforcing the contract costs.


class _Direct:
    """The trusted driver with the program called in this process: the no-sandbox baseline."""

    def __init__(self, problem: Any, cpu: list[float]) -> None:
        from eqforge.evaluator import runner
        from eqforge.evaluator.in_sandbox import predict
        from eqforge.evaluator.params import param_usage
        from eqforge.sandbox.messages import Call, Job
        from eqforge.sandbox.runtime import CandidateFailure

        self.problem, self.cpu = problem, cpu
        self.runner, self.predict, self.param_usage = runner, predict, param_usage
        self.Call, self.Job, self.CandidateFailure = Call, Job, CandidateFailure
        self.inputs = {s: [np.ascontiguousarray(c) for c in sp.X.T] for s, sp in problem.splits.items()}
        self.rows = {s: int(sp.X.shape[0]) for s, sp in problem.splits.items()}
        X = problem.train.X
        extremes = sorted({int(i) for c in X.T for i in (np.argmin(c), np.argmax(c))})
        self.trusted = {"y_train": problem.train.y, "extremes": np.array(extremes, float)}

    def open(self, grace: float = 0.0) -> Any:
        host = self

        class Session:
            state: dict[str, Any] = {}

            def call(self, op, args=None, arrays=None, expect=None, refusable=False):  # noqa: ANN001, ANN202
                reply = host.predict.serve(host.fn, host.inputs, host.Call(op, dict(args or {}), dict(arrays or {})),
                                           self.state)
                if not reply.ok and not (refusable and reply.reason == "refused"):
                    raise host.CandidateFailure(reply.reason, reply.detail)
                return reply

            def close(self) -> int:
                return 0

        return Session()

    def evaluate(self, code: str) -> float | None:
        c0 = time.process_time()
        ns: dict[str, Any] = {"np": np}
        exec(code, ns)  # noqa: S102 - the honest corpus, trusted for this baseline only
        self.fn = ns["equation"]
        usage = self.param_usage(code)
        job = self.Job(id=0, program=code, entry="equation", runner="", driver="", timeout=TIMEOUT,
                       options={"n_params": 10, "indices": list(usage.fit_indices(10)), "subsample": 300,
                                "time_budget": TIMEOUT / 2})
        try:
            out = self.runner.fit_job(self, job)
            score = -float(np.mean((out["predictions"]["train"] - self.problem.train.y) ** 2))
        except self.CandidateFailure:
            score = None
        self.cpu.append(time.process_time() - c0)
        return score


def _pool_factory(extra: dict[str, Any], cpu: list[float]) -> type[SandboxPool]:
    class Pool(SandboxPool):
        """The real pool with the benchmark's setup flags; records each job's CPU time."""

        def __init__(self, setup: Any, trusted: Any = None, workers: int = 1, batch: int = 4) -> None:
            super().__init__(dataclasses.replace(setup, **extra), trusted, workers=workers, batch=batch)

        def submit(self, job: Any) -> Future:
            fut = super().submit(job)
            fut.add_done_callback(lambda f: cpu.append(float(f.result().cpu)))
            return fut

    return Pool


def _evaluator(problem: Any, extra: dict[str, Any], workers: int, cpu: list[float], pointwise: bool = True,
               ) -> Evaluator:
    """An Evaluator whose pool carries ``extra`` setup flags; its zygotes are started here."""
    if not pointwise:
        problem = type(problem)(problem.spec.model_copy(update={"pointwise": False}), problem.splits)
    evaluate_module.SandboxPool = _pool_factory(extra, cpu)  # type: ignore[misc]
    try:
        ev = Evaluator(problem, EvaluatorConfig(workers=workers, timeout=TIMEOUT))
        _ = ev.pool  # start the zygotes outside the timed region
    finally:
        evaluate_module.SandboxPool = SandboxPool  # type: ignore[misc]
    return ev


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--busy-workers", type=int, default=os.cpu_count() or 1,
                    help="workers for the all-cores pass (default: one per core, as in a run)")
    args = ap.parse_args(argv)

    corpus = SHARED / "corpus" / "programs.jsonl"
    data = SHARED / "data" / "llmsr"
    if not corpus.exists() or not data.exists():
        print(f"test material not found under {SHARED}", file=sys.stderr)
        return 2
    programs = [json.loads(line) for line in corpus.read_text().splitlines() if line.strip()]
    programs = [p for p in programs if p["kind"] == "valid"]
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for p in programs:
        by_problem.setdefault(p["problem"], []).append(p)

    wall: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    cpu: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    scores: dict[str, dict[str, Any]] = {m: {} for m in MODES}
    errors: dict[str, dict[str, Any]] = {m: {} for m in MODES}
    busy: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}  # problem -> pass wall times
    for name, items in sorted(by_problem.items()):
        problem = load_problem(name, data=data / name)
        job_cpu: dict[str, list[float]] = {m: [] for m in MODES}
        evs: dict[str, Any] = {m: _evaluator(problem, SETUPS[m], args.workers, job_cpu[m], m != "unchecked")
                               for m in SETUPS}
        direct = _Direct(problem, job_cpu["direct"])
        try:
            for r in range(args.rounds):
                for i, p in enumerate(items):
                    shift = (r + i) % len(MODES)  # rotate the order: no mode always goes first
                    for mode in MODES[shift:] + MODES[:shift]:
                        start = time.perf_counter()
                        if mode == "direct":
                            score = direct.evaluate(p["code"])
                            error = None if score is not None else "failed"
                        else:
                            res = evs[mode].submit(p["code"]).result()
                            score, error = res.score, res.error
                        wall[mode].setdefault(p["id"], []).append(time.perf_counter() - start)
                        cpu[mode].setdefault(p["id"], []).append(job_cpu[mode][-1])
                        scores[mode][p["id"]] = score
                        errors[mode][p["id"]] = error
        finally:
            for ev in evs.values():
                ev.close()
        # All cores busy, as in a run with its default of one worker per core: the whole
        # problem's programs at once, mode after mode in rotating order, each round.
        evs = {m: _evaluator(problem, SETUPS[m], args.busy_workers, [], m != "unchecked") for m in SETUPS}
        sandboxed = tuple(SETUPS)
        try:
            for r in range(args.rounds):
                for mode in sandboxed[r % len(sandboxed):] + sandboxed[: r % len(sandboxed)]:
                    start = time.perf_counter()
                    for fut in [evs[mode].submit(p["code"]) for p in items]:
                        fut.result()
                    busy[mode].setdefault(name, []).append(time.perf_counter() - start)
        finally:
            for ev in evs.values():
                ev.close()
        print(f"{name}: {len(items)} programs x {args.rounds} rounds", flush=True)

    n = len(programs)
    # Per program the median over rounds, per mode the sum over programs.
    total = {m: sum(statistics.median(v) for v in wall[m].values()) for m in MODES}
    total_cpu = {m: sum(statistics.median(v) for v in cpu[m].values()) for m in MODES}
    rate = {m: n / total[m] for m in MODES}
    ratio = {m: total[m] / total["off"] for m in MODES}
    cpu_ratio = {m: total_cpu[m] / total_cpu["off"] for m in MODES}
    per_program = {
        m: statistics.median(
            statistics.median(wall[m][pid]) / statistics.median(wall["off"][pid]) for pid in wall["off"]
        )
        for m in MODES
    }

    mismatches: list[dict[str, Any]] = []
    max_rel = 0.0
    for mode in ("direct", "on"):
        for pid in scores["off"]:
            a, b = scores["off"][pid], scores[mode][pid]
            if errors["off"][pid] != errors[mode][pid] or (a is None) != (b is None):
                mismatches.append({"id": pid, "mode": mode, "off": errors["off"][pid], mode: errors[mode][pid]})
                continue
            if a is None:
                continue
            diff = abs(a - b)
            if abs(a) > ATOL:
                max_rel = max(max_rel, diff / abs(a))
            if diff > ATOL + RTOL * abs(a):
                mismatches.append({"id": pid, "mode": mode, "off": a, mode: b})
    failed = sorted(pid for pid, e in errors["on"].items() if e and all(errors[m][pid] for m in SETUPS))

    print()
    print(f"{'mode':30s} {'programs/s':>10s} {'ms/program':>10s} {'CPU ms/prog':>11s} {'wall ratio':>10s} "
          f"{'CPU ratio':>9s} {'median':>7s}")
    for m in MODES:
        print(f"{LABELS[m]:30s} {rate[m]:10.2f} {1000 * total[m] / n:10.1f} {1000 * total_cpu[m] / n:11.1f} "
              f"{ratio[m]:10.3f} {cpu_ratio[m]:9.3f} {per_program[m]:7.3f}")
    print(f"the walls (hardened against the structure without them): wall {100 * (ratio['on'] - 1):+.1f}%, "
          f"CPU {100 * (cpu_ratio['on'] - 1):+.1f}% (median over programs {100 * (per_program['on'] - 1):+.1f}%)")
    pw_wall, pw_cpu = ratio["on"] / ratio["unchecked"] - 1, cpu_ratio["on"] / cpu_ratio["unchecked"] - 1
    print(f"the pointwise contract (hidden orders, probes, two processes agree): wall {100 * pw_wall:+.1f}%, "
          f"CPU {100 * pw_cpu:+.1f}%")
    print(f"the whole sandbox against no sandbox: wall {100 * (ratio['on'] / ratio['direct'] - 1):+.1f}%, "
          f"CPU {100 * (cpu_ratio['on'] / cpu_ratio['direct'] - 1):+.1f}%")
    busy_total = {m: sum(statistics.median(v) for v in busy[m].values()) for m in SETUPS}
    busy_ratio = {m: busy_total[m] / busy_total["off"] for m in SETUPS}
    print(f"all cores busy ({args.busy_workers} workers, each problem's programs at once): "
          + ", ".join(f"{LABELS[m]} {n / busy_total[m]:.2f} programs/s" for m in SETUPS)
          + f"; hardening overhead {100 * (busy_ratio['on'] - 1):+.1f}%")
    print(f"scores equal within rtol={RTOL:g}, atol={ATOL:g}: {not mismatches} "
          f"(max relative difference {max_rel:.1e}); failing in every mode: {failed or 'none'}")

    report = {
        "programs": n,
        "rounds": args.rounds,
        "workers": args.workers,
        "modes": LABELS,
        "programs_per_second": rate,
        "ms_per_program": {m: 1000 * total[m] / n for m in MODES},
        "cpu_ms_per_program": {m: 1000 * total_cpu[m] / n for m in MODES},
        "wall_ratio": ratio,
        "cpu_ratio": cpu_ratio,
        "median_per_program_wall_ratio": per_program,
        "overhead_percent": 100 * (ratio["on"] - 1),
        "cpu_overhead_percent": 100 * (cpu_ratio["on"] - 1),
        "pointwise_check_percent": 100 * (ratio["on"] / ratio["unchecked"] - 1),
        "pointwise_check_cpu_percent": 100 * (cpu_ratio["on"] / cpu_ratio["unchecked"] - 1),
        "sandbox_vs_direct_percent": 100 * (ratio["on"] / ratio["direct"] - 1),
        "sandbox_vs_direct_cpu_percent": 100 * (cpu_ratio["on"] / cpu_ratio["direct"] - 1),
        "busy_workers": args.busy_workers,
        "busy_programs_per_second": {m: n / busy_total[m] for m in SETUPS},
        "busy_ratio": busy_ratio,
        "busy_overhead_percent": 100 * (busy_ratio["on"] - 1),
        "scores_equal": not mismatches,
        "max_relative_score_difference": max_rel,
        "mismatches": mismatches,
        "failed": failed,
        "load_average": os.getloadavg(),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if not mismatches else 1


if __name__ == "__main__":
    raise SystemExit(main())
