"""Symbolic work on a candidate's expression is bounded: no program hangs or crashes the
trusted side (issue 21, class 2).

Programs that numpy evaluates to ordinary numbers (``exp(-inf)`` is 0, ``minimum(x, inf)``
is ``x``) but whose exact symbolic form holds thousands of digits used to hang the
end-of-run analysis (``exp`` of a 3,840-digit number) or crash ``eqforge report`` (``str``
of an integer over Python's 4,300-digit limit). The converter now keeps numbers
float-like and says why there is no closed form; every other symbolic step runs in the
helper process, whose deadlines are tested here with operations made slow on purpose.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eqforge.cli import main
from eqforge.evaluator.analysis import closed_form, text, worker
from eqforge.evaluator.analysis.run import analyse_run

HOSTILE = {
    "exp-of-huge": "    t = np.float64(9e11)**64\n    return params[0]*x + params[1]*v + np.exp(-t*t*t*t*t)\n",
    "min-of-huge": "    t = np.float64(9e11)**64\n"
                   "    return params[0]*x + params[1]*v + np.minimum(x, t*t*t*t*t*t) - x\n",
    "literal-product": "    return params[0]*x + params[1]*v + np.exp(-(1e300*1e300*1e300*1e300))\n",
}
GOOD = "    return params[0]*x + params[1]*v\n"


def _program(body: str) -> str:
    return f"import numpy as np\ndef equation(x, v, params):\n{body}"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_no_closed_form_with_a_reason(name):
    start = time.perf_counter()
    cf = closed_form(_program(HOSTILE[name]), ["x", "v"], [1.0, 2.0])
    assert time.perf_counter() - start < 2.0
    assert not cf.ok and cf.reason == "numeric" and "float range" in cf.detail


def test_numbers_stay_float_like_but_honest_constants_pass():
    ok = closed_form(_program("    return params[0]*x*1e300*1e-300 + 2.0**64*v\n"), ["x", "v"], [1.5])
    assert ok.ok and "1.5*x" in ok.text
    big = closed_form(_program("    return x*" + "9" * 400 + "\n"), ["x", "v"], None)
    assert not big.ok and big.reason == "numeric"


def test_live_text_is_bounded_and_cached(monkeypatch):
    prog = _program(HOSTILE["min-of-huge"])
    start = time.perf_counter()
    assert "np.minimum" in text.equation_text(prog, [1.0, 2.0])  # the return line
    assert time.perf_counter() - start < 3.0
    # a conversion that never ends is cut at the deadline; the return line is shown
    slow = _program("    return params[0]*x + 0*v\n")
    old = worker._shared
    worker._shared = None  # a fresh helper, forked with the slow operation
    monkeypatch.setitem(worker._OPS, "text", lambda *a: time.sleep(60))
    try:
        start = time.perf_counter()
        assert text.equation_text(slow, [3.0]) == "params[0]*x + 0*v"
        first = time.perf_counter() - start
        start = time.perf_counter()
        assert text.equation_text(slow, [3.0]) == "params[0]*x + 0*v"  # cached
        assert first < text.TEXT_TIMEOUT + 2.0 and time.perf_counter() - start < 0.1
    finally:
        if worker._shared is not None:
            worker._shared.close()
        worker._shared = old


def test_worker_deadline_kills_and_reports_timeout(monkeypatch):
    monkeypatch.setitem(worker._OPS, "sleep", time.sleep)
    with worker.SymbolicWorker() as w:
        start = time.perf_counter()
        assert w.call_retry("sleep", 30, timeout=0.2, factor=2.0) is None
        assert w.last_status == worker.TIMEOUT and w.timeouts == 2
        assert time.perf_counter() - start < 5.0
        assert w.call("sleep", 0, timeout=5.0) is None and w.last_status == worker.OK


def test_expired_recovery_is_unknown_not_a_failure(monkeypatch):
    monkeypatch.setitem(worker._OPS, "recover", lambda *a: time.sleep(60))
    monkeypatch.setattr("eqforge.evaluator.analysis.run.RECOVERY_TIMEOUT", 0.2)
    rec = {"id": "s1", "ok": True, "program": _program(GOOD), "params": [1.0, 2.0], "score": -1.0}
    a = analyse_run([rec], ["x", "v"], ground_truth="x + 2*v", show=1)
    r = a.best.recovery
    assert r is not None and r.recovered is None and r.status == "unknown"
    assert "did not finish" in r.detail


def test_hostile_programs_through_run_and_report(tmp_path: Path, llmsr_data: Path):
    answers = [f"```python\n{_program(b).replace('def equation(', 'def equation_v1(')}```"
               for b in HOSTILE.values()]
    replay = tmp_path / "r.jsonl"
    replay.write_text("".join(json.dumps({"response": a}) + "\n" for a in answers))
    out = tmp_path / "run"
    start = time.perf_counter()
    assert main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm",
                 f"replay:{replay}", "--samples", "3", "--samples-per-prompt", "1", "--out",
                 str(out), "--workers", "1", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    hostile = [r for r in records if r.get("source") == "llm" and r.get("ok")]
    assert hostile, [r.get("error") for r in records]  # numpy computes them fine
    assert summary["recovery_status"] in ("recovered", "not recovered", "unknown")
    for fmt in ("markdown", "html"):
        assert main(["report", str(out), "--format", fmt]) == 0
    assert time.perf_counter() - start < 240


def test_estimator_fits_and_predicts_hostile_programs(tmp_path: Path):
    from eqforge import EquationRegressor

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.uniform(-1, 1, 80), "v": rng.uniform(-1, 1, 80)})
    y = 1.5 * X["x"] - 0.5 * X["v"]
    replay = tmp_path / "r.jsonl"
    replay.write_text("".join(json.dumps({"response": f"```python\n{_program(b)}```"}) + "\n"
                              for b in HOSTILE.values()))
    model = EquationRegressor(f"replay:{replay}", samples=3, workers=1, quiet=True,
                              out=tmp_path / "fit").fit(X, y)
    table = model.equations_
    rows = [i for i, p in table["program"].items() if "9e11" in p or "1e300" in p]
    assert rows and set(table.loc[rows, "no_closed_form"]) == {"numeric"}
    for i in rows:
        got = model.predict(X, index=i)  # the sandbox predicts a program without a closed form
        assert np.all(np.isfinite(got))


def test_recovery_work_budget_gives_unknown_not_a_failure():
    from eqforge.evaluator.analysis.recovery import MAX_EXPANDED_TERMS, expanded_terms, recovery

    body = "    return params[0]*(x + v + 1.0)**80\n"
    cf = closed_form(_program(body), ["x", "v"], [1.0])
    assert cf.ok and expanded_terms(cf.fitted) > MAX_EXPANDED_TERMS
    start = time.perf_counter()
    r = recovery(cf, "x + v", ["x", "v"])
    assert r.recovered is None and r.status == "unknown" and "work budget" in r.detail
    assert time.perf_counter() - start < 2.0
