"""Programs may not carry data back: the numeric-literal bound, for every strategy.

The agent's ``analyze`` tool shows the model the training targets, so without a bound a
program could return a table of them and score perfectly. The policy bounds the count and
total size of numeric literals (and of non-docstring strings) with a ``policy:literals``
reason; honest skeletons — the shared corpus — stay far below it.
"""

from __future__ import annotations

import json

import pytest

from eqforge.cli import main
from eqforge.sandbox.policy import Policy, check


def _table(n: int) -> str:
    values = ", ".join(f"{0.001 * i:.6f}" for i in range(n))
    return f"def equation(x, v, params):\n    t = np.array([{values}])\n    return params[0] * x + t[:1]\n"


def test_bound_on_count_size_and_strings():
    assert check(_table(20)) is None
    v = check(_table(100))
    assert v is not None and v.reason == "policy:literals" and "102 numeric literals (at most 64)" in v.detail
    huge = "def equation(x, v, params):\n    return x * " + "9" * 700 + "\n"
    assert check(huge).reason == "policy:literals" and "characters in total" in check(huge).detail
    text = "def equation(x, v, params):\n    s = '" + "0.25 " * 150 + "'\n    return x\n"
    assert check(text).reason == "policy:literals"
    doc = "def equation(x, v, params):\n    '''" + "a long docstring " * 100 + "'''\n    return x\n"
    assert check(doc) is None  # docstrings are documentation, not data
    assert check(_table(100), Policy(max_literals=200, max_literal_chars=2000)) is None


def test_honest_corpus_stays_within_the_bound(corpus_programs):
    reasons = [getattr(check(p["code"]), "reason", None) for p in corpus_programs]
    assert "policy:literals" not in reasons


@pytest.mark.parametrize("strategy", ["llmsr", "no-fit", "agent"])
def test_every_strategy_refuses_a_data_table(strategy, tmp_path, llmsr_data):
    code = _table(200).replace("def equation(", "def equation_v1(")
    answer = f"```python\n{code}```" if strategy != "agent" else f"Action: submit\n```python\n{code}```"
    replay = tmp_path / "r.jsonl"
    replay.write_text(json.dumps({"response": answer}) + "\n")
    out = tmp_path / strategy
    assert main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", f"replay:{replay}",
                 "--samples", "1", "--samples-per-prompt", "1", "--out", str(out), "--workers", "1",
                 "--quiet", "--strategy", strategy]) == 0
    [rec] = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()
             if json.loads(x)["source"] == "llm"]
    assert not rec["ok"] and rec["error"] == "policy:literals"
