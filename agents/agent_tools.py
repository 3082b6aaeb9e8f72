"""The agent's five tools, run on the trusted side against the loop's own machinery.

SR-Scientist's finding is that the data-analysis tool matters most (without it accuracy
nearly halves), so the tools are built to be honest rather than convenient: ``describe_data``
and ``best_programs`` read trusted numbers only; ``analyze`` runs the model's code in the
sandbox on the training split and returns its printed text (never a score); ``evaluate``
and ``submit`` go through the loop's scoring path, so each is an ordinary recorded sample
that counts against the budget, is deduplicated, and is fitted exactly like any candidate.
Every result is plain text, truncated, in the names the model sees (anonymised strategies
stay anonymised here too).
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from eqforge.prompts.parsing import extract_program

if TYPE_CHECKING:
    from eqforge.agents.loop import DiscoveryLoop

MAX_RESULT = 2000


def truncate(text: str, limit: int = MAX_RESULT) -> str:
    return text if len(text) <= limit else text[: limit - 40] + f"\n… [truncated, {len(text)} chars]"


def describe_data(loop: DiscoveryLoop) -> str:
    """Per-column statistics and the correlation matrix of the training split."""
    spec = loop.hook.prompt_spec
    train = loop.problem.train
    names = [*spec.input_names, spec.output.name]
    cols = np.column_stack([train.X, train.y])
    lines = [f"training rows: {train.n}",
             f"{'column':>10s} " + " ".join(f"{h:>10s}" for h in
                                            ("mean", "std", "min", "25%", "50%", "75%", "max"))]
    for j, name in enumerate(names):
        c = cols[:, j]
        q = np.quantile(c, [0.25, 0.5, 0.75])
        vals = [c.mean(), c.std(), c.min(), *q, c.max()]
        lines.append(f"{name:>10s} " + " ".join(f"{v:10.4g}" for v in vals))
    with np.errstate(all="ignore"):
        corr = np.corrcoef(cols, rowvar=False)
    lines.append("correlation matrix:")
    lines.append(f"{'':>10s} " + " ".join(f"{n:>8s}" for n in names))
    for i, name in enumerate(names):
        lines.append(f"{name:>10s} " + " ".join(f"{corr[i, j]:8.3f}" for j in range(len(names))))
    return truncate("\n".join(lines))


def best_programs(loop: DiscoveryLoop, k: Any) -> str:
    try:
        k = max(1, min(5, int(k)))
    except (TypeError, ValueError):
        k = 3
    seen: set[str] = set()
    best = []
    for r in sorted((r for r in loop.records if r.ok and r.program and r.score is not None),
                    key=lambda r: -float(r.score)):
        if r.program_key in seen:
            continue
        seen.add(r.program_key or r.id)
        best.append(r)
        if len(best) >= k:
            break
    if not best:
        return "no valid programs yet"
    out = []
    for r in best:
        nmse = r.nmse.get("train")
        out.append(f"# {r.id}: NMSE (train) = {nmse:.4g}" if nmse is not None else f"# {r.id}")
        out.append(r.program.rstrip())
    return truncate("\n".join(out))


async def score_candidate(loop: DiscoveryLoop, code: str, base: dict[str, Any], *,
                          submit: bool) -> tuple[str, bool]:
    """``evaluate`` / ``submit``: one recorded sample. Returns (result text, budget left)."""
    if loop._reserve(1) == 0:
        return "the sample budget is exhausted: the episode ends here", False
    try:
        extracted = extract_program(code if "def " in code else f"```python\n{code}\n```",
                                    loop.hook.prompt_spec)
        if extracted.ok and extracted.code is not None:
            base, result = await loop.score(extracted.code, base)
        else:
            from eqforge.evaluator.evaluate import EvalResult

            base = {**base, "program": None}
            result = EvalResult.failure(extracted.error or "parse", extracted.detail)
        rec = loop._commit(base, result, register=submit)
    finally:
        loop.reserved -= 1
    if not rec.ok:
        return truncate(f"{rec.id} failed: {rec.error}: {rec.detail}"), True
    nmse = rec.nmse.get("train")
    lines = [f"{rec.id}: NMSE (train) = {nmse:.4g}" if nmse is not None else f"{rec.id}: ok",
             "fitted params: " + ", ".join(f"{p:.4g}" for p in (rec.params or [])[: rec.n_params or 10])]
    if rec.duplicate_of:
        lines.append(f"(identical to {rec.duplicate_of}, evaluated before)")
    if not submit and rec.program and rec.params:
        diagnosis = await loop.hook.diagnose(rec.program, list(rec.params), rec.id)
        if diagnosis:
            lines.append(diagnosis)
    return truncate("\n".join(lines)), True


def no_submission(loop: DiscoveryLoop, base: dict[str, Any], turns: int) -> str | None:
    """An episode that used its turns without submitting: one failed sample (its id)."""
    from eqforge.evaluator.evaluate import EvalResult

    if loop._reserve(1) == 0:
        return None
    try:
        rec = loop._commit({**base, "program": None}, EvalResult.failure(
            "agent:no-submit", f"the episode used its {turns} turns without calling submit"),
            register=False)
    finally:
        loop.reserved -= 1
    return rec.id


async def analyze(loop: DiscoveryLoop, code: str) -> str:
    """The model's numpy analysis, run in the sandbox on the training split only.

    The code becomes the body of ``analysis(<inputs>, <target>)`` and is checked against the
    candidates' policy, then run as a one-shot sandbox job (same limits, timeout and kernel
    walls as candidates) with the training columns and target as its arguments. What it
    printed (and a returned value) comes back as text; no score is ever computed from it.
    """
    from eqforge.evaluator.runner import ANALYZE
    from eqforge.sandbox.messages import Job
    from eqforge.sandbox.policy import check

    spec = loop.hook.prompt_spec
    names = [*spec.input_names, spec.output.name]
    body = textwrap.indent(textwrap.dedent(code).strip("\n"), "    ") or "    pass"
    program = f"def analysis({', '.join(names)}):\n{body}\n"
    violation = check(program, loop.evaluator.policy)
    if violation is not None:
        return f"refused by the sandbox policy: {violation.reason}: {violation.detail}"
    train = loop.problem.train
    arrays = {n: np.ascontiguousarray(train.X[:, j], float) for j, n in enumerate(spec.input_names)}
    arrays[spec.output.name] = np.ascontiguousarray(train.y, float)
    job = Job(id=("analyze", time.monotonic_ns()), program=program, entry="analysis",
              runner=ANALYZE, arrays=arrays, timeout=min(loop.config.evaluator.timeout, 30.0))
    outcome = await asyncio.wrap_future(loop.evaluator.pool.submit(job))
    printed = outcome.output or ""
    if not outcome.ok:
        return truncate(f"{printed}\nthe analysis failed: {outcome.reason}: {outcome.detail}".strip())
    value = str((outcome.payload or {}).get("text") or "")
    return truncate((printed + (f"\nreturned: {value}" if value else "")).strip() or "(printed nothing)")
