"""A classical searcher's best closed form is verified against the sandbox's predictions,
as a model's is (issue 21 req 4): the law shown is what was scored."""

from __future__ import annotations

import json
from pathlib import Path

from eqforge.cli import main


def test_sindy_run_best_law_is_verified(tmp_path: Path) -> None:
    out = tmp_path / "sindy"
    assert main(["run", "feynman-I.12.1", "--llm", "sindy:degree=2", "--samples", "10",
                 "--out", str(out), "--workers", "1", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    best = summary["best"]
    assert best["law_status"] == "verified", best.get("verification")
    assert best["verification"]["status"] == "verified"
