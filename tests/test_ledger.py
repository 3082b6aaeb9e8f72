"""The ledger (a run's shared state) and the scoring step, without a loop or a model."""

from __future__ import annotations

import asyncio

import pytest

from eqforge.agents.database import ProgramsDatabase
from eqforge.agents.ledger import Ledger
from eqforge.agents.progress import QuietProgress
from eqforge.agents.scoring import Scoring
from eqforge.config import DatabaseConfig
from eqforge.errors import BackendError
from eqforge.evaluator.evaluate import EvalResult
from eqforge.evaluator.rundir import RunDir, RunStats

CODE = "def equation(x, params):\n    return params[0] * x\n"


class FakeEvaluator:
    """Scores every program -1.0 (a failure for code containing 'bad'), counting the calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def evaluate(self, code: str, **kw: object) -> EvalResult:
        self.calls += 1
        await asyncio.sleep(0.01)
        if "bad" in code:
            return EvalResult.failure("runtime", "bad")
        return EvalResult(ok=True, score=-1.0, params=[2.0], n_params=1, nmse={"train": 0.5})


@pytest.fixture
def ledger(tmp_path):
    with RunDir.writer(tmp_path / "run") as run:
        yield Ledger(RunStats(budget=5), run, QuietProgress(), problem_name="toy")


def test_a_reservation_holds_budget_until_its_block_ends(ledger):
    with ledger.reserve(4) as a:
        assert a.n == 4 and ledger.reserved == 4
        with ledger.reserve(4) as b:
            assert b.n == 1  # only what is left of the 5
            b.keep(0)
            assert ledger.reserved == 4
        a.keep(2)
        assert ledger.reserved == 2
    assert ledger.reserved == 0
    with pytest.raises(RuntimeError), ledger.reserve(3):
        raise RuntimeError("a failed step")
    assert ledger.reserved == 0  # released however the block exits


def test_recorded_samples_count_and_a_stop_holds_everything(ledger):
    with ledger.reserve(2) as slot:
        assert slot.n == 2
        rec = ledger.record(EvalResult.failure("parse", ""), source="llm")
        assert rec.id == "s1" and ledger.next_index == 2
    assert ledger.stats.samples == 1 and ledger.budget_left()
    ledger.fail(BackendError("down"))
    assert ledger.stop_reason == "backend error" and isinstance(ledger.fatal, BackendError)
    ledger.stop("budget")  # the first reason stays
    assert ledger.stop_reason == "backend error" and not ledger.budget_left()
    with ledger.reserve(1) as slot:
        assert slot.n == 0


def test_time_and_cost_budgets_stop_the_run(ledger):
    ledger.stats.max_cost = 1.0
    ledger.charge(10, 5, 1.5)
    assert ledger.stats.prompt_tokens == 10 and ledger.stats.cost == 1.5
    with ledger.reserve(1) as slot:
        assert slot.n == 0
    assert ledger.stop_reason == "cost budget"


def test_score_program_dedupes_evaluates_records_and_registers(ledger):
    ev = FakeEvaluator()
    db = ProgramsDatabase(DatabaseConfig(islands=2), seed=0)
    scoring = Scoring(ledger, ev, db, seed=0)  # type: ignore[arg-type]

    async def go():  # two identical programs at once are evaluated once
        return await asyncio.gather(scoring.score_program(CODE, source="baseline", extra={"response": "sindy"}),
                                    scoring.score_program(CODE, source="baseline"),
                                    scoring.score_program("def equation(x, params):\n    return bad\n"))

    first, second, failed = asyncio.run(go())
    assert ev.calls == 2
    assert first.id == "b1" and first.ok and first.params == [2.0] and first.response == "sindy"
    assert second.duplicate_of == "b1" and second.score == first.score
    assert not failed.ok and failed.error == "runtime"
    assert ledger.stats.samples == 0  # baselines do not spend the sample budget
    assert {isl.best.id for isl in db.islands if isl.best} == {"b1"}  # registered on every island
    lines = ledger.recorder.read_samples()
    assert sorted(r.id for r in lines) == ["b1", "b2", "b3"]
    assert {r.id: r for r in lines}[second.id].duplicate_of == "b1"
