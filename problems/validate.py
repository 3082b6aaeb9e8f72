"""Checks every problem passes, however it was made (files, arrays, data frames, built-ins).

Each check raises ``ProblemError`` with one line naming the source, the column and the row,
and what to do about it.
"""

from __future__ import annotations

import builtins
import keyword

import numpy as np

from eqforge.errors import ProblemError
from eqforge.problems.entry import ENTRY

# Names a program cannot use for a variable without shadowing something it needs.
RESERVED = {"np", "numpy", "params", "math", "scipy", ENTRY} | set(dir(builtins))


def check_name(name: str, *, source: str, what: str = "column") -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ProblemError(
            f"{source}: {what} {name!r} is not a valid Python identifier; rename it "
            "(letters, digits, underscores, not starting with a digit)"
        )
    if keyword.iskeyword(name):
        raise ProblemError(f"{source}: {what} {name!r} is a Python keyword; rename it")
    if name in RESERVED:
        raise ProblemError(
            f"{source}: {what} {name!r} clashes with a name programs use "
            f"(numpy, params or a builtin); rename it"
        )


def check_names(names: list[str], *, source: str) -> None:
    seen: set[str] = set()
    for name in names:
        check_name(name, source=source)
        if name in seen:
            raise ProblemError(f"{source}: column {name!r} appears twice; names must be unique")
        seen.add(name)


def check_arrays(
    X: np.ndarray, y: np.ndarray, names: list[str], *, source: str, min_rows: int
) -> None:
    """Finite numbers, matching shapes, enough rows, a target that varies."""
    if X.ndim != 2 or X.shape[1] != len(names) - 1:
        raise ProblemError(
            f"{source}: expected {len(names) - 1} input columns {names[:-1]}, got shape {X.shape}"
        )
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ProblemError(f"{source}: target has {y.shape} values for {X.shape[0]} rows")
    n = X.shape[0]
    if n < min_rows:
        raise ProblemError(
            f"{source}: only {n} rows; at least {min_rows} are needed to fit and score equations"
        )
    full = np.column_stack([X, y])
    bad = ~np.isfinite(full)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise ProblemError(
            f"{source}: column {names[col]!r} row {row + 1} is {float(full[row, col])!r} "
            "(NaN/inf); remove or fill the missing values"
        )
    if n > 1 and float(np.ptp(y)) == 0.0:
        raise ProblemError(
            f"{source}: target column {names[-1]!r} is constant ({y[0]!r}); "
            "there is nothing to model"
        )


def validate_problem(spec, splits, *, source: str) -> None:  # type: ignore[no-untyped-def]
    """Validate a spec with its splits; called by ``Problem.__init__``."""
    names = spec.columns
    check_names(names, source=source)
    if "train" not in splits:
        raise ProblemError(f"{source}: no train split; provide train.csv")
    for split_name, split in splits.items():
        min_rows = spec.min_rows if split_name == "train" else 1
        X = np.asarray(split.X)
        y = np.asarray(split.y)
        where = split.origin or f"{source} [{split_name}]"
        check_arrays(X, y, names, source=where, min_rows=min_rows)
