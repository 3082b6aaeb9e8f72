"""Which offline model should ``local:`` default to? Measure, don't guess.

Each candidate (model x engine x prompt style) makes the same ``eqforge run`` on LLM-SR's
oscillator1 data: a fixed sample budget and seed, no response cache, one process per
candidate (so one model's memory does not weigh on the next), candidates one after another
in this one invocation. From each run's records it reports what a user cares about:

* seconds per sample (the model's own generation time, and the run's wall time);
* valid programs (parsed and evaluated) out of the budget;
* samples that beat the seed (train NMSE below the seed program's after fitting);
* the best train NMSE and that program's out-of-domain (``test_ood``) NMSE.

    python benchmarks/local_model.py models --samples 16
    python benchmarks/local_model.py models --only qwen2.5-coder-1.5b:llama-cpp:completion

Candidates whose engine is missing are listed as skipped, with the reason. Gemma 3 270M
has no chat template (a base model), so it runs in completion style only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = [
    ("gemma-3-270m", "transformers", "completion"),
    ("gemma-3-270m", "llama-cpp", "completion"),
    ("qwen2.5-coder-0.5b", "llama-cpp", "completion"),
    ("qwen2.5-coder-1.5b", "llama-cpp", "completion"),
    ("qwen2.5-coder-0.5b", "llama-cpp", "chat"),
    ("qwen2.5-coder-1.5b", "llama-cpp", "chat"),
]

log = logging.getLogger("model_choice")


def run_one(model: str, engine: str, style: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "eqforge", "run", "oscillator1", "--data", args.data,
           "--llm", f"local:{model}", "--engine", engine, "--prompt-style", style,
           "--samples", str(args.samples), "--seed", str(args.seed), "--no-cache",
           "--out", str(out), "--quiet"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
        code, err = res.returncode, res.stderr
    except subprocess.TimeoutExpired:  # what it recorded until then still counts, marked
        code, err = None, f"stopped after {args.timeout:.0f} s"
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"model": model, "engine": engine, "style": style, "wall_seconds": round(wall, 1),
                           "exit": code}
    if code is None:
        row["error"] = err
    if not (out / "samples.jsonl").is_file():
        row["error"] = (err.strip().splitlines() or ["no records"])[-1][:300]
        return row
    recs = []
    for line in (out / "samples.jsonl").read_text().splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:  # a line cut by the timeout
            pass
    seed = next(r for r in recs if r["source"] == "seed")
    llm = [r for r in recs if r["source"] == "llm"]
    ok = [r for r in llm if r.get("ok") and r.get("nmse")]
    seed_train = seed["nmse"]["train"]
    best = min(ok, key=lambda r: r["nmse"]["train"], default=None)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    info = summary.get("llm") or {}
    row.update(
        samples=len(llm), valid=len(ok), beat_seed=sum(r["nmse"]["train"] < seed_train for r in ok),
        seed_train_nmse=seed_train,
        best_train_nmse=best["nmse"]["train"] if best else None,
        best_ood_nmse=best["nmse"]["test_ood"] if best else None,
        best_program=best["program"].split('"""')[-1].strip() if best else None,
        seconds_per_sample=info.get("seconds_per_sample"), tokens_per_second=info.get("tokens_per_second"),
        load_seconds=info.get("load_seconds"), threads=info.get("threads"),
        prompt_style_reason=info.get("prompt_style_reason"),
        run_seconds_per_sample=round(summary.get("elapsed_seconds", wall) / max(1, len(llm)), 1),
        completion_tokens=sum(r.get("completion_tokens") or 0 for r in llm),
    )
    valid_s = summary.get("elapsed_seconds")
    row["run_seconds_per_valid"] = round(valid_s / len(ok), 1) if ok and valid_s else None
    return row


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.3g}"
    return "–" if x is None else str(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/llmsr/oscillator1"))
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="engine threads (default: eqforge's default)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per candidate run")
    ap.add_argument("--only", action="append", help="MODEL:ENGINE:STYLE (repeatable; default: all)")
    ap.add_argument("--out", default="benchmarks/results/model_choice.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    todo = [tuple(o.split(":")) for o in args.only] if args.only else CANDIDATES
    report: dict[str, Any] = {"args": vars(args), "cores": os.cpu_count(), "loadavg_before": os.getloadavg(),
                              "rows": []}
    with tempfile.TemporaryDirectory(prefix="eqforge-models-bench-") as tmp:
        for k, (model, engine, style) in enumerate(todo):
            log.info("%s / %s / %s (load average %.1f)", model, engine, style, os.getloadavg()[0])
            row = run_one(model, engine, style, args, Path(tmp) / f"run{k}")
            row["loadavg"] = round(os.getloadavg()[0], 1)
            log.info("  %s", {k: v for k, v in row.items() if k != "best_program"})
            report["rows"].append(row)
    report["loadavg_after"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    cols = ["model", "engine", "style", "threads", "seconds_per_sample", "run_seconds_per_sample", "valid",
            "samples", "beat_seed", "best_train_nmse", "best_ood_nmse", "run_seconds_per_valid", "load_seconds",
            "loadavg", "error"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in report["rows"]]
    sys.stdout.write("\n".join(lines) + f"\n\nwritten to {out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
