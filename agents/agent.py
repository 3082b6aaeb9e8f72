"""The tool-using proposer (``--strategy agent``): multi-turn episodes in the SR-Scientist style.

An episode is one conversation: the task (the problem as the strategy lets the model see it,
the signature, the tools), then up to ``agent_turns`` model turns, each calling tools whose
results come back into the conversation, until the model submits. Several episodes run at
once (one per loop worker). Every turn is a line of ``turns.jsonl`` written before the next
model call — the messages it added, its tool calls and results, tokens and cost — so
``--resume`` after a kill rebuilds open conversations from disk and continues them instead
of starting over, and the report can show how the best program came about. The sample, time
and cost budgets are checked before every model call and inside ``evaluate``/``submit``, so
a budget ends an episode between turns, never in the middle of one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from string import Template
from typing import Any

from eqforge.agents import agent_tools as tools
from eqforge.agents.agent_protocol import (
    COMPLETION_STOPS,
    ModelTurn,
    supports_tools,
    text_turn,
    tools_turn,
)
from eqforge.agents.agent_tools import AgentContext
from eqforge.agents.llm.base import SamplingParams
from eqforge.errors import BackendError
from eqforge.prompts.builder import signature
from eqforge.prompts.strategy import strategy_template

log = logging.getLogger(__name__)


def protocol_for(ctx: AgentContext) -> str:
    chosen = ctx.sampler.agent_protocol
    if chosen == "auto":
        return "tools" if supports_tools(ctx.backend) else "text"
    if chosen == "tools" and not supports_tools(ctx.backend):
        raise BackendError(f"--agent-protocol tools needs an openai or openai-compatible chat "
                           f"backend; {ctx.backend.name} is {ctx.backend.prompt_style}-style: "
                           "use --agent-protocol text")
    return chosen


def task_messages(ctx: AgentContext, protocol: str) -> list[dict[str, Any]]:
    spec = ctx.hook.prompt_spec
    name = ctx.hook.name
    variables = "\n".join(
        f"- {v.name}: {v.description or 'input'}" + (f" ({v.unit})" if v.unit else "")
        for v in spec.inputs)
    fields = dict(description=spec.description, variables=variables,
                  output=f"{spec.output.name}: {spec.output.description or 'output'}"
                  + (f" ({spec.output.unit})" if spec.output.unit else ""),
                  signature=signature(spec).replace(" -> np.ndarray", ""),
                  max_params=ctx.max_params,
                  turns=ctx.sampler.agent_turns,
                  inputs=", ".join(spec.input_names), target=spec.output.name)
    system = strategy_template(name, "agent_system").strip()
    if protocol == "text":
        system += "\n\n" + Template(strategy_template(name, "agent_text")).substitute(
            first_input=spec.input_names[0], target=spec.output.name).strip()
    task = Template(strategy_template(name, "agent_task")).substitute(fields).strip()
    return [{"role": "system", "content": system}, {"role": "user", "content": task}]


class Episode:
    def __init__(self, ctx: AgentContext, eid: str, island: int, protocol: str,
                 messages: list[dict[str, Any]], turn: int = 0) -> None:
        self.ctx, self.id, self.island, self.protocol = ctx, eid, island, protocol
        self.messages = messages
        self.turn = turn

    def _record(self, **fields: Any) -> None:
        ledger = self.ctx.ledger
        ledger.recorder.write_turn({"episode": self.id, "turn": self.turn, "island": self.island,
                                    "protocol": self.protocol, "elapsed": ledger.stats.elapsed, **fields})

    async def run(self) -> None:
        ledger = self.ctx.ledger
        max_turns = self.ctx.sampler.agent_turns
        if self.turn == 0:
            self._record(messages=self.messages, done=False)
        while True:
            if self.turn >= max_turns:
                return self._end("turns")
            if not ledger.budget_left():
                return self._end(ledger.stop_reason or "budget", final=False)
            self.turn += 1
            if self.turn == max_turns:
                self.messages.append({"role": "user", "content": "This is your last turn: "
                                      "call submit with your best equation now."})
            try:
                reply = await self._ask()
            except BackendError as exc:
                ledger.fail(exc)
                return self._end("backend error", final=False)
            ledger.charge(reply.prompt_tokens, reply.completion_tokens, reply.cost)
            added = [*([self.messages[-1]] if self.turn == max_turns else []), reply.message]
            self.messages.append(reply.message)
            results, done = await self._run_tools(reply)
            added += results["messages"]
            self.messages += results["messages"]
            self._record(messages=added, text=reply.text, error=reply.error,
                         tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments}
                                     for c in reply.calls],
                         results=results["log"], model=reply.model, seconds=round(reply.seconds, 3),
                         prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                         cost=reply.cost, finish_reason=reply.finish_reason, done=done,
                         end="submit" if done and results["submitted"] else
                         ("budget" if done else None))
            if done:
                return None

    def _end(self, reason: str, *, final: bool = True) -> None:
        # A budget stop leaves the episode open: a resumed run with more budget continues it.
        sample = None
        if reason == "turns":  # no proposal: a failed sample, so the budget bounds such episodes
            sample = tools.no_submission(self.ctx, self._base("submit", ""), self.turn)
        self._record(messages=[], done=final, end=reason, sample=sample)

    def _base(self, tool: str, code: str, reply: ModelTurn | None = None) -> dict[str, Any]:
        """The fields of a sample this episode produces (tokens are counted per turn)."""
        return {"source": "llm", "island": self.island, "prompt_hash": None, "parent_ids": [],
                "model": reply.model if reply else None, "prompt_style": f"agent:{self.protocol}",
                "response": code, "llm_seconds": reply.seconds if reply else 0.0,
                "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0,
                "finish_reason": reply.finish_reason if reply else None, "episode": self.id,
                "turn": self.turn, "tool": tool, "registered": tool == "submit"}

    async def _ask(self) -> ModelTurn:
        ctx = self.ctx
        sc = ctx.sampler
        seed = None if ctx.seed is None else ctx.seed + 1000 * ctx.ledger.next_index + self.turn
        sampling = SamplingParams(n=1, temperature=sc.temperature, top_p=sc.top_p,
                                  max_tokens=sc.max_tokens, seed=seed,
                                  stop=COMPLETION_STOPS if ctx.backend.prompt_style == "completion" else ())
        if self.protocol == "tools":
            return await tools_turn(ctx.backend, self.messages, sampling)
        return await text_turn(ctx.backend, self.messages, sampling)

    async def _run_tools(self, reply: ModelTurn) -> tuple[dict[str, Any], bool]:
        ctx, ledger = self.ctx, self.ctx.ledger
        messages: list[dict[str, Any]] = []
        log_: list[dict[str, Any]] = []
        done = submitted = False
        calls = reply.calls
        if not calls:
            text = ("No tool call found. Call one of the tools" if self.protocol == "tools" else
                    "No action found. End your message with `Action: NAME` (describe_data, analyze, "
                    "evaluate, best_programs, submit), code in one ```python block")
            messages.append({"role": "user", "content": text + "."})
            log_.append({"name": None, "result": text})
        for call in calls:
            if done:
                break
            base = self._base(call.name, str(call.arguments.get("code", "")), reply)
            before = ledger.next_index
            t0 = time.monotonic()
            if call.error is not None:  # invalid call (agent_protocol.validate_call): the model reads why
                result = call.error
            elif call.name == "describe_data":
                result = tools.describe_data(ctx)
            elif call.name == "best_programs":
                result = tools.best_programs(ctx, call.arguments.get("k", 3))
            elif call.name == "analyze":
                result = await tools.analyze(ctx, str(call.arguments.get("code", "")))
            elif call.name in ("evaluate", "submit"):
                result, more = await tools.score_candidate(
                    ctx, str(call.arguments.get("code", "")), base, submit=call.name == "submit")
                submitted = call.name == "submit" and more
                done = call.name == "submit" or not more
            else:
                result = f"unknown tool {call.name!r}; the tools are: describe_data, analyze, " \
                         "evaluate, best_programs, submit"
            sample = f"s{before}" if ledger.next_index > before else None
            log_.append({"name": call.name, "result": result, "sample": sample,
                         "seconds": round(time.monotonic() - t0, 3)})
            if self.protocol == "tools" and call.id:
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            else:
                messages.append({"role": "user", "content": f"Observation ({call.name}):\n{result}"})
        return {"messages": messages, "log": log_, "submitted": submitted}, done


async def run_episodes(ctx: AgentContext) -> None:
    """One worker: continue open episodes of an earlier session first, then start new ones."""
    state, ledger = ctx.state, ctx.ledger
    protocol = protocol_for(ctx)
    while ledger.budget_left():
        if state.active >= ledger.stats.budget - ledger.stats.samples:
            await asyncio.sleep(0.05)  # no episode beyond what the sample budget can still pay for
            continue
        if state.open:
            ep_data = state.open.pop(0)
            ep = Episode(ctx, ep_data["id"], ep_data["island"], ep_data["protocol"],
                         ep_data["messages"], ep_data["turn"])
        else:
            state.count += 1
            island, _ = ctx.db.sample()
            ep = Episode(ctx, f"e{state.count}", island, protocol, task_messages(ctx, protocol))
        state.active += 1
        try:
            await ep.run()
        finally:
            state.active -= 1
