"""Measure the offline default model on oscillator1 prompts: seconds per valid program.

The README's first command is ``pip install -e ".[local]" && eqforge run oscillator1
--samples 40``: a fresh install, one model load, then 40 samples. This script measures each
part of that on the same prompts, in one process run, and reports seconds per valid program
for the whole first command (install + load + generation + evaluation) and for later runs
(the model already converted), as a ratio against today's baseline path:

* ``baseline``: the transformers path this project shipped before (``model.generate`` over
  the n rows, stopped when the slowest row stops, every row decoded at every step for the
  stop check, ``max_tokens`` 1024), loading the GGUF the way transformers does by itself
  (three metadata parses, de-quantisation to fp32).
* ``transformers``: the engine in ``eqforge.agents.llm.local``: the prompt's KV cache built
  once and copied for the rows, each row leaving the batch when its body ends, stop checks
  on the new text only, a body-sized token bound; the GGUF parsed once with a fast reader
  and a de-quantised copy kept for later loads.
* ``llama-cpp``: llama-cpp-python, where installed (it builds from source: not part of the
  first command).

Generation is A/B interleaved: every prompt round runs each engine on the same prompt and
seed, the order alternating between rounds, so machine load hits both alike. Validity: the
response parses with ``extract_program`` and the program evaluates in the sandbox.

    python benchmarks/local_model.py --samples 24                    # generation A/B
    python benchmarks/local_model.py --samples 24 --loads --install  # plus load and install times
    python benchmarks/local_model.py models --samples 16             # which model: see model_choice.py

Results are printed as a table and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eqforge.agents.llm.base import SamplingParams
from eqforge.agents.llm.engine_transformers import TransformersEngine as _TransformersEngine
from eqforge.agents.llm.engines import Sample as _Sample
from eqforge.agents.llm.engines import available_engines
from eqforge.agents.llm.local import LocalBackend, resolve_model
from eqforge.config import EvaluatorConfig
from eqforge.evaluator.evaluate import Evaluator
from eqforge.problems.registry import load_problem
from eqforge.prompts.builder import ProgramRef, PromptBuilder, initial_program
from eqforge.prompts.parsing import extract_program, normalize
from eqforge.prompts.prompt import COMPLETION_STOPS

ROOT = Path(__file__).resolve().parents[1]
README_SAMPLES = 40  # the README's first command

# Parent sets for the prompts (worst to best), as the buffer would hand them out early on.
PARENT_BODIES = [
    [],  # only the seed program
    ["return params[0] * x + params[1] * v + params[2] * x**3"],
    ["return params[0] * x + params[1] * v",
     "return params[0] * x + params[1] * v + params[2] * x * v + params[3] * np.sin(x)"],
]


def structure(code: str, *, abstract: bool = False) -> str:
    """The program's function bodies under ``normalize``, without annotations; with
    ``abstract`` also with every number and ``params[i]`` index replaced by a placeholder."""
    tree = ast.parse(normalize(code))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            node.returns = None
            node.name = "equation" if node.name.startswith("equation") else node.name
            for a in node.args.args:
                a.annotation = None
        if abstract and isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            node.value = 0
    return ast.unparse(tree)


def build_prompts(problem, template: str):  # noqa: ANN001, ANN201
    seed_code = initial_program(problem.spec)
    header = seed_code.split("\n", 1)[0]
    prompts = []
    for bodies in PARENT_BODIES:
        progs = [ProgramRef("seed", seed_code)] + [
            ProgramRef(f"p{i}", f"{header}\n    {b}\n") for i, b in enumerate(bodies)]
        progs = progs[-2:]  # two programs per prompt, as LLM-SR
        prompts.append((PromptBuilder(problem.spec, template=template).build(progs), [p.code for p in progs]))
    return prompts


# -- the baseline: the transformers path as shipped before this benchmark's changes ---------
def baseline_load(path: Path, threads: int) -> tuple[Any, Any]:
    """transformers' own GGUF loading: config, tokenizer and weights each parse the file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    kw = {"local_files_only": True, "gguf_file": path.name}
    tok = AutoTokenizer.from_pretrained(str(path.parent), **kw)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch.float32, **kw).eval()
    return tok, model


_COL0 = re.compile(r"\n(?=[^\s])")


def old_cut(text: str, stops: tuple[str, ...], completion: bool) -> tuple[str, bool]:
    """The stop rule as shipped before: stop sequences, a line back at column 0, two blank lines."""
    ends = [i for s in stops if (i := text.find(s)) >= 0]
    head = text.lstrip("\n")
    if completion and head and head[0].isspace():
        ends += [m.start() for m in _COL0.finditer(text) if text[: m.start()].strip()][:1]
        gap = text.find("\n\n\n")
        if gap >= 0 and text[:gap].strip():
            ends.append(gap)
    return (text[: min(ends)], True) if ends else (text, False)


class BaselineEngine:
    """``model.generate`` with a stopping criterion that decodes every row at every step."""

    def __init__(self, tok: Any, model: Any) -> None:
        import torch

        self.torch, self.tok, self.model = torch, tok, model
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def count(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False).input_ids)

    def sample(self, prompt, style, sp: SamplingParams) -> list[_Sample]:  # noqa: ANN001
        from transformers import StoppingCriteria, StoppingCriteriaList

        torch = self.torch
        inputs = self.tok(prompt.completion, return_tensors="pt")
        plen = inputs.input_ids.shape[1]
        tok, stops, completion = self.tok, sp.stop, style == "completion"

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001, ANN204
                done = [old_cut(tok.decode(row[plen:], skip_special_tokens=True), stops, completion)[1]
                        for row in input_ids]
                return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

        if sp.seed is not None:
            torch.manual_seed(sp.seed)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=sp.max_tokens, pad_token_id=self.pad,
                                      stopping_criteria=StoppingCriteriaList([_Stop()]), do_sample=True,
                                      temperature=sp.temperature, top_p=sp.top_p, top_k=0,
                                      num_return_sequences=sp.n)
        samples = []
        eos = self.tok.eos_token_id
        for k, row in enumerate(out):
            new = row[plen:]
            text, was_cut = old_cut(self.tok.decode(new, skip_special_tokens=True), stops, completion)
            ended = eos is not None and bool((new == eos).any())
            samples.append(_Sample(text, plen if k == 0 else 0, self.count(text),
                                   "stop" if was_cut or ended else "length"))
        return samples


# -- measuring --------------------------------------------------------------------------------
def measure_install() -> dict:
    """``pip install -e ".[local]"`` into a fresh virtual environment that sees this
    machine's site packages (torch and friends are on disk, as on this machine kind)."""
    with tempfile.TemporaryDirectory(prefix="eqforge-install-") as d:
        venv = Path(d) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
        t = time.perf_counter()
        r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e", ".[local]"], cwd=ROOT,
                           capture_output=True, text=True)
        dt = time.perf_counter() - t
    return {"install_seconds": round(dt, 1), "ok": r.returncode == 0, "stderr_tail": r.stderr[-500:]}


def measure_loads(path: Path, threads: int) -> dict:
    """Load times: today's baseline, this engine's first load (converting and keeping a copy,
    into a temporary model dir), and its later loads (from the copy)."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="eqforge-models-") as d:
        saved = os.environ.get("EQFORGE_MODEL_DIR")
        os.environ["EQFORGE_MODEL_DIR"] = d
        try:
            for name in ("transformers_first", "baseline", "transformers_later"):
                t, c = time.perf_counter(), time.process_time()
                if name == "baseline":
                    obj: Any = baseline_load(path, threads)
                else:
                    obj = _TransformersEngine(path, threads=threads)
                    assert obj.source == ("gguf" if name == "transformers_first" else "snapshot")
                out[name] = round(time.perf_counter() - t, 1)
                out[name + "_cpu"] = round(time.process_time() - c, 1)
                print(f"load {name}: {out[name]} s, {out[name + '_cpu']} s CPU "
                      f"(load average {os.getloadavg()[0]:.1f})", flush=True)
                del obj
        finally:
            if saved is None:
                os.environ.pop("EQFORGE_MODEL_DIR", None)
            else:
                os.environ["EQFORGE_MODEL_DIR"] = saved
    return out


async def _score(outs, prompt, parents, problem, ev: Evaluator, seed: int) -> list[dict]:  # noqa: ANN001
    rows = []
    for c in outs:
        ex = extract_program(c.text, problem.spec, version=prompt.version) if c.text.strip() else None
        row = {"text": c.text, "finish": c.finish_reason, "tokens": c.completion_tokens,
               "parsed": bool(ex and ex.ok), "ok": False, "error": (ex.error if ex and not ex.ok else None)
               if ex else "llm:empty"}
        if ex is not None and ex.ok and ex.code is not None:
            res = await ev.evaluate(ex.code, seed=seed)
            row.update(ok=res.ok, error=res.error, score=res.score)
            if res.ok:
                row["new_structure"] = all(structure(ex.code) != structure(p) for p in parents)
                row["new_skeleton"] = all(structure(ex.code, abstract=True) != structure(p, abstract=True)
                                          for p in parents)
        rows.append(row)
    return rows


def _sample(engine: Any, prompt, sp: SamplingParams) -> list[_Sample]:  # noqa: ANN001
    return engine.sample(prompt, "completion", sp)


async def compare(engines: dict[str, Any], problem, samples: int, per_prompt: int, temperature: float,  # noqa: ANN001
                  max_tokens: int, seed: int, ev: Evaluator) -> dict[str, dict]:
    prompts = build_prompts(problem, "llmsr")
    stats = {name: {"rows": [], "rounds": [], "gen_seconds": 0.0, "gen_cpu": 0.0, "eval_seconds": 0.0}
             for name in engines}
    names = list(engines)
    k = 0
    while len(stats[names[0]]["rows"]) < samples:
        prompt, parents = prompts[k % len(prompts)]
        n = min(per_prompt, samples - len(stats[names[0]]["rows"]))
        sp = SamplingParams(n=n, temperature=temperature, top_p=1.0, max_tokens=max_tokens,
                            seed=seed + 1000 * k, stop=COMPLETION_STOPS)
        for name in (names if k % 2 == 0 else names[::-1]):  # alternate the order each round
            t, c = time.perf_counter(), time.process_time()
            outs = await asyncio.to_thread(_sample, engines[name], prompt, sp)
            dt, dc = time.perf_counter() - t, time.process_time() - c
            t = time.perf_counter()
            rows = await _score(outs, prompt, parents, problem, ev, seed)
            st = stats[name]
            st["gen_seconds"] += dt
            st["gen_cpu"] += dc
            st["eval_seconds"] += time.perf_counter() - t
            st["rows"] += rows
            # a round's cost depends on its longest row (the baseline's decode steps) and on
            # all its tokens (this engine's): kept per round to compare cost per step
            st["rounds"].append({"round": k, "seconds": round(dt, 2), "cpu": round(dc, 2),
                                 "tokens": sum(r["tokens"] or 0 for r in rows),
                                 "longest": max((r["tokens"] or 0) for r in rows)})
            print(f"round {k} {name}: {dt:.1f} s ({dc:.1f} s CPU), {sum(r['tokens'] or 0 for r in rows)} tokens, "
                  f"{sum(r['ok'] for r in rows)}/{len(rows)} valid (load average {os.getloadavg()[0]:.1f})",
                  flush=True)
        k += 1
    return stats


def summarise(name: str, st: dict, load: float | None, later_load: float | None, install: float | None) -> dict:
    rows = st["rows"]
    valid = sum(r["ok"] for r in rows)
    tokens = sum(r["tokens"] or 0 for r in rows)
    per_sample = (st["gen_seconds"] + st["eval_seconds"]) / len(rows)
    rate = valid / len(rows)

    def first_command(fixed: float | None) -> float | None:
        if fixed is None or not valid:
            return None
        return round((fixed + README_SAMPLES * per_sample) / (README_SAMPLES * rate), 2)

    return {
        "engine": name, "samples": len(rows), "valid": valid, "valid_rate": round(rate, 3),
        "generation_seconds": round(st["gen_seconds"], 1), "eval_seconds": round(st["eval_seconds"], 1),
        "tokens_per_second": round(tokens / st["gen_seconds"], 1),
        "seconds_per_sample": round(st["gen_seconds"] / len(rows), 2),
        # CPU seconds of generation (all threads): on a shared machine the wall time is
        # inflated by other work; on an idle 2-core one it lies between half this and this
        "cpu_seconds_per_sample": round(st["gen_cpu"] / len(rows), 2),
        "cpu_seconds_per_valid": round(st["gen_cpu"] / valid, 2) if valid else None,
        "seconds_per_valid": round((st["gen_seconds"] + st["eval_seconds"]) / valid, 2) if valid else None,
        "valid_per_minute": round(valid / ((st["gen_seconds"] + st["eval_seconds"]) / 60), 2),
        "load_seconds": load, "install_seconds": install,
        # the README's first command: install + first load + 40 samples, per valid program
        "first_command_seconds_per_valid": first_command(None if load is None else load + (install or 0)),
        # a later run: the model already installed and converted
        "later_run_seconds_per_valid": first_command(later_load if later_load is not None else load),
        "length_stops": sum(r["finish"] == "length" for r in rows),
        # CPU per decode step (a round's longest row) and per generated token
        "cpu_per_step": round(st["gen_cpu"] / max(1, sum(x["longest"] for x in st["rounds"])), 3),
        "cpu_per_token": round(st["gen_cpu"] / max(1, tokens), 3),
        "new_structure_share": round(sum(r.get("new_structure", False) for r in rows if r["ok"]) / valid, 3)
        if valid else None,
        "failures": {e: sum(1 for r in rows if r["error"] == e) for e in {r["error"] for r in rows if r["error"]}},
    }


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["models"]:
        from model_choice import main as models_main  # the model comparison (issue 25)

        return models_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="GGUF file (default: the [local] extra's Gemma 3 270M)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/llmsr/oscillator1"))
    ap.add_argument("--engine", action="append", choices=["baseline", "transformers", "llama-cpp"],
                    help="engines to compare (default: every one installed, baseline first)")
    ap.add_argument("--samples", type=int, default=24, help="samples per engine")
    ap.add_argument("--per-prompt", type=int, default=4, help="n per prompt (the loop's samples_per_prompt)")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-tokens", type=int, default=1024, help="the run's --max-tokens (the loop's default)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loads", action="store_true", help="also measure load times (minutes on 2 cores)")
    ap.add_argument("--install", action="store_true", help='also time pip install -e ".[local]" in a fresh venv')
    ap.add_argument("--out", default="benchmarks/results/local_model.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    print(f"load average before: {os.getloadavg()} on {os.cpu_count()} cores", flush=True)
    path = resolve_model(args.model)
    have = available_engines(path)
    names = args.engine or ["baseline", "transformers"] + (["llama-cpp"] if "llama-cpp" in have else [])
    report: dict[str, Any] = {"model": str(path), "args": vars(args), "loadavg_before": os.getloadavg()}
    install = measure_install() if args.install else None
    report["install"] = install
    if install:
        print(f"install: {install['install_seconds']} s (ok: {install['ok']})", flush=True)
    loads = measure_loads(path, args.threads) if args.loads else {}
    report["loads"] = loads

    # the sandbox pool starts before the model loads: its start-up does not compete with
    # the load, and the first measured evaluation does not pay for it
    problem = load_problem("oscillator1", data=args.data)
    ev = Evaluator(problem, EvaluatorConfig(workers=1))
    warm = asyncio.run(ev.evaluate(initial_program(problem.spec), seed=args.seed))
    print(f"sandbox ready (seed program ok: {warm.ok})", flush=True)

    engines: dict[str, Any] = {}
    load_of: dict[str, float | None] = {}
    t = time.perf_counter()
    tr = _TransformersEngine(path, threads=args.threads)  # shares its weights with the baseline
    load_of["transformers"] = round(time.perf_counter() - t, 1)
    if "transformers" in names:
        engines["transformers"] = tr
    if "baseline" in names:
        engines["baseline"] = BaselineEngine(tr.tok, tr.model)
    if "llama-cpp" in names:
        b = LocalBackend(path, engine="llama-cpp", threads=args.threads)
        b.load()
        engines["llama-cpp"] = b._engine
        load_of["llama-cpp"] = round(b.load_seconds or 0.0, 1)
    engines = {n: engines[n] for n in names if n in engines}
    with ev:
        stats = asyncio.run(compare(engines, problem, args.samples, args.per_prompt, args.temperature,
                                    args.max_tokens, args.seed, ev))
    inst = install["install_seconds"] if install else None
    table = []
    for name, st in stats.items():
        load = {"baseline": loads.get("baseline"), "transformers": loads.get("transformers_first")}.get(
            name, load_of.get(name))
        later = loads.get("transformers_later") if name == "transformers" else load
        table.append(summarise(name, st, load, later, inst if name != "llama-cpp" else None))
    base = next((r for r in table if r["engine"] == "baseline"), None)
    for r in table:
        if base and base["seconds_per_valid"] and r["seconds_per_valid"]:
            r["speedup_vs_baseline"] = round(base["seconds_per_valid"] / r["seconds_per_valid"], 2)
        if base and base["cpu_seconds_per_valid"] and r["cpu_seconds_per_valid"]:
            r["cpu_speedup_vs_baseline"] = round(base["cpu_seconds_per_valid"] / r["cpu_seconds_per_valid"], 2)
    report.update(loadavg_after=os.getloadavg(), results=table,
                  rows={n: st["rows"] for n, st in stats.items()},
                  rounds={n: st["rounds"] for n, st in stats.items()})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    cols = ["engine", "valid", "samples", "tokens_per_second", "seconds_per_sample", "cpu_seconds_per_sample",
            "length_stops", "cpu_per_step", "cpu_per_token", "cpu_seconds_per_valid",
            "seconds_per_valid", "valid_per_minute", "speedup_vs_baseline", "cpu_speedup_vs_baseline",
            "load_seconds", "install_seconds",
            "first_command_seconds_per_valid", "later_run_seconds_per_valid"]
    print("\n| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in table:
        print("| " + " | ".join(str(r.get(c)) for c in cols) + " |")
    print(f"\nload average after: {os.getloadavg()}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
