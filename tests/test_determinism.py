"""Analysis results do not depend on the machine's load (issue 21, class 5).

The same sweep (a replay model, a handful of samples) is run once on an idle machine and
once next to CPU hogs (busy-looping subprocesses, killed afterwards), locally and on Ray
(skipped without ray; CI installs it): the results tables must be identical except for the
wall-time column, and so must every run's closed form and recovery verdict. The replayed
answers include the ground truth of oscillator1, so the recovery check (expand, simplify)
runs in full each time.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TRUTH = ("    return params[0]*np.sin(x) + params[1]*x*np.cos(x) + params[2]*x**3"
         " + params[3]*v**3 + params[4]*x*v\n")
#: what a clock measured (wall and CPU time, totals or per solved problem): the only
#: columns that may differ
TIME_WORDS = ("seconds", "cpu", "wall")
OTHER = "    return params[0]*x + params[1]*v + params[2]*x**3\n"


def _replay(path: Path) -> Path:
    answers = [f"```python\ndef equation_v1(x, v, params):\n{b}```" for b in (OTHER, TRUTH)]
    path.write_text("".join(json.dumps({"response": a}) + "\n" for a in answers))
    return path


def _sweep(tmp: Path, name: str, llm: Path, *, ray: str | None = None, hogs: int = 0,
           ) -> tuple[list[dict], list[dict]]:
    from test_sweep import write_sweep

    from eqforge.sweep.command import sweep

    f = write_sweep(tmp / f"{name}.toml", samples=3, seeds=(0,), llms=(f"replay:{llm}",))
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
    try:
        assert sweep(str(f), out=str(tmp / name), parallel=1, ray=ray, quiet=True) == 0
    finally:
        for p in procs:
            p.kill()
            p.wait()
    rows = [{k: v for k, v in r.items() if not any(w in k for w in TIME_WORDS)}
            for r in csv.DictReader((tmp / name / "results.csv").open())]
    verdicts = []
    for d in sorted((tmp / name / "runs").iterdir()):
        s = json.loads((d / "summary.json").read_text())
        best = s.get("best") or {}
        verdicts.append({k: best.get(k) for k in ("id", "equation", "complexity", "recovered",
                                                  "recovery_status", "law_status")}
                        | {"recovered": s.get("recovered"), "status": s.get("recovery_status")})
    return rows, verdicts


def _diff(a: tuple[list[dict], list[dict]], b: tuple[list[dict], list[dict]]) -> list[str]:
    out = []
    for part_a, part_b in zip(a, b, strict=True):
        for ra, rb in zip(part_a, part_b, strict=False):
            out += [f"{k}: {ra.get(k)!r} != {rb.get(k)!r}" for k in sorted(set(ra) | set(rb))
                    if ra.get(k) != rb.get(k)]
    return out


def test_sweep_tables_do_not_depend_on_load(tmp_path: Path, llmsr_data: Path) -> None:
    llm = _replay(tmp_path / "answers.jsonl")
    idle = _sweep(tmp_path, "idle", llm)
    loaded = _sweep(tmp_path, "loaded", llm, hogs=3)
    assert idle == loaded, _diff(idle, loaded)
    [verdict] = idle[1]
    assert verdict["status"] == "recovered" and verdict["recovered"] is True, verdict
    assert verdict["law_status"] == "verified", verdict


def test_ray_sweep_tables_match_local_idle_and_loaded(tmp_path: Path, llmsr_data: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed; pip install 'eqforge[ray]'")
    llm = _replay(tmp_path / "answers.jsonl")
    local = _sweep(tmp_path, "local", llm)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        idle = _sweep(tmp_path, "ray-idle", llm, ray="local")
        loaded = _sweep(tmp_path, "ray-loaded", llm, ray="local", hogs=3)
    finally:
        ray.shutdown()
    assert idle == local, _diff(local, idle)
    assert loaded == local, _diff(local, loaded)
