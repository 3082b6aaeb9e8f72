"""The problem format: what is being modelled, from which variables, on which data.

A problem is a folder with ``problem.toml`` and CSV files. ``ProblemSpec`` is the validated
TOML; ``Problem`` joins it with the loaded numeric splits. Everything that creates a
``Problem`` (files, arrays, data frames, built-ins) goes through ``Problem.__init__`` so the
same validation applies everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SPLITS = ("train", "test_id", "test_ood")


class Variable(BaseModel):
    """One input or the output of a problem."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    unit: str | None = None
    label: str | None = Field(default=None, description="original column name, if renamed")


class ProblemSpec(BaseModel):
    """The contents of ``problem.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    inputs: list[Variable]
    output: Variable
    data: dict[str, str] = Field(
        default_factory=lambda: {s: f"{s}.csv" for s in SPLITS},
        description="split name -> CSV file, relative to the problem folder",
    )
    ground_truth: str | None = Field(
        default=None, description="the true law as a Python/sympy expression in the variable names"
    )
    initial_program: str | None = Field(
        default=None, description="body of the seed equation; default: linear in all inputs"
    )
    allowed_imports: list[str] = Field(
        default_factory=list, description="modules this problem's programs may import, beyond the default policy"
    )
    min_rows: int = 10
    pointwise: bool = Field(
        default=True,
        description="each row's prediction depends on that row alone (enforced: rows shown in a hidden order, "
        "subsets checked); false only for a model that truly needs whole columns, and the run records say so",
    )
    split: dict[str, str | int | float | bool] | None = Field(
        default=None,
        description="how the data were made and split (method, seed, fractions, OOD variable), for the record",
    )

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.inputs]

    @property
    def columns(self) -> list[str]:
        return [*self.input_names, self.output.name]


@dataclass(frozen=True)
class Split:
    """One data split: inputs as an (n, d) array and the target as (n,)."""

    X: np.ndarray
    y: np.ndarray
    origin: str | None = None  # file the split was read from, for error messages

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


class Problem:
    """A validated problem: its spec plus numeric data splits (``train`` always present)."""

    def __init__(
        self, spec: ProblemSpec, splits: dict[str, Split], *, source: str = "<memory>"
    ) -> None:
        from eqforge.problems.validate import validate_problem

        validate_problem(spec, splits, source=source)
        self.spec = spec
        self.splits = dict(splits)
        self.source = source

    # -- convenience -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_names(self) -> list[str]:
        return self.spec.input_names

    @property
    def output_name(self) -> str:
        return self.spec.output.name

    @property
    def train(self) -> Split:
        return self.splits["train"]

    def split(self, name: str) -> Split | None:
        return self.splits.get(name)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputs": self.input_names,
            "output": self.output_name,
            "rows": {k: v.n for k, v in self.splits.items()},
            "source": self.source,
            # the contract scores are checked against; false only by the problem's own opt-out
            **({} if self.spec.pointwise else {"pointwise": False}),
        }

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        rows = ", ".join(f"{k}={v.n}" for k, v in self.splits.items())
        return f"Problem({self.name!r}, {self.input_names} -> {self.output_name}, {rows})"

    # -- construction without files -----------------------------------------------------
    @classmethod
    def from_arrays(cls, X: Any, y: Any, names: list[str] | None = None, description: str = "",
                    target: str = "y", **options: Any) -> Problem:
        """Build a problem from arrays; see ``eqforge.problems.authoring.problem_from_arrays``."""
        from eqforge.problems.authoring import problem_from_arrays

        return problem_from_arrays(X, y, names=names, description=description, target=target, **options)

    @classmethod
    def from_dataframe(cls, df: Any, target: str, description: str = "", **options: Any) -> Problem:
        """Build a problem from a data frame; see ``eqforge.problems.authoring.problem_from_dataframe``."""
        from eqforge.problems.authoring import problem_from_dataframe

        return problem_from_dataframe(df, target=target, description=description, **options)

    # -- persistence -------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``problem.toml`` and one CSV per split into ``directory``."""
        from eqforge.problems.io import save_problem

        return save_problem(self, Path(directory))
