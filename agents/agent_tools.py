"""The agent's five tools, run on the trusted side against the loop's own machinery.

SR-Scientist's finding is that the data-analysis tool matters most (without it accuracy
nearly halves), so the tools are built to be honest rather than convenient: ``describe_data``
and ``best_programs`` read trusted numbers only; ``analyze`` runs the model's code in the
sandbox on the training split and returns its printed text (never a score); ``evaluate``
and ``submit`` go through the run's scoring step (``agents.scoring``), so each is an ordinary
recorded sample that counts against the budget, is deduplicated, and is fitted exactly like
any candidate. Every result is plain text, truncated, in the names the model sees (anonymised
strategies stay anonymised here too).

The tools, and the episodes that call them (``agents.agent``), see the run through an
``AgentContext``: the ledger, the scoring step, the strategy hook, the backend and the
settings they need — never the loop.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eqforge.agents.database import ProgramsDatabase
from eqforge.agents.ledger import Ledger
from eqforge.agents.llm.base import LLMBackend
from eqforge.agents.scoring import Scoring
from eqforge.agents.strategies import StrategyHook
from eqforge.config import SamplerConfig
from eqforge.evaluator.evaluate import EvalResult, Evaluator
from eqforge.problems.spec import Split
from eqforge.prompts.parsing import extract_program

MAX_RESULT = 2000


@dataclass
class AgentState:
    """Episodes of an agent run: how many were started, which are still open (to resume)."""

    count: int = 0
    active: int = 0
    open: list[dict[str, Any]] = field(default_factory=list)

    def restore(self, turns: list[dict[str, Any]], ledger: Ledger) -> None:
        episodes: dict[str, dict[str, Any]] = {}
        for t in turns:
            ep = episodes.setdefault(t["episode"], {"id": t["episode"], "island": t.get("island", 0),
                                                    "protocol": t.get("protocol", "text"),
                                                    "messages": [], "turn": 0, "done": False})
            ep["messages"] += t.get("messages") or []
            ep["turn"] = max(ep["turn"], int(t.get("turn", 0)))
            ep["done"] = bool(t.get("done"))
            ledger.charge(t.get("prompt_tokens"), t.get("completion_tokens"), t.get("cost"))
        self.count = max((int(e[1:]) for e in episodes if e[1:].isdigit()), default=0)
        self.open = [e for e in episodes.values() if not e["done"]]


@dataclass(frozen=True)
class AgentContext:
    """All an agent episode and its tools may touch (the loop builds one per run)."""

    ledger: Ledger
    scoring: Scoring
    hook: StrategyHook
    backend: LLMBackend
    db: ProgramsDatabase
    evaluator: Evaluator
    train: Split
    sampler: SamplerConfig
    max_params: int
    #: seconds an ``analyze`` job may run (the candidates' timeout, at most 30)
    timeout: float
    seed: int | None
    state: AgentState = field(default_factory=AgentState)


def truncate(text: str, limit: int = MAX_RESULT) -> str:
    return text if len(text) <= limit else text[: limit - 40] + f"\n… [truncated, {len(text)} chars]"


def describe_data(ctx: AgentContext) -> str:
    """Per-column statistics and the correlation matrix of the training split."""
    spec = ctx.hook.prompt_spec
    train = ctx.train
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


def best_programs(ctx: AgentContext, k: Any) -> str:
    try:
        k = max(1, min(5, int(k)))  # validated already (agent_protocol.validate_call); kept defensive
    except (TypeError, ValueError, OverflowError):
        k = 3
    seen: set[str] = set()
    best = []
    for r in sorted((r for r in ctx.ledger.records if r.ok and r.program and r.score is not None),
                    key=lambda r: -float(r.score or 0.0)):
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
        out.append((r.program or "").rstrip())
    return truncate("\n".join(out))


async def score_candidate(ctx: AgentContext, code: str, base: dict[str, Any], *,
                          submit: bool) -> tuple[str, bool]:
    """``evaluate`` / ``submit``: one recorded sample. Returns (result text, budget left)."""
    with ctx.ledger.reserve(1) as slot:
        if not slot.n:
            return "the sample budget is exhausted: the episode ends here", False
        extracted = extract_program(code if "def " in code else f"```python\n{code}\n```",
                                    ctx.hook.prompt_spec)
        if extracted.ok and extracted.code is not None:
            base, result = await ctx.scoring.evaluate(extracted.code, base)
        else:
            base = {**base, "program": None}
            result = EvalResult.failure(extracted.error or "parse", extracted.detail)
        rec = ctx.scoring.commit(base, result, register=submit)
    if not rec.ok:
        return truncate(f"{rec.id} failed: {rec.error}: {rec.detail}"), True
    nmse = rec.nmse.get("train")
    lines = [f"{rec.id}: NMSE (train) = {nmse:.4g}" if nmse is not None else f"{rec.id}: ok",
             "fitted params: " + ", ".join(f"{p:.4g}" for p in (rec.params or [])[: rec.n_params or 10])]
    if rec.duplicate_of:
        lines.append(f"(identical to {rec.duplicate_of}, evaluated before)")
    if not submit and rec.program and rec.params:
        diagnosis = await ctx.hook.diagnose(rec.program, list(rec.params), rec.id)
        if diagnosis:
            lines.append(diagnosis)
    return truncate("\n".join(lines)), True


def no_submission(ctx: AgentContext, base: dict[str, Any], turns: int) -> str | None:
    """An episode that used its turns without submitting: one failed sample (its id)."""
    with ctx.ledger.reserve(1) as slot:
        if not slot.n:
            return None
        rec = ctx.scoring.commit({**base, "program": None}, EvalResult.failure(
            "agent:no-submit", f"the episode used its {turns} turns without calling submit"),
            register=False)
    return rec.id


async def analyze(ctx: AgentContext, code: str) -> str:
    """The model's numpy analysis, run in the sandbox on the training split only.

    The code becomes the body of ``analysis(<inputs>, <target>)`` and is checked against the
    candidates' policy, then run as a one-shot sandbox job (same limits, timeout and kernel
    walls as candidates) with the training columns and target as its arguments. What it
    printed (and a returned value) comes back as text; no score is ever computed from it.
    """
    from eqforge.evaluator.runner import ANALYZE
    from eqforge.sandbox.messages import Job
    from eqforge.sandbox.policy import check

    spec = ctx.hook.prompt_spec
    names = [*spec.input_names, spec.output.name]
    body = textwrap.indent(textwrap.dedent(code).strip("\n"), "    ") or "    pass"
    program = f"def analysis({', '.join(names)}):\n{body}\n"
    violation = check(program, ctx.evaluator.policy)
    if violation is not None:
        return f"refused by the sandbox policy: {violation.reason}: {violation.detail}"
    train = ctx.train
    arrays = {n: np.ascontiguousarray(train.X[:, j], float) for j, n in enumerate(spec.input_names)}
    arrays[spec.output.name] = np.ascontiguousarray(train.y, float)
    job = Job(id=("analyze", time.monotonic_ns()), program=program, entry="analysis",
              runner=ANALYZE, arrays=arrays, timeout=ctx.timeout)
    outcome = await asyncio.wrap_future(ctx.evaluator.pool.submit(job))
    printed = outcome.output or ""
    if not outcome.ok:
        return truncate(f"{printed}\nthe analysis failed: {outcome.reason}: {outcome.detail}".strip())
    value = str((outcome.payload or {}).get("text") or "")
    return truncate((printed + (f"\nreturned: {value}" if value else "")).strip() or "(printed nothing)")
