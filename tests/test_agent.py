"""The tool-using agent: OpenAI tools API (canned tool calls), text protocol (replay), resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tools_stub import ToolCallingStub

from eqforge.agents.agent_protocol import parse_action
from eqforge.cli import main

TRUE = ("def equation(x, v, params):\n    return params[0] * np.sin(x) + params[1] * x * np.cos(x)"
        " + params[2] * x**3 + params[3] * v**3 + params[4] * x * v\n")
LINEAR = "def equation(x, v, params):\n    return params[0] * x + params[1] * v\n"
TEXT_TURNS = [
    "Let me look at the data first.\nAction: describe_data",
    f"Action: evaluate\n```python\n{LINEAR}```",
    "Action: best_programs 2",
    f"The residual correlates with sin(x).\nAction: submit\n```python\n{TRUE}```",
]


def _read(out: Path, name: str) -> list[dict]:
    path = out / name
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _run(out: Path, data: Path, llm: list[str], *extra: str) -> int:
    return main(["run", "oscillator1", "--data", str(data / "oscillator1"), *llm, "--seed", "0",
                 "--out", str(out), "--workers", "1", "--quiet", "--strategy", "agent", *extra])


def test_text_protocol_parsing():
    assert [c.name for c in parse_action("Thinking.\nAction: describe_data")] == ["describe_data"]
    [c] = parse_action("**Action:** `analyze`\n```python\nprint(1)\n```")
    assert c.name == "analyze" and c.arguments["code"].strip() == "print(1)"
    [c] = parse_action("Action: best_programs 4")
    assert c.arguments == {"k": 4}
    [c] = parse_action(f"Here it is:\n```python\n{TRUE}```")  # no action: a program is a submit
    assert c.name == "submit" and "np.sin(x)" in c.arguments["code"]
    assert parse_action("I do not know.") == []


def test_tools_api_episode_against_a_canned_server(tmp_path, llmsr_data):
    turns = [
        {"content": "Looking at the data.", "tool_calls": [("describe_data", {})]},
        {"tool_calls": [("evaluate", {"code": LINEAR}), ("best_programs", {"k": 2})]},
        {"content": "Submitting.", "tool_calls": [("submit", {"code": TRUE})]},
    ]
    out = tmp_path / "tools"
    with ToolCallingStub(turns) as stub:
        code = _run(out, llmsr_data, ["--llm", "openai-compatible", "--base-url", stub.base_url,
                                      "--model", "m", "--no-cache"], "--samples", "2",
                    "--concurrency", "1")
        requests = list(stub.requests)
    assert code == 0
    assert len(requests) == 3
    for body in requests:
        assert {t["function"]["name"] for t in body["tools"]} == {
            "describe_data", "analyze", "evaluate", "best_programs", "submit"}
    second = requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "describe_data"
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "call_1_0"
    assert "correlation matrix" in second[-1]["content"]
    third = requests[2]["messages"]
    tool_replies = [m for m in third if m["role"] == "tool"]
    assert len(tool_replies) == 3 and "NMSE (train)" in tool_replies[1]["content"]
    assert "by quantile of x" in tool_replies[1]["content"]  # the residual diagnosis
    samples = [r for r in _read(out, "samples.jsonl") if r["source"] == "llm"]
    assert [(r["tool"], r["episode"]) for r in samples] == [("evaluate", "e1"), ("submit", "e1")]
    recorded = _read(out, "turns.jsonl")
    assert [t["turn"] for t in recorded] == [0, 1, 2, 3]
    assert recorded[-1]["done"] and recorded[-1]["end"] == "submit"
    assert recorded[2]["tool_calls"][1] == {"id": "call_2_1", "name": "best_programs",
                                            "arguments": {"k": 2}}
    assert all(t["prompt_tokens"] == 100 for t in recorded[1:])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"] == "agent" and summary["best"]["episode"] == "e1"
    assert summary["best"]["nmse"]["test_ood"] < 1e-6
    assert summary["tokens"]["prompt"] == 300  # every turn counted, not only those with samples
    assert main(["report", str(out), "--format", "markdown"]) == 0
    report = (out / "report.md").read_text()
    assert "## How the best equation was found (agent episode e1)" in report
    assert "- `submit → s2`" in report and "correlation matrix" in report


def test_text_protocol_with_replay_and_resume(tmp_path, llmsr_data):
    replay = tmp_path / "turns.jsonl"
    replay.write_text("".join(json.dumps({"response": t}) + "\n" for t in TEXT_TURNS))
    out = tmp_path / "text"
    # budget 1: the episode evaluates once, then stops at the budget, still open
    assert _run(out, llmsr_data, ["--llm", f"replay:{replay}"], "--samples", "1") == 0
    first = _read(out, "turns.jsonl")
    assert first[-1]["end"] == "budget" and not first[-1]["done"]
    assert first[1]["messages"][1]["content"].startswith("Observation (describe_data):")
    with (out / "turns.jsonl").open("a") as fh:  # a kill while a turn was being written
        fh.write('{"episode": "e1", "turn": 9, "mess')
    assert main(["run", "--resume", str(out), "--samples", "2", "--quiet"]) == 0
    turns = _read(out, "turns.jsonl")
    assert turns[: len(first)] == first  # nothing recorded before was lost or rewritten
    resumed = [t for t in turns[len(first):] if t["episode"] == "e1"]
    assert resumed and resumed[0]["turn"] == first[-2]["turn"] + 1  # the same conversation goes on
    samples = [r for r in _read(out, "samples.jsonl") if r["source"] == "llm"]
    assert len(samples) == 2 and {r["episode"] for r in samples} == {"e1"}
    # the replayed model continues where it stopped: the next answer is the third one
    assert resumed[0]["text"] == TEXT_TURNS[2]


def test_agent_protocol_tools_needs_a_chat_api_backend(tmp_path, llmsr_data, capsys):
    replay = tmp_path / "r.jsonl"
    replay.write_text(json.dumps({"response": "Action: describe_data"}) + "\n")
    code = _run(tmp_path / "x", llmsr_data, ["--llm", f"replay:{replay}"], "--samples", "1",
                "--agent-protocol", "tools")
    assert code == 1
    assert "use --agent-protocol text" in capsys.readouterr().err


@pytest.mark.parametrize("limit", [["--max-seconds", "0.001"]])
def test_time_budget_stops_episodes_cleanly(tmp_path, llmsr_data, limit):
    replay = tmp_path / "r.jsonl"
    replay.write_text("".join(json.dumps({"response": t}) + "\n" for t in TEXT_TURNS))
    out = tmp_path / "t"
    assert _run(out, llmsr_data, ["--llm", f"replay:{replay}"], "--samples", "50", *limit) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "time budget" and summary["samples"] < 50


def test_hostile_analysis_is_contained(tmp_path, llmsr_data):
    """analyze runs the model's code like a candidate: policy first, then the sandbox."""
    marker = tmp_path / "escaped"
    hostile = [
        "import os\nos.system('touch " + str(marker) + "')",  # refused before it runs
        "print(().__class__.__bases__[0].__subclasses__())",  # introspection: refused
        "np.savetxt('" + str(marker) + "', a)",  # file output through numpy: refused
        "print(np.ma.extras.ma.inspect.stack())",  # reached at runtime: blocked by the guard
        "big = np.ones((1 << 31,))\nprint(big.sum())",  # 16 GiB: the memory limit
        "while True:\n    pass",  # the timeout
    ]
    turns = [f"Action: analyze\n```python\n{h}\n```" for h in hostile]
    turns.append("Action: analyze\n```python\nprint('rows', len(x), 'corr', np.corrcoef(x, a)[0, 1])\n```")
    turns.append(f"Action: submit\n```python\n{LINEAR}```")
    replay = tmp_path / "hostile.jsonl"
    replay.write_text("".join(json.dumps({"response": t}) + "\n" for t in turns))
    out = tmp_path / "h"
    assert _run(out, llmsr_data, ["--llm", f"replay:{replay}"], "--samples", "1", "--timeout", "4",
                "--agent-turns", "10") == 0
    results = [r for t in _read(out, "turns.jsonl") for r in t.get("results") or []]
    analyses = [r["result"] for r in results if r["name"] == "analyze"]
    assert len(analyses) == 7
    assert analyses[0].startswith("refused by the sandbox policy: policy:import")
    assert analyses[1].startswith("refused by the sandbox policy")
    assert analyses[2].startswith("refused by the sandbox policy")
    assert "the analysis failed: policy:runtime" in analyses[3]
    assert "the analysis failed" in analyses[4]
    assert "the analysis failed: timeout" in analyses[5]
    assert analyses[6].startswith("rows 10000 corr -0.95")  # training split only
    assert not marker.exists()
    samples = [r for r in _read(out, "samples.jsonl") if r["source"] == "llm"]
    assert len(samples) == 1 and samples[0]["tool"] == "submit"  # analyses are never samples


def test_cost_budget_stops_agent_episodes_cleanly(tmp_path, llmsr_data):
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."m"]\ninput = 100.0\noutput = 0.0\n')  # $0.01 per 100-token turn
    out = tmp_path / "cost"
    with ToolCallingStub([{"tool_calls": [("describe_data", {})]}]) as stub:
        code = _run(out, llmsr_data, ["--llm", "openai-compatible", "--base-url", stub.base_url,
                                      "--model", "m", "--no-cache", "--prices", str(prices)],
                    "--samples", "5", "--concurrency", "1", "--max-cost", "0.025")
        calls = stub.calls
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "cost budget" and summary["samples"] == 0
    assert calls == 3 and abs(summary["cost"] - 0.03) < 1e-9
    turns = _read(out, "turns.jsonl")
    assert turns[-1]["end"] == "cost budget" and not turns[-1]["done"]  # resumable with more budget


def test_episodes_without_submission_count_against_the_budget(tmp_path, llmsr_data):
    """A model that never proposes must not loop forever: each such episode is a failed sample."""
    replay = tmp_path / "idle.jsonl"
    replay.write_text(json.dumps({"response": "Action: describe_data"}) + "\n")
    out = tmp_path / "idle"
    assert _run(out, llmsr_data, ["--llm", f"replay:{replay}"], "--samples", "2", "--agent-turns", "2") == 0
    samples = [r for r in _read(out, "samples.jsonl") if r["source"] == "llm"]
    assert [r["error"] for r in samples] == ["agent:no-submit", "agent:no-submit"]
    ends = [t for t in _read(out, "turns.jsonl") if t.get("end")]
    assert [(t["episode"], t["end"], t["sample"]) for t in ends] == [("e1", "turns", "s1"), ("e2", "turns", "s2")]


def test_replay_from_an_agent_run_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "agent-run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"sampler": {"strategy": "agent"}},
                                                 "run": {"problem": "oscillator1"}}))
    (run / "samples.jsonl").write_text("")
    (run / "turns.jsonl").write_text("")
    assert main(["run", "--replay-from", str(run), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "is an agent run" in capsys.readouterr().err
