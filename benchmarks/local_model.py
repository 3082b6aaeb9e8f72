"""Measure the in-process local model on oscillator1 prompts: engines and templates.

For each engine (llama-cpp, transformers) and prompt template (llmsr, llmsr_fewshot) it
loads the model (default: Gemma 3 270M Q4_K_M from the [local] extra), samples responses to
LLM-SR-style oscillator1 prompts and reports: load time, tokens per second, seconds per
sample, the valid-program rate (the response parses with ``extract_program`` and the program
evaluates in the sandbox) and valid programs per minute, plus how many valid programs differ
structurally from their parents (normalised ASTs, with and without abstracting constants).

    python benchmarks/local_model.py --data ../shared/data/llmsr/oscillator1 --samples 20
    python benchmarks/local_model.py --engine llama-cpp --template llmsr_fewshot --samples 40

Results are printed as a table and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

from eqforge.agents.llm.base import COMPLETION_STOPS, SamplingParams
from eqforge.agents.llm.local import LocalBackend, available_engines, resolve_model
from eqforge.config import EvaluatorConfig
from eqforge.evaluator.evaluate import Evaluator
from eqforge.problems.registry import load_problem
from eqforge.prompts.builder import ProgramRef, PromptBuilder, initial_program
from eqforge.prompts.parsing import extract_program, normalize

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


async def measure(backend: LocalBackend, problem, template: str, samples: int, per_prompt: int,  # noqa: ANN001
                  temperature: float, max_tokens: int, seed: int, ev: Evaluator) -> dict:
    prompts = build_prompts(problem, template)
    t0 = time.perf_counter()
    await asyncio.to_thread(backend.load)
    load = backend.load_seconds if backend.load_seconds is not None else time.perf_counter() - t0
    rows, gen_seconds, tokens, k = [], 0.0, 0, 0
    while len(rows) < samples:
        prompt, parents = prompts[k % len(prompts)]
        n = min(per_prompt, samples - len(rows))
        sp = SamplingParams(n=n, temperature=temperature, top_p=1.0, max_tokens=max_tokens,
                            seed=seed + 1000 * k,
                            stop=COMPLETION_STOPS if backend.prompt_style == "completion" else ())
        t = time.perf_counter()
        outs = await backend.generate(prompt, sp)
        gen_seconds += time.perf_counter() - t
        k += 1
        for c in outs:
            tokens += c.completion_tokens or 0
            ex = extract_program(c.text, problem.spec, version=prompt.version) if not c.error else None
            row = {"prompt": k - 1, "text": c.text, "finish": c.finish_reason,
                   "tokens": c.completion_tokens, "parsed": bool(ex and ex.ok), "ok": False,
                   "error": c.error or (ex.error if ex and not ex.ok else None)}
            if ex is not None and ex.ok and ex.code is not None:
                res = await ev.evaluate(ex.code, seed=seed)
                row.update(ok=res.ok, error=res.error, score=res.score, program=ex.code)
                if res.ok:
                    row["new_structure"] = all(structure(ex.code) != structure(p) for p in parents)
                    row["new_skeleton"] = all(structure(ex.code, abstract=True) != structure(p, abstract=True)
                                              for p in parents)
            rows.append(row)
    valid = [r for r in rows if r["ok"]]
    return {
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "engine": backend.engine_name, "template": template, "prompt_style": backend.prompt_style,
        "samples": len(rows), "load_seconds": round(load, 2),
        "generation_seconds": round(gen_seconds, 1),
        "tokens_per_second": round(tokens / gen_seconds, 1) if gen_seconds else None,
        "seconds_per_sample": round(gen_seconds / len(rows), 2),
        "parsed": sum(r["parsed"] for r in rows), "valid": len(valid),
        "valid_rate": round(len(valid) / len(rows), 3),
        "valid_per_minute": round(len(valid) / (gen_seconds / 60), 2) if gen_seconds else None,
        "valid_per_minute_incl_load": round(len(valid) / ((gen_seconds + load) / 60), 2),
        "new_structure_share": round(sum(r.get("new_structure", False) for r in valid) / len(valid), 3)
        if valid else None,
        "new_skeleton_share": round(sum(r.get("new_skeleton", False) for r in valid) / len(valid), 3)
        if valid else None,
        "failures": {e: sum(1 for r in rows if r["error"] == e) for e in {r["error"] for r in rows if r["error"]}},
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="GGUF file or model folder (default: the [local] extra's Gemma 3 270M)")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent
                                          / "shared/data/llmsr/oscillator1"))
    ap.add_argument("--engine", action="append", choices=["llama-cpp", "transformers"])
    ap.add_argument("--template", action="append")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--per-prompt", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/local_model.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    print(f"load average before: {os.getloadavg()} on {os.cpu_count()} cores", flush=True)
    path = resolve_model(args.model)
    engines = args.engine or available_engines(path)
    templates = args.template or ["llmsr", "llmsr_fewshot"]
    problem = load_problem("oscillator1", data=args.data)
    results = []
    with Evaluator(problem, EvaluatorConfig(workers=1)) as ev:
        for engine in engines:
            backend = LocalBackend(path, engine=engine)
            for template in templates:
                r = asyncio.run(measure(backend, problem, template, args.samples, args.per_prompt,
                                        args.temperature, args.max_tokens, args.seed, ev))
                results.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "rows"}), flush=True)
                _write(args, path, results)  # after each measurement: a cut-short run keeps its data
            asyncio.run(backend.aclose())
    cols = ["engine", "template", "load_seconds", "tokens_per_second", "seconds_per_sample",
            "valid", "samples", "valid_per_minute", "new_structure_share", "new_skeleton_share"]
    print("\n" + " | ".join(cols))
    for r in results:
        print(" | ".join(str(r[c]) for c in cols))
    print(f"\nwritten to {args.out}")
    return 0


def _write(args: argparse.Namespace, path: Path, results: list[dict]) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": str(path), "args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
