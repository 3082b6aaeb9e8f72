"""EquationRegressor: the scikit-learn surface over a real run (replay model, real sandbox)."""

from __future__ import annotations

import asyncio
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sympy as sp
from sklearn.base import clone

from eqforge import EquationRegressor
from eqforge.api import RunSpec, adiscover, discover
from eqforge.config import Config
from eqforge.estimator import DataError
from eqforge.evaluator.evaluate import Evaluator
from eqforge.problems.spec import Problem, Split

RESPONSES = [
    "    return params[0]*np.sin(angle) + params[1]*omega\n",  # the law
    "    return params[0]*angle + params[1]*omega + params[2]\n",  # the seed's law again
    "    a = params[0]*np.sin(angle) + params[3]*np.sin(angle)\n    return a + params[1]*omega\n",
    "    return params[0]*np.sin(angle) + params[1]*omega + params[2]*angle**3\n",
    "    out = np.zeros_like(angle)\n    for k in range(3):\n        out = out + params[k]*angle**k\n"
    "    return out + params[3]*omega\n",  # no closed form: a loop
    "I don't know.",
]


def pendulum(n: int, seed: int, lo: float = -1.5, hi: float = 1.5) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"angle (rad)": rng.uniform(lo, hi, n), "ω [rad/s]": rng.uniform(-2, 2, n)})
    y = pd.Series(-2.5 * np.sin(X["angle (rad)"]) - 0.3 * X["ω [rad/s]"], name="accel (m/s^2)")
    return X, y


def replay_file(path: Path, responses: list[str]) -> str:
    path.write_text("".join(json.dumps({"response": r}) + "\n" for r in responses))
    return f"replay:{path}"


@pytest.fixture(scope="module")
def llm(tmp_path_factory) -> str:
    return replay_file(tmp_path_factory.mktemp("llm") / "pendulum.jsonl", RESPONSES)


@pytest.fixture(scope="module")
def fitted(llm, tmp_path_factory) -> tuple[EquationRegressor, pd.DataFrame, pd.Series]:
    X, y = pendulum(160, 0)
    X_id, y_id = pendulum(40, 1)
    X_ood, y_ood = pendulum(40, 2, 1.5, 2.5)
    model = EquationRegressor(llm, samples=12, workers=1, quiet=True, seed=0,
                              description="A pendulum with linear damping.",
                              units={"accel (m/s^2)": "m/s^2"},
                              out=tmp_path_factory.mktemp("fit") / "run")
    assert model.fit(X, y, X_test_id=X_id, y_test_id=y_id, X_test_ood=X_ood,
                     y_test_ood=y_ood) is model
    return model, X_ood, y_ood


# -- scikit-learn protocol --------------------------------------------------------------------


def test_params_are_stored_unmodified_and_clone_works(tmp_path):
    units = {"angle": "rad"}
    model = EquationRegressor("replay:x.jsonl", samples=5, units=units, guesses=["x"],
                              config={"sampler": {"temperature": 0.5}}, out=tmp_path)
    assert model.get_params()["units"] is units
    assert model.get_params()["llm"] == "replay:x.jsonl" and model.get_params()["out"] is tmp_path
    twin = clone(model)
    assert twin.get_params()["samples"] == 5 and twin.units == units
    twin.set_params(samples=7, model_selection="accuracy")
    assert (twin.samples, twin.model_selection, model.samples) == (7, "accuracy", 5)
    assert not [k for k in vars(model) if k.endswith("_")]  # nothing fitted before fit


def test_unfitted_model_refuses_to_predict():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        EquationRegressor().predict(np.zeros((3, 2)))


# -- fitting a DataFrame ----------------------------------------------------------------------


def test_dataframe_columns_become_safe_variables(fitted):
    model, _, _ = fitted
    spec = model.problem_.spec
    assert model.variable_names_ == ["angle", "omega"]
    assert [(v.name, v.unit, v.label) for v in spec.inputs] == [
        ("angle", "rad", "angle (rad)"), ("omega", "rad/s", "ω [rad/s]")]
    assert (spec.output.name, spec.output.unit) == ("accel", "m/s^2")
    assert list(model.feature_names_in_) == ["angle (rad)", "ω [rad/s]"]
    assert model.n_features_in_ == 2
    # the run is a normal run directory: its problem can be reloaded, reported and resumed
    assert (model.run_dir_ / "problem" / "problem.toml").is_file()
    assert model.summary_["samples"] == 12


def test_equations_table_lists_each_law_once(fitted):
    model, _, _ = fitted
    eq = model.equations_
    for col in ("complexity", "loss", "nmse_train", "nmse_test_id", "nmse_test_ood", "equation",
                "sympy_format", "latex", "program", "score", "variants"):
        assert col in eq.columns
    laws = [e for e in eq["equation"] if e]
    assert len(laws) == len(set(laws))
    true = eq[eq["equation"] == "-0.3*omega - 2.5*sin(angle)"]
    assert len(true) == 1
    row = true.iloc[0]
    assert row["variants"] >= 2  # the doubled-sin spelling is the same law
    assert "np.sin(angle) + params[1]*omega\n" in row["program"]  # the simplest variant kept
    assert row["loss"] < 1e-20 and row["nmse_test_ood"] < 1e-20
    linear = eq[eq["program"].str.contains("params[0] * angle", regex=False)]
    assert len(linear) == 1 and linear.iloc[0]["variants"] >= 2  # seed and its respelling
    loop = eq[eq["no_closed_form"] == "loop"]
    assert len(loop) == 1 and pd.isna(loop.iloc[0]["complexity"])


def test_model_selection_rules(fitted):
    model, _, _ = fitted
    eq = model.equations_
    assert model.best_["equation"] == "-0.3*omega - 2.5*sin(angle)"
    assert model.latex() == r"- 0.3 \omega - 2.5 \sin{\left(angle \right)}"
    angle, omega = sp.symbols("angle omega", real=True)
    expr = model.sympy()  # full-precision constants
    assert expr.free_symbols == {angle, omega}
    assert abs(float(expr.subs({angle: 0.3, omega: -1.0})) - (-2.5 * np.sin(0.3) + 0.3)) < 1e-12
    acc = clone(model).set_params(model_selection="accuracy")
    acc.__dict__.update({k: v for k, v in vars(model).items() if k.endswith("_")})
    assert acc.best_.name == eq["loss"].idxmin()
    with pytest.raises(IndexError):
        model.sympy(index=len(eq) + 5)


# -- trusted prediction -----------------------------------------------------------------------


def test_predict_agrees_with_the_sandbox(fitted):
    model, X_ood, y_ood = fitted
    X = X_ood.to_numpy()
    probe = Problem(model.problem_.spec, {"train": model.problem_.train,
                                          "test_id": Split(X, np.arange(len(X), dtype=float))})
    with Evaluator(probe, model.config_.evaluator.model_copy(update={"workers": 1})) as ev:
        for i, row in model.equations_.iterrows():
            sandbox = ev.predict(row["program"], list(row["params"]))["test_id"]
            ours = model.predict(X_ood, index=i)
            np.testing.assert_allclose(ours, sandbox, rtol=1e-9, atol=0)
    np.testing.assert_allclose(model.predict(X_ood), y_ood, rtol=1e-9, atol=1e-12)


def test_predict_never_runs_the_program_here(fitted, monkeypatch):
    """Only sympy's generated code is compiled here; the candidate's source is only parsed."""
    model, X_ood, _ = fitted
    import ast
    import builtins

    compiled: list[str] = []
    real_compile = builtins.compile

    def spy(source, *a, **k):
        flags = a[2] if len(a) > 2 else k.get("flags", 0)
        if not flags & ast.PyCF_ONLY_AST:  # ast.parse builds a tree; this would make code
            compiled.append(source if isinstance(source, str) else "")
        return real_compile(source, *a, **k)

    monkeypatch.setattr(builtins, "compile", spy)
    fresh = pickle.loads(pickle.dumps(model))  # nothing compiled yet
    assert np.all(np.isfinite(fresh.predict(X_ood)))
    assert compiled and not [c for c in compiled if "def equation" in c or "params[" in c]


def test_predict_checks_features(fitted):
    model, X_ood, _ = fitted
    with pytest.raises(ValueError, match="feature"):
        model.predict(X_ood.iloc[:, :1])


# -- exports ----------------------------------------------------------------------------------


def test_numpy_export(fitted):
    model, X_ood, _ = fitted
    f = model.numpy()
    np.testing.assert_allclose(f(X_ood.to_numpy()), model.predict(X_ood), rtol=1e-12)


def test_pytorch_export(fitted):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    model, X_ood, _ = fitted
    module = model.pytorch()
    assert isinstance(module, torch.nn.Module) and module.constants.requires_grad
    out = module(torch.tensor(X_ood.to_numpy()))
    np.testing.assert_allclose(out.detach().numpy(), model.predict(X_ood), rtol=1e-9)
    out.sum().backward()
    assert module.constants.grad is not None


def test_jax_export(fitted, tmp_path):
    """In a child process: JAX starts threads, and later tests fork (the sympy helper)."""
    import subprocess
    import sys

    model, X_ood, _ = fitted
    pytest.importorskip("jax", reason="JAX is not installed (pip install jax jaxlib)")
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    np.save(tmp_path / "X.npy", X_ood.to_numpy())
    script = (
        "import pickle, sys, numpy as np\n"
        "d = sys.argv[1]\n"
        "model = pickle.load(open(d + '/model.pkl', 'rb'))\n"
        "exported = model.jax()\n"
        "out = exported['callable'](np.load(d + '/X.npy'), exported['parameters'])\n"
        "np.save(d + '/out.npy', np.asarray(out))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=120)
    out = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(out, model.predict(X_ood), rtol=1e-4, atol=1e-5)  # float32


def test_export_without_closed_form_says_why(fitted):
    model, _, _ = fitted
    i = int(model.equations_.index[model.equations_["no_closed_form"] == "loop"][0])
    with pytest.raises(ValueError, match="no closed form"):
        model.numpy(index=i)


# -- display ----------------------------------------------------------------------------------


def test_html_repr_shows_law_and_table(fitted):
    model, _, _ = fitted
    page = model._repr_html_()
    assert r"$$accel = - 0.3 \omega - 2.5 \sin{\left(angle \right)}$$" in page
    assert "<table" in page and "variants" in page and "sin(angle)" in page
    assert "text/html" in model._repr_mimebundle_()
    assert "<" in EquationRegressor()._repr_html_()  # unfitted: scikit-learn's own view


def test_notebook_progress_updates_in_place():
    from eqforge.agents.progress import RunStats
    from eqforge.notebook import NotebookProgress

    shown: list[str] = []

    class Handle:
        def update(self, text):
            shown.append(text)

    def display(text):
        shown.append(text)
        return Handle()

    view = NotebookProgress(per_second=1000, display=display)
    stats = RunStats(budget=4, problem="demo")
    view.start(stats)
    stats.samples, stats.valid, stats.best_score, stats.best_id = 2, 1, -0.5, "s1"
    stats.best_program = "def equation(x, params):\n    return params[0] * x\n"
    stats.best_params = [2.0]
    view.update(stats)
    view.finish(stats, "budget")
    assert len(shown) == 3 and "<progress" in shown[1] and "2*x" in shown[1]
    assert "stopped: budget" in shown[2]


# -- other inputs -----------------------------------------------------------------------------


def test_numpy_input_with_variable_names(llm, tmp_path):
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(60, 2))
    y = -2.5 * np.sin(X[:, 0]) - 0.3 * X[:, 1]
    model = EquationRegressor(llm, samples=4, workers=1, quiet=True, out=tmp_path / "r")
    model.fit(X, y, variable_names=["angle", "omega"])
    assert model.variable_names_ == ["angle", "omega"] and not hasattr(model, "feature_names_in_")
    assert model.best_["loss"] < 1e-20
    np.testing.assert_allclose(model.predict(X), y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("X, y, message", [
    (np.array([[1.0, np.nan]] + [[float(i), 1.0] for i in range(11)]), np.arange(12.0),
     r"column 'x1' row 1 is nan \(NaN/inf\); remove or fill"),
    (np.ones((12, 2)), None, "requires y to be passed, but the target y is None"),
    (np.arange(12.0), np.arange(12.0), "X is 1-D"),
    (np.ones((3, 2)), np.arange(3.0), "only 3 samples; at least 10"),
    (np.ones((12, 2)), np.arange(11.0), "X has 12 rows but y has 11 values"),
    (np.array([["a", 1.0]] + [["2", 1.0]] * 11, dtype=object), np.arange(12.0),
     r"column 'x0' row 1 is not a number \('a'\)"),
])
def test_bad_input_gets_one_line_errors(X, y, message):
    with pytest.raises(DataError, match=message) as info:
        EquationRegressor(llm="replay:none", quiet=True).fit(X, y)
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


# -- guesses and warm start -------------------------------------------------------------------


def test_guesses_are_scored_before_the_first_prompt(tmp_path):
    llm = replay_file(tmp_path / "junk.jsonl", ["no idea", "    return params[0]*omega\n"])
    X, y = pendulum(80, 4)
    model = EquationRegressor(llm, samples=2, workers=1, quiet=True, out=tmp_path / "r",
                              guesses=["-2*sin(angle) + a*omega", "return params[0] * angle"])
    model.fit(X, y)
    rows = [json.loads(x) for x in (model.run_dir_ / "samples.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == ["seed", "guess", "guess", "llm", "llm"]
    assert rows[1]["ok"] and rows[1]["id"] == "g1" and rows[1]["response"].startswith("-2*sin")
    assert model.best_["equation"] == "-0.3*omega - 2.5*sin(angle)"  # the guess, refitted
    prompts = [json.loads(x) for x in (model.run_dir_ / "prompts.jsonl").read_text().splitlines()]
    assert "g1" in prompts[0]["source_ids"]  # the first prompt already shows the guess


def test_bad_guess_is_a_one_line_error():
    X, y = pendulum(20, 5)
    with pytest.raises(ValueError, match="uses none of the variables"):
        EquationRegressor("replay:none", guesses=["sin(theta)"], quiet=True).fit(X, y)


def test_warm_start_continues_the_buffer(tmp_path, llm):
    X, y = pendulum(80, 6)
    model = EquationRegressor(llm, samples=3, workers=1, quiet=True, warm_start=True,
                              out=tmp_path / "r")
    model.fit(X, y)
    first = model.run_dir_
    model.fit(X, y)  # same data: the same run continues
    assert model.run_dir_ == first and model.summary_["samples"] == 6
    rows = [json.loads(x) for x in (first / "samples.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(7)) and rows[0]["source"] == "seed"
    X2, y2 = pendulum(80, 7)
    model.set_params(out=None)
    model.fit(X2, y2)  # new data: a new run seeded with the laws found so far
    assert model.run_dir_ != first
    rows = [json.loads(x) for x in (model.run_dir_ / "samples.jsonl").read_text().splitlines()]
    guesses = [r for r in rows if r["source"] == "guess"]
    assert guesses and any("np.sin(angle)" in r["program"] for r in guesses)
    assert model.best_["loss"] < 1e-20


def test_ctrl_c_keeps_results_and_leaves_a_resumable_run(tmp_path, llm, monkeypatch):
    import os
    import signal

    from eqforge import estimator
    from eqforge.agents.progress import QuietProgress

    class Interrupting(QuietProgress):
        def update(self, stats):
            if stats.samples == 3:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(estimator, "progress_for", lambda quiet: Interrupting())
    X, y = pendulum(80, 8)
    model = EquationRegressor(llm, samples=50, workers=1, out=tmp_path / "r", warm_start=True)
    model.fit(X, y)
    assert model.summary_["stopped"] == "interrupted" and model.summary_["samples"] < 50
    assert len(model.equations_)
    done = model.summary_["samples"]
    monkeypatch.setattr(estimator, "progress_for", lambda quiet: QuietProgress())
    model.set_params(samples=2).fit(X, y)
    assert model.summary_["samples"] == done + 2 and model.summary_["stopped"] == "budget"


# -- notebooks: a running event loop ---------------------------------------------------------


def test_discover_and_fit_work_inside_a_running_event_loop(tmp_path, llm):
    X, y = pendulum(60, 9)
    problem = Problem.from_dataframe(pd.concat([X, y], axis=1), target="accel (m/s^2)",
                                     description="pendulum", split=False)

    async def cell():  # what a Jupyter cell is: code run while the kernel's loop runs
        asyncio.get_running_loop()
        summary = discover(RunSpec(problem="pendulum"), Config().with_overrides(
            {"run": {"samples": 2}, "evaluator": {"workers": 1}, "llm": {"backends": [{"spec": llm}]}}),
            out=tmp_path / "d", problem=problem)
        model = EquationRegressor(llm, samples=2, workers=1, quiet=True, out=tmp_path / "f")
        model.fit(X, y)
        again = EquationRegressor(llm, samples=2, workers=1, quiet=True, out=tmp_path / "a")
        await again.fit_async(X, y)
        asummary = await adiscover(RunSpec(problem="pendulum"), Config().with_overrides(
            {"run": {"samples": 2}, "evaluator": {"workers": 1}, "llm": {"backends": [{"spec": llm}]}}),
            out=tmp_path / "ad", problem=problem)
        return summary, model, again, asummary

    summary, model, again, asummary = asyncio.run(cell())
    assert summary["samples"] == asummary["samples"] == 2
    assert model.summary_["samples"] == again.summary_["samples"] == 2
    np.testing.assert_allclose(model.predict(X), again.predict(X))


def test_interrupting_a_notebook_cell_keeps_results(tmp_path, llm, monkeypatch):
    """Jupyter's "interrupt kernel" raises KeyboardInterrupt in the main thread while the run
    goes on in its worker thread (a loop is running): the run is cancelled, records written."""
    import os
    import signal

    from eqforge import estimator
    from eqforge.agents.progress import QuietProgress

    class Interrupting(QuietProgress):
        def update(self, stats):
            if stats.samples == 3:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(estimator, "progress_for", lambda quiet: Interrupting())
    X, y = pendulum(80, 10)
    model = EquationRegressor(llm, samples=50, workers=1, out=tmp_path / "r")

    async def cell():
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as ipykernel does
        try:
            return model.fit(X, y)
        finally:
            signal.signal(signal.SIGINT, previous)

    asyncio.run(cell())
    assert model.summary_["stopped"] == "interrupted" and model.summary_["samples"] < 50
    assert len(model.equations_)
