"""Authoring problems: from a CSV and a paragraph, from arrays, from a data frame.

``eqforge new DIR --csv data.csv --target COL --describe "..."`` calls ``scaffold``. Every
path ends in ``Problem(...)`` so the checks in
``problems.validate`` apply, and all of them share the same steps:

1. column labels become safe Python names (``"Angle (rad)"`` -> ``Angle_rad``), the original
   kept as the variable's ``label`` (``problems.naming``);
2. the rows are split into ``train`` / ``test_id`` / ``test_ood``: the rows at the extreme
   (high) end of one variable are held out as out-of-domain, the rest are split at random;
   the method, fractions and seed are recorded under ``[split]`` in ``problem.toml``
   (``problems.splitting``);
3. optionally an LLM drafts per-variable descriptions and units from the user's paragraph,
   the column names and summary statistics. The draft only fills in descriptions and units
   of the columns that exist: a column the model invents is ignored, a column it leaves out
   keeps its default, and the user's paragraph is kept verbatim as the description.

The LLM is a plain callable ``complete(text) -> str`` (``eqforge.agents.drafting.as_complete``
makes one from a backend); the question and the reading of its answer are in
``problems.drafting``. Nothing here imports a backend: problems sit below prompts and agents.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eqforge.errors import ProblemError
from eqforge.problems.drafting import draft_variables
from eqforge.problems.naming import make_variable, safe_names
from eqforge.problems.spec import Problem, ProblemSpec, Split, Variable
from eqforge.problems.splitting import DEFAULT_OOD_FRACTION, DEFAULT_TEST_FRACTION, _fraction, split_rows
from eqforge.problems.validate import check_arrays

# ---------------------------------------------------------------------------------------
# Building problems from in-memory data
# ---------------------------------------------------------------------------------------


def _to_float_matrix(columns: list[np.ndarray], labels: list[str], *, source: str, row_offset: int) -> np.ndarray:
    """Columns of arbitrary objects -> float matrix; a bad cell is reported by column and row."""
    out = np.empty((len(columns[0]) if columns else 0, len(columns)), dtype=np.float64)
    for j, col in enumerate(columns):
        arr = np.asarray(col)
        try:
            if arr.dtype.kind in "OUSV":
                raise TypeError
            out[:, j] = arr.astype(np.float64)
        except (TypeError, ValueError):
            for i, cell in enumerate(arr.tolist()):
                try:
                    out[i, j] = float(cell)
                except (TypeError, ValueError):
                    raise ProblemError(
                        f"{source}: column {labels[j]!r} row {i + row_offset} is not a number "
                        f"({cell!r}); fix or remove that row"
                    ) from None
    return out


def build_problem(
    data: np.ndarray,
    labels: Sequence[str],
    target: str,
    *,
    description: str,
    name: str = "problem",
    inputs: Sequence[str] | None = None,
    descriptions: dict[str, str] | None = None,
    units: dict[str, str] | None = None,
    test_fraction: float | None = None,
    ood_variable: str | None = None,
    ood_fraction: float | None = None,
    ood_side: str = "high",
    seed: int = 0,
    split: bool = True,
    source: str = "<memory>",
    row_offset: int = 1,
    extra_splits: dict[str, tuple[Any, Any]] | None = None,
    ground_truth: str | None = None,
    record: dict[str, Any] | None = None,
) -> Problem:
    """The shared path for ``new``, ``from_arrays`` and ``from_dataframe``.

    ``data`` is an (n, k) float matrix whose columns are ``labels``; ``target`` is one label;
    ``inputs`` (labels) defaults to every other column. ``descriptions`` and ``units`` are
    keyed by label or by safe name. ``row_offset`` converts 0-based row indices to the row
    numbers shown in errors (2 for a CSV with a header, 1 for arrays).
    """
    labels = [str(x) for x in labels]
    if len(set(labels)) != len(labels):
        dup = next(x for x in labels if labels.count(x) > 1)
        raise ProblemError(f"{source}: column {dup!r} appears twice; column names must be unique")
    if target not in labels:
        raise ProblemError(f"{source}: target column {target!r} not found (columns: {labels})")
    input_labels = [x for x in labels if x != target] if inputs is None else [str(x) for x in inputs]
    for lab in input_labels:
        if lab not in labels:
            raise ProblemError(f"{source}: input column {lab!r} not found (columns: {labels})")
        if lab == target:
            raise ProblemError(f"{source}: column {lab!r} cannot be both an input and the target")
    if not input_labels:
        raise ProblemError(f"{source}: no input columns besides the target {target!r}")
    if not description or not description.strip():
        raise ProblemError(f"{source}: a problem needs a description of the system (--describe)")

    used = [*input_labels, target]
    names = safe_names(used)
    by_label = dict(zip(used, names, strict=True))
    X = data[:, [labels.index(x) for x in input_labels]]
    y = data[:, labels.index(target)]
    # Whole-data check first, so a bad row is reported in the user's numbering.
    check_arrays(X, y, names, source=source, min_rows=1)

    def pick(table: dict[str, str] | None, lab: str) -> str | None:
        if not table:
            return None
        return table.get(lab, table.get(by_label[lab]))

    variables = [make_variable(by_label[lab], lab, pick(descriptions, lab), pick(units, lab)) for lab in used]

    splits: dict[str, Split]
    info: dict[str, Any] = {"seed": int(seed), "rows": int(len(y))}
    if split and extra_splits is None:
        tf = _fraction(test_fraction, DEFAULT_TEST_FRACTION, "the test fraction")
        of = _fraction(ood_fraction, DEFAULT_OOD_FRACTION, "the OOD fraction")
        ood_name: str | None = None
        column = None
        if of > 0:
            ood_label = ood_variable if ood_variable is not None else input_labels[0]
            if ood_label not in by_label:
                # accept the safe name as well as the label
                match = [lab for lab, nm in by_label.items() if nm == ood_label]
                if not match:
                    raise ProblemError(
                        f"{source}: OOD variable {ood_variable!r} is not a column of the problem "
                        f"(choose one of {list(by_label.values())})"
                    )
                ood_label = match[0]
            ood_name = by_label[ood_label]
            column = data[:, labels.index(ood_label)]
        rows = split_rows(column, len(y), test_fraction=tf, ood_fraction=of, ood_side=ood_side, seed=seed)
        splits = {s: Split(X=X[ix], y=y[ix], origin=f"{source} [{s} split]") for s, ix in rows.items()}
        info.update({"method": "random+ood" if of > 0 else "random", "test_fraction": tf, "ood_fraction": of})
        if ood_name is not None and column is not None and "test_ood" in rows:
            held = column[rows["test_ood"]]
            info.update({"ood_variable": ood_name, "ood_side": ood_side})
            if ood_side == "high":
                info["ood_threshold"] = float(np.min(held))
            elif ood_side == "low":
                info["ood_threshold"] = float(np.max(held))
    else:
        splits = {"train": Split(X=X, y=y, origin=f"{source} [train]")}
        info["method"] = "given"
        for split_name, pair in (extra_splits or {}).items():
            if pair is None:
                continue
            if split_name not in ("test_id", "test_ood"):
                raise ProblemError(f"{source}: unknown split {split_name!r}; use test_id or test_ood")
            Xs = _as_2d(pair[0], len(input_labels), source=f"{source} [{split_name}]")
            ys = np.asarray(pair[1], dtype=float).reshape(-1)
            splits[split_name] = Split(X=Xs, y=ys, origin=f"{source} [{split_name}]")
    if record:
        info.update({k: v for k, v in record.items() if v is not None})
    spec = ProblemSpec(
        name=name,
        description=description,
        inputs=variables[:-1],
        output=variables[-1],
        ground_truth=ground_truth,
        split=info,
    )
    return Problem(spec, splits, source=source)


def _as_2d(X: Any, d: int, *, source: str) -> np.ndarray:
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProblemError(f"{source}: inputs are not numeric ({exc})") from None
    if arr.ndim == 1 and d == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ProblemError(f"{source}: inputs must be a 2-D array (rows x {d} columns), got shape {arr.shape}")
    return arr


def problem_from_arrays(
    X: Any,
    y: Any,
    names: Sequence[str] | None = None,
    description: str = "",
    target: str = "y",
    *,
    name: str = "problem",
    descriptions: dict[str, str] | None = None,
    units: dict[str, str] | None = None,
    test_id: tuple[Any, Any] | None = None,
    test_ood: tuple[Any, Any] | None = None,
    split: bool = True,
    test_fraction: float | None = None,
    ood_variable: str | None = None,
    ood_fraction: float | None = None,
    ood_side: str = "high",
    seed: int = 0,
    ground_truth: str | None = None,
) -> Problem:
    """A problem from an (n, d) input array and an (n,) target.

    ``names`` are the d input names (default: a data frame's columns, else ``x0 .. x{d-1}``); names that are not safe
    Python identifiers are renamed and kept as labels. By default the rows are split as
    ``eqforge new`` splits them; pass ``test_id=(X, y)`` / ``test_ood=(X, y)`` to give the
    test splits yourself, or ``split=False`` to keep every row for training.
    """
    source = "<arrays>"
    if names is None and hasattr(X, "columns") and hasattr(X, "to_numpy"):
        names = [str(c) for c in X.columns]  # a data frame of inputs names its columns
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    y_arr = np.asarray(y)
    if y_arr.ndim == 2 and 1 in y_arr.shape:
        y_arr = y_arr.reshape(-1)
    if y_arr.ndim != 1:
        raise ProblemError(f"{source}: target must be one-dimensional, got shape {y_arr.shape}")
    X_raw = np.asarray(X, dtype=object) if not isinstance(X, np.ndarray) else X
    if X_raw.ndim == 1:
        X_raw = X_raw.reshape(-1, 1)
    if X_raw.ndim != 2:
        raise ProblemError(f"{source}: inputs must be a 2-D array (rows x columns), got shape {X_raw.shape}")
    if X_raw.shape[0] != y_arr.shape[0]:
        raise ProblemError(f"{source}: {X_raw.shape[0]} input rows but {y_arr.shape[0]} target values")
    d = X_raw.shape[1]
    labels = [f"x{i}" for i in range(d)] if names is None else [str(n) for n in names]
    if len(labels) != d:
        raise ProblemError(f"{source}: {len(labels)} names {labels} for {d} input columns")
    all_labels = [*labels, str(target)]
    data = _to_float_matrix([X_raw[:, j] for j in range(d)] + [y_arr], all_labels, source=source, row_offset=1)
    extra: dict[str, Any] | None = None
    if test_id is not None or test_ood is not None:
        extra = {"test_id": test_id, "test_ood": test_ood}
    return build_problem(
        data, all_labels, str(target), description=description, name=name, descriptions=descriptions,
        units=units, split=split, test_fraction=test_fraction, ood_variable=ood_variable,
        ood_fraction=ood_fraction, ood_side=ood_side, seed=seed, source=source, row_offset=1,
        extra_splits=extra, ground_truth=ground_truth,
    )


def problem_from_dataframe(
    df: Any,
    target: str,
    description: str = "",
    *,
    inputs: Sequence[str] | None = None,
    name: str = "problem",
    **options: Any,
) -> Problem:
    """A problem from a data frame (pandas or anything with ``.columns`` and ``.to_numpy()``).

    ``target`` names the column to model; ``inputs`` (default: every other column) the
    input columns. Other options as ``problem_from_arrays`` (``descriptions``, ``units``,
    ``test_fraction``, ``ood_variable``, ``ood_fraction``, ``seed``, ``split`` ...).
    """
    source = "<dataframe>"
    if not hasattr(df, "columns") or not hasattr(df, "to_numpy"):
        raise ProblemError(f"{source}: expected a data frame (an object with .columns and .to_numpy())")
    labels = [str(c) for c in list(df.columns)]
    raw = np.asarray(df.to_numpy())
    if raw.ndim != 2 or raw.shape[1] != len(labels):
        raise ProblemError(f"{source}: data has shape {raw.shape} for {len(labels)} columns")
    target = str(target)
    if target not in labels:
        raise ProblemError(f"{source}: target column {target!r} not found (columns: {labels})")
    used = [x for x in labels if x != target] if inputs is None else [str(x) for x in inputs]
    missing = [x for x in used if x not in labels]
    if missing:
        raise ProblemError(f"{source}: input column {missing[0]!r} not found (columns: {labels})")
    used = [*used, target]
    data = _to_float_matrix([raw[:, labels.index(x)] for x in used], used, source=source, row_offset=1)
    labels = used
    allowed = {"descriptions", "units", "split", "test_fraction", "ood_variable", "ood_fraction",
               "ood_side", "seed", "ground_truth"}
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"unexpected options {sorted(unknown)}")
    return build_problem(data, labels, target, description=description, name=name,
                         inputs=labels[:-1], source=source, row_offset=1, **options)


# ---------------------------------------------------------------------------------------
# eqforge new
# ---------------------------------------------------------------------------------------


def scaffold(
    directory: str | Path,
    csv: str | Path,
    target: str,
    describe: str,
    *,
    llm: Any = None,
    llm_name: str | None = None,
    name: str | None = None,
    test_fraction: float | None = None,
    ood_variable: str | None = None,
    ood_fraction: float | None = None,
    ood_side: str = "high",
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Turn a CSV and a paragraph into a problem folder; returns the folder.

    ``llm``: ``None`` or a callable ``complete(text) -> str`` (``as_complete`` in
    ``eqforge.agents.drafting`` adapts a backend); with one, the per-variable descriptions
    and units are drafted by the model (the paragraph itself is kept verbatim). ``target``
    and ``ood_variable`` are column headers as they appear in the CSV (safe names are
    accepted too).
    """
    from eqforge.problems.io import read_csv, save_problem

    out = Path(directory)
    csv_path = Path(csv)
    if (out / "problem.toml").exists() and not force:
        raise ProblemError(f"{out}: already holds a problem.toml; choose another folder or pass --force")
    if out.exists() and not out.is_dir():
        raise ProblemError(f"{out}: exists and is not a folder")
    header, data = read_csv(csv_path)
    if target not in header:
        names = safe_names(header)
        if target in names:
            target = header[names.index(target)]
        else:
            raise ProblemError(f"{csv_path}: target column {target!r} not found (header has {header})")
    if ood_variable is not None and ood_variable not in header:
        names = safe_names(header)
        if ood_variable in names:
            ood_variable = header[names.index(ood_variable)]
    problem_name = name or out.resolve().name
    source = str(csv_path)
    problem = build_problem(
        data, header, target, description=describe, name=problem_name, test_fraction=test_fraction,
        ood_variable=ood_variable, ood_fraction=ood_fraction, ood_side=ood_side, seed=seed,
        source=source, row_offset=2, record={"source": csv_path.name},
    )
    note = ""
    if llm is not None and not callable(llm):
        raise TypeError("llm must be a callable complete(text) -> str; "
                        "wrap a backend with eqforge.agents.drafting.as_complete")
    if llm is not None:
        used = [v.label or v.name for v in (*problem.spec.inputs, problem.spec.output)]
        names = [v.name for v in (*problem.spec.inputs, problem.spec.output)]
        cols = [header.index(lab) for lab in used]
        draft, _raw = draft_variables(llm, describe, data[:, cols], used, names, problem.spec.output.name)
        problem = apply_draft(problem, draft)
        who = llm_name or getattr(llm, "name", None) or "an LLM"
        missing = [n for n in names if n not in draft]
        note = (f"# Variable descriptions and units were drafted by {who}; review them before running.\n"
                + (f"# The model gave nothing for: {', '.join(missing)}.\n" if missing else ""))
    save_problem(problem, out)
    toml = out / "problem.toml"
    header_note = (
        f"# Made by `eqforge new` from {csv_path.name}: {sum(s.n for s in problem.splits.values())} rows, "
        f"split as recorded under [split].\n" + note
    )
    toml.write_text(header_note + toml.read_text(encoding="utf-8"), encoding="utf-8")
    return out


def apply_draft(problem: Problem, draft: dict[str, dict[str, str | None]]) -> Problem:
    """Copy drafted descriptions/units onto the problem's variables (only those given)."""
    def update(v: Variable) -> Variable:
        d = draft.get(v.name)
        if not d:
            return v
        changes = {k: val for k, val in (("description", d.get("description")), ("unit", d.get("unit")))
                   if val is not None}
        return v.model_copy(update=changes)

    spec = problem.spec.model_copy(update={
        "inputs": [update(v) for v in problem.spec.inputs],
        "output": update(problem.spec.output),
    })
    return Problem(spec, problem.splits, source=problem.source)
