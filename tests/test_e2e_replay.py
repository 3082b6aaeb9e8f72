"""End to end: `eqforge run` on LLM-SR's oscillator1 with a replay model finds the law."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eqforge.cli import main

RESPONSES = Path(__file__).parent / "data" / "oscillator1_responses.jsonl"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, llmsr_data):
    out = tmp_path_factory.mktemp("run") / "demo"
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"),
                 "--llm", f"replay:{RESPONSES}", "--samples", "24", "--seed", "0",
                 "--out", str(out), "--workers", "2", "--quiet"])
    assert code == 0
    return out


def test_true_law_is_found_and_fits_ood(run_dir: Path):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["problem"] == "oscillator1"
    assert summary["samples"] == 24
    assert 0 < summary["valid"] < 24
    best = summary["best"]
    assert "np.cos(x)" in best["program"] and "v**3" in best["program"]
    assert best["nmse"]["test_ood"] < 1e-6
    assert best["nmse"]["test_id"] < 1e-6
    assert set(best["nmse"]) == {"train", "test_id", "test_ood"}
    p = best["params"]
    assert abs(p[0] - 0.8) < 1e-6 and abs(p[1] + 1.0) < 1e-6 and abs(p[2] + 0.2) < 1e-6
    # failures are counted by reason
    assert summary["failures"].get("policy:import", 0) >= 1
    assert summary["failures"].get("parse:calls-earlier-version", 0) >= 1


def test_records_are_complete(run_dir: Path):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["config"]["run"]["seed"] == 0
    assert "numpy" in cfg["versions"] and "scipy" in cfg["versions"]
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    llm = [r for r in lines if r["source"] == "llm"]
    assert len(llm) == 24
    assert [r["index"] for r in lines] == list(range(len(lines)))
    prompts = {json.loads(x)["hash"] for x in (run_dir / "prompts.jsonl").read_text().splitlines()}
    for r in llm:
        assert r["prompt_hash"] in prompts
        assert r["response"] is not None and r["model"].startswith("replay:")
        assert r["island"] is not None and r["parent_ids"]
        if r["ok"]:
            assert r["score"] is not None and len(r["params"]) == 10
        else:
            assert r["error"]
    # identical programs are evaluated once and marked as duplicates
    assert any(r["duplicate_of"] for r in llm)
    best_py = (run_dir / "best.py").read_text()
    assert "PARAMS = [" in best_py and "def equation(" in best_py


def test_same_seed_same_results(run_dir: Path, tmp_path, llmsr_data):
    out = tmp_path / "again"
    assert main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"),
                 "--llm", f"replay:{RESPONSES}", "--samples", "24", "--seed", "0",
                 "--out", str(out), "--workers", "1", "--quiet"]) == 0

    def key(d: Path):
        rows = [json.loads(x) for x in (d / "samples.jsonl").read_text().splitlines()]
        return [(r["index"], r["program_key"], r["error"], r["island"]) for r in rows]

    assert key(out) == key(run_dir)
