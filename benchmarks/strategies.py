"""Run every prompting strategy with the offline default model on oscillator1 and compare.

For each strategy it runs the discovery loop for a fixed number of samples (the same model
instance, loaded once; the response cache off, so every answer is generated) and reports
the valid-program rate, seconds per sample, the best training NMSE and test NMSE, and
whether any sample beat the linear seed program (the question the ``extend`` strategy is
meant to answer for small completion models). All strategies run in one process, one after
the other, so their seconds per sample are comparable with each other on the same (shared,
noisy) machine; absolute numbers are not.

    python benchmarks/strategies.py --data ../shared/data/llmsr/oscillator1 --samples 8
    python benchmarks/strategies.py --strategy llmsr --strategy extend --samples 24

Results are printed as a markdown table and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from eqforge.agents.llm.registry import make_llm
from eqforge.agents.loop import DiscoveryLoop
from eqforge.agents.progress import QuietProgress
from eqforge.config import Config
from eqforge.evaluator.evaluate import Evaluator
from eqforge.evaluator.rundir import RunDir
from eqforge.problems.registry import load_problem
from eqforge.prompts.strategy import load_strategy, strategy_names


def default_strategies() -> list[str]:
    """The baseline and the small-model strategy first, the (slow) agent last."""
    names = [n for n in strategy_names() if not load_strategy(n).abstract]
    first = [n for n in ("llmsr", "extend") if n in names]
    last = [n for n in names if load_strategy(n).kind == "agent"]
    return first + [n for n in names if n not in first + last] + last


async def run_all(args: argparse.Namespace) -> list[dict]:
    problem = load_problem("oscillator1", data=args.data, seed=0)
    base = Config().with_overrides({
        "run": {"samples": args.samples, "seed": args.seed},
        "sampler": {"samples_per_prompt": args.per_prompt, "max_tokens": args.max_tokens,
                    "agent_turns": args.agent_turns},
        "evaluator": {"workers": 1},
        "database": {"islands": 2},
        "llm": {"cache": False, "backends": [{"spec": args.llm, "engine": args.engine}]},
    })
    backend = make_llm(base.llm, seed=base.run.seed)
    inner = backend
    while hasattr(inner, "inner"):
        inner = inner.inner
    if hasattr(inner, "load"):  # load the weights before timing anything
        t0 = time.perf_counter()
        await asyncio.to_thread(inner.load)
        print(f"model loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    rows = []
    try:
        with Evaluator(problem, base.evaluator) as evaluator:
            for name in args.strategy or default_strategies():
                config = base.with_overrides({"sampler": {"strategy": name}})
                with tempfile.TemporaryDirectory(prefix=f"eqforge-bench-{name}-") as tmp:
                    recorder = RunDir(Path(tmp), write=True)
                    loop = DiscoveryLoop(problem, config, backend, evaluator, recorder,
                                         progress=QuietProgress())
                    t0 = time.perf_counter()
                    summary = await loop.run()
                    seconds = time.perf_counter() - t0
                    rows.append(_row(name, loop, summary, seconds))
                print(_line(rows[-1]), file=sys.stderr, flush=True)
    finally:
        await backend.aclose()
    return rows


def _row(name: str, loop: DiscoveryLoop, summary: dict, seconds: float) -> dict:
    seed = next((r for r in loop.records if r.source == "seed"), None)
    llm = [r for r in loop.records if r.source == "llm"]
    seed_score = seed.score if seed is not None and seed.ok else None
    # strictly better than the seed by more than round-off (scores are -MSE)
    better = [r for r in llm if r.ok and seed_score is not None and r.score is not None
              and r.score > seed_score + 1e-9 * abs(seed_score)]
    best = summary.get("best") or {}
    nmse = best.get("nmse") or {}
    return {"strategy": name, "samples": len(llm), "valid": sum(r.ok for r in llm),
            "valid_rate": sum(r.ok for r in llm) / max(1, len(llm)),
            "seconds_per_sample": seconds / max(1, len(llm)),
            "best_nmse_train": nmse.get("train"), "best_nmse_ood": nmse.get("test_ood"),
            "seed_nmse_train": seed.nmse.get("train") if seed is not None else None,
            "beat_seed": len(better), "best_equation": best.get("equation"),
            "failures": summary.get("failures", {})}


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _line(r: dict) -> str:
    return (f"| {r['strategy']} | {r['valid']}/{r['samples']} | {r['seconds_per_sample']:.1f} | "
            f"{_fmt(r['best_nmse_train'])} | {_fmt(r['best_nmse_ood'])} | {r['beat_seed']} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with oscillator1's CSVs (LLM-SR layout)")
    ap.add_argument("--llm", default="local:", help="model (default: the offline default model)")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--strategy", action="append", help="strategies to run (default: all)")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--per-prompt", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--agent-turns", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="JSON file for the results")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    header = ("| strategy | valid | s/sample | best NMSE train | best NMSE OOD | samples beating the seed |\n"
              "|---|---|---|---|---|---|")
    rows = asyncio.run(run_all(args))
    print(header)
    for r in rows:
        print(_line(r))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
