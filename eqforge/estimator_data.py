"""Checking an estimator's ``X`` and ``y``: one-line errors that name the argument, column and row.

scikit-learn users hand over arrays, DataFrames, Series, sparse matrices and column vectors;
each is turned into an eqforge ``Problem`` here, by the same rules (and with the same
messages, their file names replaced by the argument names) as loading a CSV, so a bad cell
is a ``DataError`` (a ``ValueError``, as scikit-learn's conventions expect) and never a
traceback from deep inside numpy.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import DataConversionWarning

from eqforge.errors import ProblemError
from eqforge.problems.spec import Problem

__all__ = ["DataError", "aligned", "problem_from_xy", "target_of"]


class DataError(ProblemError, ValueError):
    """Invalid ``X`` / ``y``: a one-line message naming the column and row (exit code 2)."""


_SOURCES = (("<arrays> [test_id]", "X_test_id/y_test_id"), ("<arrays> [test_ood]", "X_test_ood/y_test_ood"),
            ("<arrays> [train]", "X/y"), ("<arrays>", "X/y"))


def _data_error(exc: ProblemError) -> DataError:
    text = str(exc)
    for old, new in _SOURCES:
        text = text.replace(old, new)
    return DataError(text)


def _is_sparse(obj: Any) -> bool:
    try:
        import scipy.sparse

        return bool(scipy.sparse.issparse(obj))
    except ImportError:  # pragma: no cover - scipy is a dependency
        return False


def problem_from_xy(X: Any, y: Any, variable_names: list[str] | None, tests: dict[str, tuple[Any, Any]], *,
                    description: str | None, descriptions: Any, units: Any, seed: int) -> Problem:
    """The estimator's problem from ``X``/``y`` (and optional test splits), checked row by row."""
    if y is None:
        raise DataError("fit requires y to be passed, but the target y is None")
    for what, value in (("X", X), ("y", y)):
        if _is_sparse(value):
            raise DataError(f"{what} is a sparse matrix; eqforge needs dense data: pass "
                            f"{what}.toarray()")
    frame = isinstance(X, pd.DataFrame)
    if frame and variable_names is not None:
        raise DataError("variable_names is for numpy input; a DataFrame's columns name the "
                        "variables (rename them instead)")
    labels = [str(c) for c in X.columns] if frame else None
    Xa = X.to_numpy() if frame else np.asarray(X) if not isinstance(X, np.ndarray) else X
    if Xa.ndim == 1:
        raise DataError("X is 1-D; it must be 2-D (rows x variables): for one variable pass "
                        "X.reshape(-1, 1)")
    if Xa.ndim != 2:
        raise DataError(f"X must be 2-D (rows x variables), got shape {Xa.shape}")
    if variable_names is not None:
        labels = [str(v) for v in variable_names]
        if len(labels) != Xa.shape[1]:
            raise DataError(f"variable_names has {len(labels)} names for {Xa.shape[1]} "
                            "columns of X")
    target, ya = target_of(y, labels or [f"x{i}" for i in range(Xa.shape[1])])
    for what, arr in (("X", Xa), ("y", ya)):
        if arr.dtype.kind == "c":
            raise DataError(f"{what} holds complex numbers (Complex data not supported); "
                            "eqforge fits real-valued data")
    if Xa.shape[1] == 0:
        raise DataError(f"X has 0 feature(s) (shape={Xa.shape}) while a minimum of 1 is "
                        "required; give at least one input column")
    n = int(ya.shape[0]) if ya.ndim else 0
    if Xa.shape[0] != n:
        raise DataError(f"X has {Xa.shape[0]} rows but y has {n} values")
    if n < 10:
        raise DataError(f"X/y: only {n} sample{'' if n == 1 else 's'}; at least 10 are "
                        "needed to fit and score equations")
    given = {}
    for split, (Xt, yt) in tests.items():
        if (Xt is None) != (yt is None):
            raise DataError(f"give both X_{split} and y_{split}, or neither")
        if Xt is not None:
            given[split] = (aligned(Xt, labels, split), target_of(yt, [], split)[1])
    description = description or (
        "An unknown relationship to be discovered from data; the inputs are "
        f"{', '.join(labels or [f'x{i}' for i in range(Xa.shape[1])])} and the output is {target}.")
    try:
        from eqforge.problems.authoring import problem_from_arrays

        return problem_from_arrays(
            Xa, ya, names=labels, description=description, target=target, name="estimator",
            descriptions=descriptions, units=units, split=False,
            test_id=given.get("test_id"), test_ood=given.get("test_ood"), seed=seed)
    except ProblemError as exc:
        raise _data_error(exc) from None

def target_of(y: Any, labels: list[str], split: str = "") -> tuple[str, np.ndarray]:
    """The target's name and values (a Series or one-column frame names it)."""
    name = None
    if isinstance(y, pd.DataFrame):
        if y.shape[1] != 1:
            raise DataError(f"y{'_' + split if split else ''} has {y.shape[1]} columns; "
                            "eqforge models one target at a time")
        name, y = y.columns[0], y.iloc[:, 0]
    if isinstance(y, pd.Series):
        name = y.name
        y = y.to_numpy()
    ya = np.asarray(y)
    if ya.ndim == 2 and ya.shape[1] == 1:
        if not split:
            warnings.warn("A column-vector y was passed when a 1d array was expected; "
                          "it is used as y.ravel()", DataConversionWarning, stacklevel=5)
        ya = ya.ravel()
    if ya.ndim != 1:
        raise DataError(f"y{'_' + split if split else ''} must be one-dimensional (one value "
                        f"per row), got shape {ya.shape}")
    if ya.dtype.kind not in "fiucb":
        try:
            ya = ya.astype(np.float64)
        except (TypeError, ValueError):
            bad = next((v for v in ya.tolist() if not _number(v)), None)
            raise DataError(f"y{'_' + split if split else ''} holds a value that is not a "
                            f"number ({bad!r}); fix or remove that row") from None
    target = str(name) if isinstance(name, str) and name.strip() else "y"
    if target in labels:
        if isinstance(name, str):
            raise DataError(f"y is named {target!r}, like a column of X; rename one of them")
        target = next(t for t in ("target", "y_target", "output") if t not in labels)
    return target, ya

def aligned(X: Any, labels: list[str] | None, split: str) -> np.ndarray:
    """A test split's inputs in fit's column order."""
    if isinstance(X, pd.DataFrame):
        cols = [str(c) for c in X.columns]
        if labels is not None and cols != labels:
            if sorted(cols) != sorted(labels):
                raise DataError(f"X_{split} has columns {cols} but X has {labels}")
            X = X.set_axis(cols, axis=1)[labels]  # the same columns, in fit's order
        return X.to_numpy()
    return np.asarray(X)


def _number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True
