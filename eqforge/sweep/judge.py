"""The optional LLM judge of symbolic accuracy (as LLM-SRBench scores SA), beside the sympy check.

LLM-SRBench's paper reports symbolic accuracy from a GPT-4o judge that reads the ground truth
and the discovered equation and says whether they are the same law, constants aside. The
sympy check (``evaluator.analysis.symbolic_accuracy``) is eqforge's SA; the judge is a second
opinion behind a flag (``eqforge sweep DIR --table --judge SPEC``, any ``--llm`` spec, e.g.
``openai:gpt-4o`` or a ``replay:`` file for tests). Every verdict is recorded with its prompt
and the model's response in ``DIR/judge.jsonl`` (a verdict already on record for the same
prompt is reused), and ``DIR/judge.md`` lists, in words, the runs where the two disagree.

It lives in the sweep package, not the analysis: it calls a model backend, which the
analysis layer may not import.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eqforge.aio import run_sync

log = logging.getLogger(__name__)

PROMPT = """You compare two mathematical laws for a scientist.

Law A is the true law of the data. Law B was found by a search that fitted numeric constants.
Decide whether B is the same law as A: the same functional form in the same variables, where
a constant in B may differ from A's only as a fitted approximation of it (e.g. 0.99999 for 1,
or 9.8066 for 9.80665), and algebraically equivalent rewritings count as the same. A law that
only approximates A on some range, or adds or drops a term, is not the same.

Variables: {inputs} -> {output}
Law A (truth): {output} = {truth}
Law B (found): {output} = {found}

Answer with one word on the last line: SAME or DIFFERENT."""

_VERDICT = re.compile(r"\b(SAME|DIFFERENT)\b")


@dataclass
class Verdict:
    run: str
    problem: str
    truth: str
    found: str
    sympy: str | None  # the sympy check's status
    judge: bool | None  # None: the answer had no verdict
    prompt: str
    response: str

    @property
    def disagrees(self) -> bool:
        if self.judge is None or self.sympy not in ("recovered", "not recovered"):
            return False
        return self.judge != (self.sympy == "recovered")


def parse_verdict(text: str) -> bool | None:
    found = _VERDICT.findall(text.upper())
    return None if not found else found[-1] == "SAME"


def judge_prompt(inputs: list[str], output: str, truth: str, found: str) -> str:
    return PROMPT.format(inputs=", ".join(inputs), output=output, truth=truth, found=found)


async def _ask(spec: str, prompts: list[str]) -> list[str]:
    from eqforge.agents.llm.base import SamplingParams
    from eqforge.agents.llm.registry import make_backend
    from eqforge.prompts.prompt import Prompt

    backend = make_backend(spec)
    try:
        out = []
        for i, text in enumerate(prompts):
            prompt = Prompt(completion=text, messages=[{"role": "user", "content": text}], version=0)
            [c] = await backend.generate(prompt, SamplingParams(n=1, temperature=0.0, max_tokens=300, seed=i))
            out.append(c.text)
        return out
    finally:
        await backend.aclose()


def judge_runs(out: Path, items: list[dict[str, Any]], spec: str) -> list[Verdict]:
    """``items``: ``{run, problem, inputs, output, truth, found, sympy}`` per finished run with a
    ground truth and a closed form; returns the verdicts (new ones asked, known ones reused)."""
    path = out / "judge.jsonl"
    known: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                known[rec["prompt"]] = rec
            except (ValueError, KeyError):
                continue
    prompts = [judge_prompt(i["inputs"], i["output"], i["truth"], i["found"]) for i in items]
    todo = [p for p in dict.fromkeys(prompts) if p not in known]
    answers = dict(zip(todo, run_sync(_ask(spec, todo)), strict=True)) if todo else {}
    verdicts = []
    with path.open("a", encoding="utf-8") as f:
        for item, prompt in zip(items, prompts, strict=True):
            response = known[prompt]["response"] if prompt in known else answers[prompt]
            v = Verdict(item["run"], item["problem"], item["truth"], item["found"], item["sympy"],
                        parse_verdict(response), prompt, response)
            if prompt not in known:
                f.write(json.dumps({**asdict(v), "model": spec}) + "\n")
                known[prompt] = {"response": response}
            verdicts.append(v)
    (out / "judge.md").write_text(disagreements_markdown(verdicts, spec), encoding="utf-8")
    return verdicts


def disagreements_markdown(verdicts: list[Verdict], spec: str) -> str:
    agree = sum(1 for v in verdicts if not v.disagrees and v.judge is not None)
    lines = [f"# The LLM judge ({spec}) and the sympy check\n",
             f"{len(verdicts)} verdicts; {agree} agree with the sympy check or have no sympy verdict, "
             f"{sum(v.disagrees for v in verdicts)} disagree, {sum(v.judge is None for v in verdicts)} "
             "gave no verdict.\n"]
    for v in verdicts:
        if v.disagrees:
            says = "the same law" if v.judge else "a different law"
            lines.append(f"- **{v.problem}** ({v.run}): sympy says *{v.sympy}*, the judge says {says}.\n"
                         f"  truth: `{v.truth}` · found: `{v.found}`")
    return "\n".join(lines) + "\n"


def sweep_items(results: list[Any]) -> list[dict[str, Any]]:
    """What the judge reads from finished runs: truth, the best law's closed form, sympy's status."""
    items = []
    for r in results:
        s = r.summary or {}
        best = s.get("best") or {}
        found = best.get("equation")
        if not s.get("ground_truth") or not found:
            continue
        cfg = (r.directory / "config.json")
        try:
            problem = json.loads(cfg.read_text(encoding="utf-8")).get("problem", {})
        except (OSError, ValueError):
            problem = {}
        items.append({"run": r.directory.name, "problem": r.problem, "inputs": list(problem.get("inputs") or []),
                      "output": str(problem.get("output") or "y"), "truth": str(s["ground_truth"]),
                      "found": str(found), "sympy": r.status})
    return items
