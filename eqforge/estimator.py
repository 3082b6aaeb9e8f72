"""``EquationRegressor``: eqforge as a scikit-learn estimator with PySR's surface.

``EquationRegressor(llm=..., samples=...).fit(X, y)`` runs the same discovery loop, sandbox
and run records as ``eqforge run`` (it calls ``api.discover``), then reads the run back as
``equations_``, a pandas table of distinct laws (``eqforge.equations``). Every closed form
there is checked against the sandbox's predictions of its program on the training rows
(``law_status``): only a ``verified`` law is what was scored. Everything a caller runs
afterwards is trusted: ``predict`` and the numpy / JAX / PyTorch exports evaluate a
verified closed form built from the program's AST (``eqforge.export``); a program without
one, or whose closed form is unverified, is predicted by the sandbox (never executed in
this process) and not exported (a one-line ``ExportError`` says why).

The problem is written into the run directory (``<run_dir_>/problem``), so a fitted model's
run can be reported (``eqforge report``), resumed (``eqforge run --resume``) and
continued by ``fit`` with ``warm_start=True``. Column names become variables by the rules
of ``eqforge new`` (``"angle (rad)"`` is ``angle``, unit ``rad``); bad input raises the
same one-line messages as file loading, as ``ValueError`` subclasses so that
scikit-learn's conventions hold too.
"""

from __future__ import annotations

import html
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from eqforge import equations as eqtable
from eqforge.api import RunSpec, adiscover, aresume, discover, resume
from eqforge.config import Config, load_config, split_llm_options, with_shared_options
from eqforge.errors import EqforgeError
from eqforge.estimator_data import DataError, problem_from_xy
from eqforge.evaluator.rundir import RunDir
from eqforge.export import ExportError, Law, jax_export, law_from_program, numpy_callable, torch_module
from eqforge.guesses import to_guesses
from eqforge.notebook import progress_for
from eqforge.problems.spec import Problem, Split

log = logging.getLogger(__name__)

__all__ = ["DataError", "EquationRegressor"]


class EquationRegressor(RegressorMixin, BaseEstimator):
    """Discover a law ``y = f(X)`` with an LLM; predict and export it like a PySR model.

    Parameters mirror ``eqforge run``: ``llm`` (a spec string such as ``"openai:gpt-4o"``
    or ``"replay:FILE"``, or a list of them for an ensemble; default the offline local
    model), ``strategy`` (prompting strategy), ``samples`` (sample budget), ``max_seconds``,
    ``max_cost``, ``seed``, ``description`` (the system in your words; it goes into every
    prompt), ``variable_descriptions`` / ``units`` (dicts keyed by column name or variable
    name), ``timeout`` (seconds per candidate), ``workers`` (sandbox processes), ``out``
    (run directory; a fresh temporary one by default), ``quiet``, ``config`` (a ``Config``,
    a TOML path, or a dict of config sections; a ``"backend"`` entry holds backend options
    such as ``base_url``) for everything else, ``warm_start`` (continue the previous
    ``fit``'s run), ``guesses`` (code or expressions in the variable names, scored before
    the first prompt) and ``model_selection`` (``"best"``, ``"accuracy"`` or ``"score"``,
    as in PySR). ``None`` means the configuration's default.
    """

    def __init__(
        self,
        llm: str | list[str] | None = None,
        *,
        strategy: str | None = None,
        samples: int | None = None,
        max_seconds: float | None = None,
        max_cost: float | None = None,
        seed: int = 0,
        description: str | None = None,
        variable_descriptions: dict[str, str] | None = None,
        units: dict[str, str] | None = None,
        timeout: float | None = None,
        workers: int | None = None,
        out: str | Path | None = None,
        quiet: bool = False,
        config: Config | str | Path | dict[str, Any] | None = None,
        warm_start: bool = False,
        guesses: list[str] | str | None = None,
        model_selection: str = "best",
    ) -> None:
        self.llm = llm
        self.strategy = strategy
        self.samples = samples
        self.max_seconds = max_seconds
        self.max_cost = max_cost
        self.seed = seed
        self.description = description
        self.variable_descriptions = variable_descriptions
        self.units = units
        self.timeout = timeout
        self.workers = workers
        self.out = out
        self.quiet = quiet
        self.config = config
        self.warm_start = warm_start
        self.guesses = guesses
        self.model_selection = model_selection

    # -- scikit-learn protocol -----------------------------------------------------------------
    def __sklearn_tags__(self):  # noqa: ANN204 - sklearn's Tags
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.non_deterministic = True  # an LLM proposes the programs
        return tags

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if "_compiled" in state:
            state = {**state, "_compiled": {}}  # lambdified functions do not pickle
        return state

    # -- configuration ---------------------------------------------------------------------------
    def _base_config(self) -> tuple[Config, dict[str, Any]]:
        cfg = self.config
        backend: dict[str, Any] = {}
        if cfg is None:
            return Config(), backend
        if isinstance(cfg, Config):
            return cfg, backend
        if isinstance(cfg, str | Path):
            return load_config(cfg), backend
        if isinstance(cfg, dict):
            sections = dict(cfg)
            backend = dict(sections.pop("backend", None) or {})
            return Config().with_overrides(sections), backend
        raise TypeError(f"config must be a Config, a TOML path or a dict of sections, got "
                        f"{type(cfg).__name__}")

    def _make_config(self, n_inputs: int) -> Config:
        config, backend = self._base_config()
        sampler: dict[str, Any] = {}
        if self.strategy is not None:
            sampler["strategy"] = self.strategy
        config = config.with_overrides({
            "run": {"samples": self.samples, "max_seconds": self.max_seconds,
                    "max_cost": self.max_cost, "seed": self.seed},
            "evaluator": {"timeout": self.timeout, "workers": self.workers},
            "sampler": sampler,
        })
        if n_inputs + 1 > config.evaluator.max_params:  # the linear seed needs d + 1 constants
            config = config.with_overrides({"evaluator": {"max_params": n_inputs + 1}})
        specs = [self.llm] if isinstance(self.llm, str) else list(self.llm or [])
        if specs or backend:  # the models, and "backend" options for each, as [llm] has them
            shared, options = split_llm_options(backend)
            backends = with_shared_options(specs, options, config.llm.backends, source="config['backend']")
            config = config.with_overrides({"llm": {**shared, "backends": [b.model_dump() for b in backends]}})
        return config

    # -- data -------------------------------------------------------------------------------------
    def _problem(self, X: Any, y: Any, variable_names: list[str] | None,
                 tests: dict[str, tuple[Any, Any]]) -> Problem:
        return problem_from_xy(X, y, variable_names, tests, description=self.description,
                               descriptions=self.variable_descriptions, units=self.units, seed=self.seed)

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, *, variable_names: list[str] | None = None,
            X_test_id: Any = None, y_test_id: Any = None, X_test_ood: Any = None,
            y_test_ood: Any = None) -> EquationRegressor:
        """Search for the law; returns ``self``. Ctrl-C stops early, keeps what was found and
        leaves the run resumable (``warm_start=True`` or ``eqforge run --resume``)."""
        plan = self._plan(X, y, variable_names, {"test_id": (X_test_id, y_test_id),
                                                 "test_ood": (X_test_ood, y_test_ood)})
        try:
            if plan["resume"]:
                resume(plan["run_dir"], samples=plan["samples"], progress=plan["progress"],
                       overrides=plan["overrides"])
            else:
                discover(plan["spec"], plan["config"], out=plan["run_dir"],
                         progress=plan["progress"], problem=plan["problem"])
        except KeyboardInterrupt:
            log.warning("interrupted: keeping the equations found so far; fit again with "
                        "warm_start=True (or `eqforge run --resume %s`) to continue",
                        plan["run_dir"])
        return self._finish(plan)

    async def fit_async(self, X: Any, y: Any, *, variable_names: list[str] | None = None,
                        X_test_id: Any = None, y_test_id: Any = None, X_test_ood: Any = None,
                        y_test_ood: Any = None) -> EquationRegressor:
        """``fit`` as a coroutine: ``await model.fit_async(X, y)`` inside your own event loop."""
        plan = self._plan(X, y, variable_names, {"test_id": (X_test_id, y_test_id),
                                                 "test_ood": (X_test_ood, y_test_ood)})
        if plan["resume"]:
            await aresume(plan["run_dir"], samples=plan["samples"], progress=plan["progress"],
                          overrides=plan["overrides"])
        else:
            await adiscover(plan["spec"], plan["config"], out=plan["run_dir"],
                            progress=plan["progress"], problem=plan["problem"])
        return self._finish(plan)

    def _plan(self, X: Any, y: Any, variable_names: list[str] | None,
              tests: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
        """Validate the input and decide what to run (a new run, or continue the last one)."""
        if self.model_selection not in eqtable.SELECTIONS:
            raise ValueError(f"model_selection must be one of {list(eqtable.SELECTIONS)}, got "
                             f"{self.model_selection!r}")
        problem = self._problem(X, y, variable_names, tests)
        config = self._make_config(len(problem.input_names))
        guesses = [g.to_json() for g in to_guesses(self.guesses, problem.spec)]
        previous = Path(self.run_dir_) if self.warm_start and hasattr(self, "run_dir_") else None
        plan: dict[str, Any] = {"problem": problem, "config": config, "resume": False,
                                "progress": progress_for(self.quiet), "samples": None,
                                "overrides": None}
        if previous is not None and RunDir(previous).has_samples():
            if _same_data(problem, self.problem_):
                before = self.summary_ or {}
                budget = config.run.samples
                plan.update(resume=True, run_dir=previous,
                            samples=int(before.get("samples", 0)) + budget,
                            overrides={"run": {
                                "max_seconds": None if config.run.max_seconds is None else
                                float(before.get("elapsed_seconds") or 0) + config.run.max_seconds,
                                "max_cost": None if config.run.max_cost is None else
                                float(before.get("cost") or 0) + config.run.max_cost}})
                self._validate_features(X, reset=True)
                return plan
            # new data: a new run, seeded with the laws the previous run found
            guesses += [{"code": p, "start": list(params), "text": f"warm start {i}"}
                        for i, p, params in zip(self.equations_["id"], self.equations_["program"],
                                                self.equations_["params"], strict=True)]
        run_dir = Path(self.out) if self.out is not None else Path(
            tempfile.mkdtemp(prefix="eqforge-run-"))
        if RunDir(run_dir).has_samples():
            raise EqforgeError(f"{run_dir} already holds a run; pass warm_start=True to continue "
                               "it, or another out", exit_code=2)
        problem_dir = run_dir / "problem"
        problem.save(problem_dir)
        plan.update(run_dir=run_dir, spec=RunSpec(problem=str(problem_dir.resolve()), guesses=guesses))
        self._validate_features(X, reset=True)
        return plan

    def _validate_features(self, X: Any, *, reset: bool) -> None:
        validate_data(self, X, reset=reset, skip_check_array=True)

    def _finish(self, plan: dict[str, Any]) -> EquationRegressor:
        run_dir = Path(plan["run_dir"])
        self.run_dir_ = run_dir
        self.summary_ = RunDir(run_dir).read_summary() or {}
        self.problem_ = plan["problem"]
        self.config_ = plan["config"]
        self.variable_names_ = list(self.problem_.input_names)
        records = RunDir(run_dir).read_samples()
        self.equations_ = self._table(records)
        self._compiled: dict[tuple[str, str], Any] = {}
        if self.equations_.empty:
            raise EqforgeError(f"no valid equation was found; see {run_dir / 'samples.jsonl'} for "
                               "why each sample failed")
        return self

    def _table(self, records: list[Any]) -> pd.DataFrame:
        """The equation table, each closed form verified against the sandbox's predictions."""
        from eqforge.evaluator.evaluate import Evaluator

        try:
            with Evaluator(self.problem_, self.config_.evaluator.model_copy(update={"workers": 1})) as ev:
                return eqtable.equations_table(records, self.problem_, predict=ev.predict)
        except EqforgeError as exc:  # no sandbox: closed forms stay unchecked ("unknown")
            log.warning("could not verify closed forms in the sandbox: %s", exc)
            return eqtable.equations_table(records, self.problem_)

    # -- results ----------------------------------------------------------------------------------
    def _index(self, index: int | None) -> int:
        check_is_fitted(self, "equations_")
        if index is None:
            return eqtable.select(self.equations_, self.model_selection)
        if index not in self.equations_.index:
            raise IndexError(f"no equation {index!r}; equations_ has rows 0..{len(self.equations_) - 1}")
        return int(index)

    @property
    def best_(self) -> pd.Series:
        """The row of ``equations_`` that ``model_selection`` picks."""
        return self.equations_.loc[self._index(None)]

    def get_best(self, index: int | None = None) -> pd.Series:
        return self.equations_.loc[self._index(index)]

    def sympy(self, index: int | None = None) -> Any:
        """The fitted law as a sympy expression (full-precision constants); refused for a
        closed form that does not reproduce the scored program."""
        row = self.get_best(index)
        if row["sympy_format"] is None:
            raise ExportError(f"equation {self._index(index)} has no closed form "
                              f"({row['no_closed_form']})")
        if row.get("law_status") == "unverified":
            raise ExportError(self._unverified(index, row))
        return row["sympy_format"]

    def latex(self, index: int | None = None) -> str:
        """The fitted law in LaTeX (constants to 6 significant digits), marked
        ``[unverified]`` when it does not reproduce the scored program."""
        row = self.get_best(index)
        if not row["latex"]:
            raise ExportError(f"equation {self._index(index)} has no closed form "
                              f"({row['no_closed_form']})")
        return str(row["latex"])  # the analysis marked an unverified one

    def _unverified(self, index: int | None, row: pd.Series) -> str:
        return (f"equation {self._index(index)}'s closed form is {row.get('law_status') or 'unknown'}"
                f" ({row.get('verification') or 'not checked'}); predict() evaluates its "
                "program in the sandbox instead")

    def _law(self, index: int | None) -> Law:
        """The law to export: only a closed form verified against the sandbox."""
        row = self.get_best(index)
        if row["sympy_format"] is None:
            raise ExportError(f"equation {self._index(index)} has no closed form "
                              f"({row['no_closed_form']}); predict() evaluates it in the sandbox")
        if row.get("law_status") != "verified":
            raise ExportError(self._unverified(index, row))
        return law_from_program(row["program"], self.variable_names_, row["params"])

    def numpy(self, index: int | None = None) -> Any:
        """``f(X) -> y`` in numpy, for an (n, d) array."""
        return numpy_callable(self._law(index))

    def jax(self, index: int | None = None) -> dict[str, Any]:
        """``{"callable": f(X, parameters), "parameters": ...}`` (PySR's JAX export)."""
        return jax_export(self._law(index))

    def pytorch(self, index: int | None = None) -> Any:
        """A ``torch.nn.Module`` computing the law, its constants trainable."""
        return torch_module(self._law(index))

    def predict(self, X: Any, index: int | None = None) -> np.ndarray:
        """Predictions of the selected (or ``index``-th) law: its verified closed form
        compiled with ``sympy.lambdify``, or else (no closed form, or one that does not
        reproduce the scored program) the sandbox's evaluation of the program."""
        check_is_fitted(self, "equations_")
        Xa = validate_data(self, X, reset=False, dtype=np.float64)
        i = self._index(index)
        row = self.equations_.loc[i]
        key = (str(self.run_dir_), str(row["id"]))
        fn = self._compiled.get(key)
        if fn is None:
            try:
                fn = numpy_callable(self._law(i))
            except ExportError:
                fn = False  # no verified closed form: the sandbox predicts
            self._compiled[key] = fn
        if callable(fn):
            return np.asarray(fn(Xa))
        return self._predict_sandboxed(row, Xa)

    def _predict_sandboxed(self, row: pd.Series, X: np.ndarray) -> np.ndarray:
        from eqforge.evaluator.evaluate import Evaluator

        problem = self.problem_
        probe = Problem(problem.spec, {"train": problem.train,
                                       "test_id": Split(X=X, y=np.arange(X.shape[0], dtype=float),
                                                        origin="predict(X)")},
                        source=problem.source)
        with Evaluator(probe, self.config_.evaluator.model_copy(update={"workers": 1})) as ev:
            preds = ev.predict(row["program"], list(row["params"]))
        if preds is None or "test_id" not in preds:
            raise EqforgeError(f"the sandbox could not evaluate equation {row['id']} on X")
        return np.asarray(preds["test_id"], dtype=np.float64)

    # -- display ----------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        if not hasattr(self, "equations_"):
            return super()._repr_html_inner()
        output = self.problem_.output_name
        try:
            law = f"$${output} = {self.latex()}$$"
        except (ExportError, ValueError):
            law = f"<pre>{html.escape(str(self.best_['program']))}</pre>"
        best = self._index(None)
        cols = [c for c in ("complexity", "loss", "nmse_train", "nmse_test_id", "nmse_test_ood",
                            "equation", "variants", "pareto") if c in self.equations_.columns]
        table = self.equations_[cols].to_html(
            float_format=lambda v: f"{v:.4g}", escape=True, na_rep="–",
            formatters=None).replace(f"<th>{best}</th>", f"<th>&rarr; {best}</th>", 1)
        return (f"<div><p><b>EquationRegressor</b> · {self.summary_.get('samples', 0)} samples · "
                f"model_selection={html.escape(self.model_selection)} · run "
                f"<code>{html.escape(str(self.run_dir_))}</code></p>"
                f"<p>{law}</p>{table}</div>")

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}


def _same_data(a: Problem, b: Problem) -> bool:
    if a.spec.columns != b.spec.columns or set(a.splits) != set(b.splits):
        return False
    return all(np.array_equal(a.splits[s].X, b.splits[s].X) and np.array_equal(a.splits[s].y, b.splits[s].y)
               for s in a.splits)
