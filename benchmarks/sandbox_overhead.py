"""What the sandbox hardening costs honest programs, measured in one process.

Every ``valid`` program of ``programs.jsonl`` is evaluated through the real ``Evaluator``
in three modes: hardening off (``harden=False``: the same zygote, the same fork per
candidate, the same fitter and codec, but no cgroups, rlimits, chroot, uid change, network
namespace, audit hook, attribute guard or separate scoring process), fully hardened (the
default), and hardened without the separate scoring process (``rescore=False``), which
splits the cost between the scoring process and everything else. The pools of a problem
are alive at once and each program is evaluated by each mode in turn, in rotating order,
for several rounds: on a shared machine the load changes from second to second, and
pairing at the level of single programs lets every mode see the same load. Pool start-up
is excluded; the figure is the cost per program once the pool is warm.

Reported per mode: programs/s and ms/program of wall time (submit to result, one worker),
and CPU ms/program spent in the sandbox (zygote, scorer and children, from ``rusage``),
which moves less with the load of other processes. The ratio to the baseline is the
overhead. Scores must agree within fitting tolerance. Writes
``benchmarks/results/sandbox_overhead.json``.

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
MODES = ("off", "on")
LABELS = {"off": "baseline", "on": "hardened"}
SETUPS: dict[str, dict[str, Any]] = {"off": {"harden": False}, "on": {}}


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


def _evaluator(problem: Any, extra: dict[str, Any], workers: int, cpu: list[float]) -> Evaluator:
    """An Evaluator whose pool carries ``extra`` setup flags; its zygotes are started here."""
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
        evs = {m: _evaluator(problem, SETUPS[m], args.workers, job_cpu[m]) for m in MODES}
        try:
            for r in range(args.rounds):
                for i, p in enumerate(items):
                    shift = (r + i) % len(MODES)  # rotate the order: no mode always goes first
                    for mode in MODES[shift:] + MODES[:shift]:
                        start = time.perf_counter()
                        res = evs[mode].submit(p["code"]).result()
                        wall[mode].setdefault(p["id"], []).append(time.perf_counter() - start)
                        cpu[mode].setdefault(p["id"], []).append(job_cpu[mode][-1])
                        scores[mode][p["id"]] = res.score
                        errors[mode][p["id"]] = res.error
        finally:
            for ev in evs.values():
                ev.close()
        # All cores busy, as in a run with its default of one worker per core: the whole
        # problem's programs at once, mode after mode in rotating order, each round.
        evs = {m: _evaluator(problem, SETUPS[m], args.busy_workers, []) for m in MODES}
        try:
            for r in range(args.rounds):
                for mode in MODES[r % len(MODES):] + MODES[: r % len(MODES)]:
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
    for mode in MODES[1:]:
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
    failed = sorted(pid for pid, e in errors["on"].items() if e and all(errors[m][pid] for m in MODES))

    print()
    print(f"{'mode':30s} {'programs/s':>10s} {'ms/program':>10s} {'CPU ms/prog':>11s} {'wall ratio':>10s} "
          f"{'CPU ratio':>9s} {'median':>7s}")
    for m in MODES:
        print(f"{LABELS[m]:30s} {rate[m]:10.2f} {1000 * total[m] / n:10.1f} {1000 * total_cpu[m] / n:11.1f} "
              f"{ratio[m]:10.3f} {cpu_ratio[m]:9.3f} {per_program[m]:7.3f}")
    print(f"hardening overhead per program: wall {100 * (ratio['on'] - 1):+.1f}%, "
          f"CPU {100 * (cpu_ratio['on'] - 1):+.1f}% (median over programs {100 * (per_program['on'] - 1):+.1f}%)")
    busy_total = {m: sum(statistics.median(v) for v in busy[m].values()) for m in MODES}
    busy_ratio = {m: busy_total[m] / busy_total["off"] for m in MODES}
    print(f"all cores busy ({args.busy_workers} workers, each problem's programs at once): "
          + ", ".join(f"{LABELS[m]} {n / busy_total[m]:.2f} programs/s" for m in MODES)
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
        "busy_workers": args.busy_workers,
        "busy_programs_per_second": {m: n / busy_total[m] for m in MODES},
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
