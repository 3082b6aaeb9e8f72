"""Ray: sandbox pools as actors on the cluster's nodes, and sweeps as Ray tasks.

One small local Ray instance (2 CPUs, no dashboard) is started for the module and shut
down after it. Skipped with the reason when ray cannot be imported (``pip install
'eqforge[ray]'``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed; pip install 'eqforge[ray]' to run these tests")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():  # noqa: ANN201
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield "local"  # already initialised: eqforge joins it and leaves it running
    ray.shutdown()


def test_evaluation_on_ray_scores_a_corpus_like_local(local_ray, corpus_programs, llmsr_data) -> None:  # noqa: ANN001
    from eqforge.config import EvaluatorConfig
    from eqforge.evaluator.evaluate import Evaluator
    from eqforge.problems.registry import load_problem

    problem = load_problem("oscillator1", data=llmsr_data / "oscillator1")
    codes = [p["code"] for p in corpus_programs if p["problem"] == "oscillator1"][:10]
    with Evaluator(problem, EvaluatorConfig(workers=2)) as ev:
        local = ev.evaluate_many(codes)
    with Evaluator(problem, EvaluatorConfig(workers=2, ray=local_ray)) as ev:
        distributed = ev.evaluate_many(codes)
        isolation = ev.pool.isolation
        assert ev.pool.size == 2 and ev.pool.network_isolation == ev.pool.nodes[0]["network"]
    assert isolation["nodes"]  # every node's pool reports what it enforces
    assert any(r.ok for r in local)
    for a, b in zip(local, distributed, strict=True):
        assert (a.ok, a.error) == (b.ok, b.error)
        if a.ok:
            assert b.score == pytest.approx(a.score, rel=1e-9)
            assert b.nmse["test_ood"] == pytest.approx(a.nmse["test_ood"], rel=1e-6)


def test_sweep_on_ray_gives_the_local_table(local_ray, tmp_path: Path) -> None:  # noqa: ANN001
    from test_sweep import write_sweep

    from eqforge.sweep.command import sweep

    f = write_sweep(tmp_path / "s.toml", samples=4, seeds=(0, 1))
    assert sweep(str(f), out=str(tmp_path / "local"), parallel=2, quiet=True) == 0
    assert sweep(str(f), out=str(tmp_path / "ray"), ray=local_ray, quiet=True) == 0

    def table(d: Path) -> list[dict]:
        timing = {"wall_seconds", "cpu_seconds", "strategy_cpu_per_solved", "strategy_wall_per_solved"}
        return [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader((d / "results.csv").open())]

    assert table(tmp_path / "ray") == table(tmp_path / "local")
    runs = sorted((tmp_path / "ray" / "runs").iterdir())
    assert len(runs) == 2 and all(json.loads((d / "summary.json").read_text())["samples"] == 4 for d in runs)
    assert ray.is_initialized()  # eqforge did not shut down the instance it joined
