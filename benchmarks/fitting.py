"""eqforge's evaluator against LLM-SR's evaluation path, on the same programs in the same run.

Every program of the corpus (``programs.jsonl``: valid ones, slow ones with Python loops
over the rows, and ones that fail to parse, raise or return NaN) is evaluated by

(a) **LLM-SR's path**, re-implemented faithfully: a fresh ``python`` process per candidate
    (it imports numpy and scipy, receives the training data, execs the program and runs
    LLM-SR's ``evaluate``: ``minimize(lambda p: np.mean((equation(*X.T, p) - y) ** 2),
    [1.0] * 10, method='BFGS')``), killed after 30 s; its loss is ``result.fun``, and a
    NaN/inf loss, an exception or a timeout is a failure, as in LLM-SR;
(b) **eqforge's** ``Evaluator`` with its default fitter, through the real sandbox pool;
    pool start-up (once per run in practice) is timed separately and not charged to the
    programs. Its loss is the MSE of the returned predictions on the full training split.

Both paths run single-threaded BLAS in every worker, and each runs the whole corpus as
one stream with one worker and with all cores (``--workers``): at most that many programs
in flight at any time, as in a discovery run that keeps its workers busy. The LLM-SR
path's workers are concurrent subprocesses; eqforge has one evaluator (a pool of that
many zygotes) per problem, all started before the clock starts. A pass of eqforge over
the corpus takes seconds, so it makes ``--repeats`` passes per worker count (alternating
the counts) and its wall time is their median; per-program figures come from the first.

Printed: programs/s of each and their ratio, median and p90 seconds per program,
eqforge's scaling from one worker to all cores, and the fitted training loss of each
program under both (strictly better / equal within 1e-9 relative / worse, and how many
are at least 10x lower) over the honest programs (``valid`` and ``slow``) that LLM-SR's
path fits; honest programs eqforge loses to a timeout that LLM-SR's path fits are listed.
Also printed: eqforge's round trips to candidate processes (how many LLM-SR's BFGS start takes) and
their CPU per program, and the CPU seconds each path spends with one worker (user + system of the
LLM-SR processes; what the sandbox reports per job for eqforge), which moves less than
wall time with the load of other processes on a shared machine, and how much of eqforge's
time in the sandbox is fitting. Everything goes to ``--json`` too.

    python benchmarks/fitting.py [--corpus PATH] [--data DIR] [--workers N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import eqforge.evaluator.evaluate as evaluate_module
from eqforge.config import EvaluatorConfig
from eqforge.evaluator.evaluate import Evaluator, default_workers
from eqforge.problems import load_problem
from eqforge.sandbox.pool import SandboxPool

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EQFORGE_SHARED", REPO.parent / "shared"))
HONEST = ("valid", "slow")
EQUAL_RTOL = 1e-6  # "no higher within 1e-6 relative" (issue #17)
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# What LLM-SR runs for one candidate, in a process of its own: the specification's
# ``evaluate`` (llm-sr/specs/specification_*_numpy.txt) around the candidate's code.
LLMSR_CHILD = r'''
import json, sys
import numpy as np
from scipy.optimize import minimize

MAX_NPARAMS = 10
data = {"inputs": np.load(sys.argv[1]), "outputs": np.load(sys.argv[2])}
program = sys.stdin.read()

def evaluate(data: dict) -> float:
    inputs, outputs = data["inputs"], data["outputs"]
    X = inputs
    def loss(params):
        y_pred = equation(*X.T, params)
        return np.mean((y_pred - outputs) ** 2)
    loss_partial = lambda params: loss(params)
    result = minimize(loss_partial, [1.0] * MAX_NPARAMS, method="BFGS")
    loss = result.fun
    if np.isnan(loss) or np.isinf(loss):
        return None, result.x
    return -loss, result.x

try:
    exec(program, globals())
    score, x = evaluate(data)
    out = {"status": "ok" if score is not None else "nonfinite",
           "loss": None if score is None else -float(score), "params": [float(v) for v in x]}
except Exception as exc:  # LLM-SR: any exception means no score
    out = {"status": "error", "detail": f"{type(exc).__name__}: {exc}"[:300]}
import resource
usage = resource.getrusage(resource.RUSAGE_SELF)
out["cpu"] = usage.ru_utime + usage.ru_stime  # the whole process: start-up, imports, fit
print("\n@@RESULT@@" + json.dumps(out))
'''


def _load_corpus(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    return float(np.percentile(values, q))


# ---- (a) LLM-SR's path -------------------------------------------------------------------
def _llmsr_one(code: str, xfile: str, yfile: str, timeout: float) -> dict[str, Any]:
    env = {**os.environ, **SINGLE_THREAD}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", LLMSR_CHILD, xfile, yfile],
            input="import numpy as np\n\n" + code, capture_output=True, text=True,
            timeout=timeout, env=env,
        )
        seconds = time.perf_counter() - start
        marker = proc.stdout.rfind("@@RESULT@@")
        if marker < 0:
            return {"status": "crash", "seconds": seconds, "detail": proc.stderr[-300:]}
        return {**json.loads(proc.stdout[marker + len("@@RESULT@@"):]), "seconds": seconds}
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": time.perf_counter() - start}


def run_llmsr(programs: list[dict[str, Any]], files: dict[str, tuple[str, str]], workers: int,
              timeout: float) -> tuple[dict[str, dict[str, Any]], float]:
    """Every program in its own process, ``workers`` at a time."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {p["uid"]: pool.submit(_llmsr_one, p["code"], *files[p["problem"]], timeout) for p in programs}
        results = {uid: fut.result() for uid, fut in futures.items()}
    return results, time.perf_counter() - start


# ---- (b) eqforge -------------------------------------------------------------------------
def _fit_seconds(fit: dict[str, Any]) -> float | None:
    """The fitter's own time, from its notes ("N runs, X s"); the rest is the sandbox's."""
    if isinstance(fit.get("seconds"), float):
        return fit["seconds"]
    for note in fit.get("notes", []):
        match = re.search(r"runs, ([0-9.]+) s$", note)
        if match:
            return float(match.group(1))
    return None


def _bfgs_trips(fit: dict[str, Any]) -> int | None:
    """Round trips of LLM-SR's BFGS start, from its note ("llmsr-bfgs N round trips"): the
    share of a program's round trips that lock-step starts could fold into the search's."""
    for note in fit.get("notes", []):
        match = re.fullmatch(r"llmsr-bfgs (\d+) round trips", note)
        if match:
            return int(match.group(1))
    return None


class _CountingPool(SandboxPool):
    """The evaluator's own pool, keeping each job's reply (for the CPU seconds it reports)."""

    replies: list[Future] = []

    def submit(self, job: Any) -> Future:
        fut = super().submit(job)
        _CountingPool.replies.append(fut)
        return fut


def run_eqforge(problems: dict[str, Any], programs: list[dict[str, Any]], workers: int,
                ) -> tuple[dict[str, dict[str, Any]], float, float]:
    """One evaluator (pool of ``workers`` zygotes) per problem; ``workers`` jobs in flight in all."""
    config = EvaluatorConfig(workers=workers)
    t0 = time.perf_counter()
    evaluators: dict[str, Evaluator] = {}
    evaluate_module.SandboxPool = _CountingPool  # type: ignore[misc]
    try:
        for name, problem in problems.items():
            evaluators[name] = Evaluator(problem, config)
            _ = evaluators[name].pool  # start the zygotes outside the timed region
    finally:
        evaluate_module.SandboxPool = SandboxPool  # type: ignore[misc]
    startup = time.perf_counter() - t0
    results: dict[str, dict[str, Any]] = {}
    try:
        slots = threading.Semaphore(workers)
        futures, replies = {}, {}
        t1 = time.perf_counter()
        for p in programs:
            slots.acquire()
            before = len(_CountingPool.replies)
            fut = evaluators[p["problem"]].submit(p["code"])
            if len(_CountingPool.replies) > before:  # not rejected before reaching the sandbox
                replies[p["uid"]] = _CountingPool.replies[-1]
            fut.add_done_callback(lambda _f: slots.release())
            futures[p["uid"]] = fut
        done = {uid: fut.result() for uid, fut in futures.items()}
        busy = time.perf_counter() - t1
        for uid, res in done.items():
            results[uid] = {
                "status": "ok" if res.ok else res.error,
                "loss": -res.score if res.ok and res.score is not None else None,
                "seconds": res.seconds,
                "cpu": float(replies[uid].result().cpu) if uid in replies else 0.0,
                "n_params": res.n_params,
                "method": res.fit.get("method"),
                "fit_seconds": _fit_seconds(res.fit),
                "round_trips": res.fit.get("round_trips"),
                "bfgs_round_trips": _bfgs_trips(res.fit),
                "candidate_cpu": res.fit.get("candidate_cpu"),
                "detail": res.detail[:200] if not res.ok else "",
            }
    finally:
        for ev in evaluators.values():
            ev.close()
        _CountingPool.replies.clear()
    return results, busy, startup


def run_cli(by_problem: dict[str, list[dict[str, Any]]], data: Path, workers: int, tmp: str,
            ) -> dict[str, dict[str, Any]]:
    """``eqforge evaluate`` as a user runs it: one whole process per problem, start-up included."""
    env = {**os.environ, **SINGLE_THREAD}
    out: dict[str, dict[str, Any]] = {}
    for name, items in by_problem.items():
        programs = Path(tmp) / f"{name}-programs.jsonl"
        programs.write_text("".join(json.dumps({"id": p["uid"], "code": p["code"]}) + "\n" for p in items))
        results = Path(tmp) / f"{name}-results-{workers}.jsonl"
        cmd = [sys.executable, "-m", "eqforge", "evaluate", name, "--data", str(data / name),
               "--programs", str(programs), "--out", str(results), "--workers", str(workers)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        wall = time.perf_counter() - start
        lines = results.read_text().splitlines() if results.exists() else []
        out[name] = {"wall": wall, "returncode": proc.returncode, "results": len(lines), "programs": len(items)}
    return out


def startup_breakdown(problem: Any) -> dict[str, float]:
    """Where a command's fixed cost goes: the interpreter and imports, then the pool."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import eqforge.cli, eqforge.evaluator.evaluate, eqforge.problems"],
                   check=True, env={**os.environ, **SINGLE_THREAD})
    imports = time.perf_counter() - t
    t = time.perf_counter()
    ev = Evaluator(problem, EvaluatorConfig(workers=1))
    pool = ev.pool
    started = time.perf_counter() - t
    phases = pool.startup_timings()
    t = time.perf_counter()
    ev.close()
    return {"interpreter and main-process imports": imports, "pool start (1 worker)": started,
            **{f"  zygote: {k}": v for k, v in phases.items()}, "pool close": time.perf_counter() - t}


# ---- comparison --------------------------------------------------------------------------
def compare(programs: list[dict[str, Any]], llmsr: dict[str, dict[str, Any]],
            ours: dict[str, dict[str, Any]]) -> dict[str, Any]:
    better, equal, worse, tenfold, per_program = [], [], [], [], {}
    lost_to_timeout, failed_ours, unfit_by_llmsr = [], [], []
    for p in programs:
        if p["kind"] not in HONEST:
            continue
        uid = p["uid"]
        a, b = llmsr[uid], ours[uid]
        la = a.get("loss") if a["status"] == "ok" else None
        lb = b.get("loss") if b["status"] == "ok" else None
        if la is None or not math.isfinite(la):
            unfit_by_llmsr.append(uid)
            continue
        if b["status"] == "timeout":
            lost_to_timeout.append(uid)
        if lb is None:
            failed_ours.append(uid)
            worse.append(uid)
            per_program[uid] = {"llmsr": la, "eqforge": None, "verdict": "worse"}
            continue
        if abs(la - lb) <= EQUAL_RTOL * max(abs(la), abs(lb)):
            verdict, bucket = "equal", equal
        elif lb < la:
            verdict, bucket = "better", better
        else:
            verdict, bucket = "worse", worse
        bucket.append(uid)
        if lb * 10 <= la:
            tenfold.append(uid)
        per_program[uid] = {"llmsr": la, "eqforge": lb, "verdict": verdict}
    n = len(per_program)
    return {
        "compared": n, "better": len(better), "equal": len(equal), "worse": len(worse),
        "tenfold_lower": len(tenfold),
        "no_worse_share": (n - len(worse)) / n if n else math.nan,
        "tenfold_share": len(tenfold) / n if n else math.nan,
        "worse_ids": worse, "tenfold_ids": tenfold, "lost_to_timeout": lost_to_timeout,
        "failed_in_eqforge": failed_ours, "not_fitted_by_llmsr": unfit_by_llmsr,
        "per_program": per_program,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=SHARED / "corpus" / "programs.jsonl")
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "llmsr")
    ap.add_argument("--workers", type=int, default=default_workers(), help="all cores (default: %(default)s)")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "fitting.json")
    ap.add_argument("--llmsr-timeout", type=float, default=30.0, help="LLM-SR's per-candidate limit")
    ap.add_argument("--no-cli", dest="cli", action="store_false",
                    help="skip the whole-process `eqforge evaluate` runs")
    ap.add_argument("--repeats", type=int, default=3,
                    help="eqforge passes over the corpus per worker count, alternating counts; "
                         "its wall time is their median (a pass takes seconds, so one is noisy)")
    args = ap.parse_args(argv)
    if not args.corpus.exists() or not args.data.exists():
        print(f"benchmark material not found: {args.corpus}, {args.data}", file=sys.stderr)
        return 2

    wall_start = time.perf_counter()
    load_start = os.getloadavg()
    programs = _load_corpus(args.corpus)
    for i, p in enumerate(programs):
        p["uid"] = f"{i:03d}:{p['id']}"  # ids repeat for near-duplicates
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for p in programs:
        by_problem.setdefault(p["problem"], []).append(p)
    problems = {name: load_problem(name, data=args.data / name) for name in by_problem}
    n = len(programs)
    counts = {k: sum(p["kind"] == k for p in programs) for k in sorted({p["kind"] for p in programs})}
    print(f"{n} programs {counts} on {len(problems)} problems; workers 1 and {args.workers}; "
          f"load average {load_start[0]:.2f}", flush=True)

    configs = [1] if args.workers == 1 else [1, args.workers]
    runs: dict[str, dict[int, Any]] = {"llmsr": {}, "eqforge": {}}
    with tempfile.TemporaryDirectory(prefix="eqforge-bench-") as tmp:
        files = {}
        for name, problem in problems.items():  # LLM-SR receives the training split only
            xfile, yfile = f"{tmp}/{name}-X.npy", f"{tmp}/{name}-y.npy"
            np.save(xfile, problem.train.X)
            np.save(yfile, problem.train.y)
            files[name] = (xfile, yfile)
        passes: dict[int, list[tuple[dict[str, dict[str, Any]], float, float]]] = {w: [] for w in configs}
        for _ in range(max(1, args.repeats)):
            for w in configs:
                passes[w].append(run_eqforge(problems, programs, w))
        for w in configs:
            walls = sorted(busy for _, busy, _ in passes[w])
            ours = passes[w][0][0]  # per-program figures from the first pass
            busy = statistics.median(walls)
            startup = statistics.median(s for _, _, s in passes[w])
            runs["eqforge"][w] = {"results": ours, "wall": busy, "startup": startup, "passes": walls}
            theirs, wall = run_llmsr(programs, files, w, args.llmsr_timeout)
            runs["llmsr"][w] = {"results": theirs, "wall": wall}
            runs["eqforge"][w]["cli"] = run_cli(by_problem, args.data, w, tmp) if args.cli else {}
            print(f"{w} worker(s): eqforge {busy:.1f} s (median of {', '.join(f'{x:.1f}' for x in walls)}; "
                  f"+{startup:.1f} s pool start-up), LLM-SR path {wall:.1f} s", flush=True)

    rows = []
    summary: dict[str, Any] = {}
    for w in configs:
        for path, label in (("llmsr", "LLM-SR path"), ("eqforge", "eqforge")):
            run = runs[path][w]
            secs = [r["seconds"] for r in run["results"].values()]
            rate = n / run["wall"]
            summary[f"{path}_{w}"] = {
                "workers": w, "wall_seconds": run["wall"], "programs_per_second": rate,
                "median_seconds_per_program": _pct(secs, 50), "p90_seconds_per_program": _pct(secs, 90),
                **({"pool_startup_seconds": run["startup"]} if "startup" in run else {}),
                **({"pass_wall_seconds": run["passes"]} if "passes" in run else {}),
            }
            rows.append((f"{label}, {w} worker{'s' if w > 1 else ''}", run["wall"], rate,
                         _pct(secs, 50), _pct(secs, 90)))
            cpu = [r.get("cpu") or 0.0 for r in run["results"].values()]
            summary[f"{path}_{w}"]["cpu_seconds_total"] = sum(cpu)
            if path == "eqforge":
                fits = [r.get("fit_seconds") or 0.0 for r in run["results"].values()]
                summary[f"{path}_{w}"]["fit_seconds_total"] = sum(fits)
                summary[f"{path}_{w}"]["job_seconds_total"] = sum(secs)
        ratio = summary[f"eqforge_{w}"]["programs_per_second"] / summary[f"llmsr_{w}"]["programs_per_second"]
        summary[f"ratio_{w}"] = ratio
        rows.append((f"  eqforge / LLM-SR path, {w} worker{'s' if w > 1 else ''}", None, ratio, None, None))
    scaling = None
    if len(configs) > 1:
        scaling = (summary[f"eqforge_{configs[-1]}"]["programs_per_second"]
                   / summary["eqforge_1"]["programs_per_second"])
        summary["eqforge_scaling"] = scaling

    # Loss comparison: the one-worker runs (both paths are deterministic).
    cmp = compare(programs, runs["llmsr"][1]["results"], runs["eqforge"][1]["results"])
    failing = {}
    for p in programs:
        if p["kind"] in HONEST:
            continue
        a, b = runs["llmsr"][1]["results"][p["uid"]], runs["eqforge"][1]["results"][p["uid"]]
        failing[p["uid"]] = {"kind": p["kind"], "llmsr": a["status"], "llmsr_seconds": a["seconds"],
                             "eqforge": b["status"], "eqforge_seconds": b["seconds"]}

    print()
    print(f"{'':38s} {'wall s':>8s} {'programs/s':>11s} {'median s/prog':>14s} {'p90 s/prog':>11s}")
    for label, wall, rate, med, p90 in rows:
        if wall is None:
            print(f"{label:38s} {'':>8s} {rate:10.1f}x")
        else:
            print(f"{label:38s} {wall:8.1f} {rate:11.2f} {med:14.3f} {p90:11.3f}")
    if scaling is not None:
        print(f"eqforge scaling, 1 -> {configs[-1]} workers: {scaling:.2f}x")
    cpu_ratio = summary["llmsr_1"]["cpu_seconds_total"] / max(summary["eqforge_1"]["cpu_seconds_total"], 1e-9)
    summary["cpu_ratio_1"] = cpu_ratio
    print(f"CPU seconds, 1 worker (moves less with other load on the machine): LLM-SR path "
          f"{summary['llmsr_1']['cpu_seconds_total']:.1f}, eqforge {summary['eqforge_1']['cpu_seconds_total']:.1f} "
          f"-> {cpu_ratio:.1f}x")
    e1 = summary["eqforge_1"]
    print(f"eqforge, 1 worker: {e1['fit_seconds_total']:.1f} s fitting of {e1['job_seconds_total']:.1f} s "
          "in the sandbox (the rest: forks, confinement, compiling, the scoring child's predictions)")
    trips = [r["round_trips"] for r in runs["eqforge"][1]["results"].values() if r.get("round_trips")]
    ccpu = [r["candidate_cpu"] for r in runs["eqforge"][1]["results"].values() if r.get("candidate_cpu") is not None]
    bfgs = [r["bfgs_round_trips"] for r in runs["eqforge"][1]["results"].values()
            if r.get("round_trips") and r.get("bfgs_round_trips") is not None]
    if trips:
        summary["round_trips_median"] = statistics.median(trips)
        summary["bfgs_round_trips_median"] = statistics.median(bfgs) if bfgs else None
        summary["candidate_cpu_median"] = statistics.median(ccpu) if ccpu else None
        print(f"eqforge, per program: round trips to candidate processes median {statistics.median(trips):.0f} "
              f"(p90 {_pct(trips, 90):.0f}); candidate-process CPU median "
              f"{1000 * statistics.median(ccpu) if ccpu else float('nan'):.1f} ms")
        if bfgs:
            print(f"  of which LLM-SR's BFGS start: median {statistics.median(bfgs):.0f} (p90 {_pct(bfgs, 90):.0f}) "
                  f"over {len(bfgs)} programs")
    for w in configs:
        run = runs["eqforge"][w]
        with_startup = n / (run["wall"] + run["startup"]) / summary[f"llmsr_{w}"]["programs_per_second"]
        summary[f"ratio_{w}_with_startup"] = with_startup
        print(f"(counting eqforge's pool start-up, {run['startup']:.1f} s, once per run in practice: "
              f"{with_startup:.1f}x with {w} worker{'s' if w > 1 else ''})")
    if args.cli:
        print()
        print("whole processes, start-up included: `eqforge evaluate PROBLEM` (one process) against the LLM-SR "
              "path's processes for that problem's programs (their stream time: summed seconds / workers)")
        for w in configs:
            cli = runs["eqforge"][w]["cli"]
            theirs = runs["llmsr"][w]["results"]
            total_ours = sum(c["wall"] for c in cli.values())
            total_theirs = 0.0
            for name, c in cli.items():
                llmsr_wall = sum(theirs[p["uid"]]["seconds"] for p in by_problem[name]) / w
                total_theirs += llmsr_wall
                c["llmsr_wall"] = llmsr_wall
                c["ratio"] = llmsr_wall / c["wall"]
                print(f"  {w} worker{'s' if w > 1 else ''} {name:13s} {c['programs']:3d} programs: eqforge evaluate "
                      f"{c['wall']:6.2f} s (exit {c['returncode']}, {c['results']} results), LLM-SR path "
                      f"{llmsr_wall:6.2f} s -> {c['ratio']:5.1f}x")
            summary[f"cli_ratio_{w}"] = total_theirs / total_ours if total_ours else math.nan
            summary[f"cli_{w}"] = cli
            print(f"  {w} worker{'s' if w > 1 else ''} all problems: {summary[f'cli_ratio_{w}']:.1f}x")
        breakdown = startup_breakdown(next(iter(problems.values())))
        summary["startup_breakdown"] = breakdown
        print("where a command's start-up goes (seconds):",
              ", ".join(f"{k.strip()} {v:.2f}" for k, v in breakdown.items()))
    print(f"fitted training loss vs LLM-SR path over {cmp['compared']} honest programs it fits: "
          f"better {cmp['better']}, equal {cmp['equal']}, worse {cmp['worse']} "
          f"(no worse: {100 * cmp['no_worse_share']:.1f}%); >=10x lower: {cmp['tenfold_lower']} "
          f"({100 * cmp['tenfold_share']:.1f}%)")
    if cmp["worse_ids"]:
        print("  worse:", ", ".join(f"{u} {cmp['per_program'][u]['eqforge']!s:.10} vs "
                                     f"{cmp['per_program'][u]['llmsr']:.10g}" for u in cmp["worse_ids"]))
    print(f"honest programs lost to a timeout that LLM-SR's path fits: {cmp['lost_to_timeout'] or 'none'}")
    if cmp["not_fitted_by_llmsr"]:
        print(f"honest programs LLM-SR's path did not fit: {cmp['not_fitted_by_llmsr']}")
    for uid, f in failing.items():
        print(f"  {uid} ({f['kind']}): LLM-SR {f['llmsr']} in {f['llmsr_seconds']:.2f} s, "
              f"eqforge {f['eqforge']} in {f['eqforge_seconds']:.3f} s")
    total = time.perf_counter() - wall_start
    load_end = os.getloadavg()
    print(f"benchmark wall time {total:.0f} s; load average {load_start[0]:.2f} -> {load_end[0]:.2f}")

    report = {
        "corpus": str(args.corpus), "data": str(args.data), "programs": n, "kinds": counts,
        "workers": configs, "llmsr_timeout": args.llmsr_timeout, "summary": summary,
        "loss_comparison": cmp, "failing_programs": failing,
        "load_average": {"start": load_start, "end": load_end}, "benchmark_seconds": total,
        "results": {path: {str(w): run["results"] for w, run in r.items()} for path, r in runs.items()},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
