"""What a report is made of: the run read back (``RunData``), its predictions, the built ``Report``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eqforge.evaluator.analysis import Entry, RunAnalysis
from eqforge.evaluator.analysis.laws import Law, entry_laws
from eqforge.evaluator.analysis.pareto import pareto_front
from eqforge.evaluator.rundir import RunDir, SampleRecord

log = logging.getLogger(__name__)

SPLIT_LABELS = {"train": "train", "test_id": "test ID", "test_ood": "test OOD"}
PLOT_FILES = {"pareto": "plot-pareto.png", "progress": "plot-progress.png",
              "validity": "plot-validity.png", "fit": "plot-fit.png"}


@dataclass
class RunData:
    directory: Path
    config: dict[str, Any]
    samples: list[dict[str, Any]]
    summary: dict[str, Any] | None
    problem: Any = None  # eqforge.problems.spec.Problem, or None when it cannot be loaded
    problem_error: str | None = None
    run_config: Any = None  # eqforge.config.Config
    notes: list[str] = field(default_factory=list)
    records: list[SampleRecord] = field(default_factory=list)

    @property
    def llm_samples(self) -> list[dict[str, Any]]:
        return [s for s in self.samples if s.get("source", "llm") == "llm"]

    @property
    def input_names(self) -> list[str]:
        if self.problem is not None:
            return list(self.problem.input_names)
        return list(self.config.get("problem", {}).get("inputs", []))

    @property
    def output_name(self) -> str:
        if self.problem is not None:
            return str(self.problem.output_name)
        return str(self.config.get("problem", {}).get("output", "y"))


def load_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    config = run.read_config(exit_code=2)
    records = run.read_samples(strict=False)  # the report is read-only: a torn line is skipped
    data = RunData(run_dir, config, [r.to_json() for r in records], run.read_summary(), records=records)
    try:
        from eqforge.config import Config

        data.run_config = Config.model_validate(config.get("config", {}))
    except Exception as exc:  # noqa: BLE001 - an older or edited config still gets a report
        data.notes.append(f"configuration not understood ({type(exc).__name__})")
    run = config.get("run", {})
    try:
        from eqforge.problems.registry import load_problem

        seed = data.run_config.run.seed if data.run_config is not None else 0
        data.problem = load_problem(run.get("problem"), data=run.get("data"), seed=seed)
    except Exception as exc:  # noqa: BLE001 - data moved: report without the fit plots
        data.problem_error = f"{type(exc).__name__}: {exc}"
    return data


@contextlib.contextmanager
def reference_predictions(data: RunData) -> Iterator[Callable[[Entry], np.ndarray | None] | None]:
    """The sandbox's training-row predictions of an entry (to verify closed forms with), or
    ``None`` when the problem's data or the sandbox is not available."""
    if data.problem is None:
        yield None
        return
    from eqforge.config import EvaluatorConfig
    from eqforge.evaluator.evaluate import Evaluator

    base = data.run_config.evaluator if data.run_config is not None else EvaluatorConfig()
    try:
        ev = Evaluator(data.problem, base.model_copy(update={"workers": 1}))
    except Exception as exc:  # noqa: BLE001 - the report goes on, closed forms unchecked
        log.warning("no sandbox to verify closed forms: %s", exc)
        yield None
        return

    def reference(e: Entry) -> np.ndarray | None:
        if not e.params:
            return None
        preds = ev.predict(e.program, list(e.params))
        return None if not preds or "train" not in preds else np.asarray(preds["train"])

    try:
        yield reference
    finally:
        ev.close()


def predictions(data: RunData, entry: Entry) -> tuple[dict[str, tuple[Any, Any]], str | None]:
    """(y, ŷ) per test split for ``entry``, re-evaluated in the sandbox."""
    if data.problem is None:
        return {}, f"the problem could not be loaded ({data.problem_error})"
    if not entry.params:
        return {}, "the best program has no fitted parameters on record"
    from eqforge.config import EvaluatorConfig
    from eqforge.evaluator.evaluate import Evaluator

    base = data.run_config.evaluator if data.run_config is not None else EvaluatorConfig()
    try:
        with Evaluator(data.problem, base.model_copy(update={"workers": 1})) as ev:
            preds = ev.predict(entry.program, list(entry.params))
    except Exception as exc:  # noqa: BLE001 - the report goes on without the plot
        return {}, f"re-evaluation failed ({type(exc).__name__}: {exc})"
    if preds is None:
        return {}, "re-evaluating the best program failed"
    out: dict[str, tuple[Any, Any]] = {}
    for split in ("test_id", "test_ood"):
        sp_ = data.problem.split(split)
        if sp_ is not None and split in preds:
            out[split] = (sp_.y, preds[split])
    if not out:
        return {}, "the problem has no test splits"
    return out, None




@dataclass
class Report:
    data: RunData
    analysis: RunAnalysis
    images: dict[str, bytes]
    notes: dict[str, str]

    @property
    def best(self) -> Entry | None:
        return self.analysis.best

    def top_laws(self, k: int = 10) -> list[Law[Entry]]:
        """The ``k`` best distinct laws (programs stating one law grouped, simplest kept)."""
        return entry_laws(self.analysis.entries, self.data.input_names)[:k]

    def pareto_laws(self) -> list[Law[Entry]]:
        """The Pareto front over distinct laws (one point per law)."""
        laws = entry_laws(self.analysis.entries, self.data.input_names)
        return pareto_front(laws, lambda w: w.entry.complexity, lambda w: w.entry.loss)


def _agent_turns(report: Report) -> tuple[str | None, list[dict[str, Any]]]:
    """The agent episode behind the best program, when the run used ``--strategy agent``."""
    from eqforge.evaluator.report.transcript import episode_of, episode_turns

    best = report.best
    episode = episode_of(report.data.samples, best.id) if best is not None else None
    if episode is None:
        return None, []
    return episode, episode_turns(RunDir(report.data.directory).read_turns(strict=False), episode)
