"""Reading and writing problem folders (``problem.toml`` + CSV splits).

CSV parsing is done cell by cell so that a bad value is reported with its file, column and
row (as a spreadsheet shows it: header is row 1) rather than as a numpy traceback.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import tomli_w
from pydantic import ValidationError

from eqforge.config import read_toml
from eqforge.errors import ProblemError
from eqforge.problems.spec import SPLITS, Problem, ProblemSpec, Split
from eqforge.problems.validate import check_names


def read_csv(path: Path, expected: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Read a numeric CSV with a header; check its columns against ``expected`` if given."""
    if not path.is_file():
        raise ProblemError(f"{path}: file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ProblemError(f"{path}: cannot read CSV ({exc})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise ProblemError(f"{path}: empty file; expected a header row and numeric rows")
    header = [h.strip() for h in rows[0]]
    if expected is not None:
        missing = [c for c in expected if c not in header]
        extra = [c for c in header if c not in expected]
        if missing:
            raise ProblemError(
                f"{path}: missing column {missing[0]!r} (header has {header}, "
                f"problem expects {expected})"
            )
        if extra:
            raise ProblemError(
                f"{path}: unexpected column {extra[0]!r} (problem expects {expected}); "
                "remove it or declare it in problem.toml"
            )
    data = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for i, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ProblemError(
                f"{path}: row {i + 2} has {len(row)} cells but the header has {len(header)}"
            )
        for j, cell in enumerate(row):
            try:
                value = float(cell)
            except ValueError:
                raise ProblemError(
                    f"{path}: column {header[j]!r} row {i + 2} is not a number ({cell!r}); "
                    "fix or remove that row"
                ) from None
            if not math.isfinite(value):
                raise ProblemError(
                    f"{path}: column {header[j]!r} row {i + 2} is {cell.strip()!r} (NaN/inf); "
                    "remove or fill the missing values"
                )
            data[i, j] = value
    if expected is not None and header != expected:
        data = data[:, [header.index(c) for c in expected]]
        header = list(expected)
    return header, data


def read_split(path: Path, columns: list[str]) -> Split:
    _, data = read_csv(path, columns)
    return Split(X=data[:, :-1], y=data[:, -1], origin=str(path))


def write_csv(path: Path, columns: list[str], X: np.ndarray, y: np.ndarray) -> None:
    data = np.column_stack([X, y])
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([repr(float(v)) for v in row] for row in data)


def read_spec(path: Path) -> ProblemSpec:
    raw = read_toml(path, error=ProblemError)
    try:
        spec = ProblemSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ProblemError(f"{path}: {loc}: {err['msg']}") from None
    check_names(spec.columns, source=str(path))
    return spec


def load_data_dir(spec: ProblemSpec, directory: Path, *, source: str) -> Problem:
    """Load the splits named in ``spec.data`` from ``directory`` (train required)."""
    splits: dict[str, Split] = {}
    for split_name, filename in spec.data.items():
        path = directory / filename
        if not path.exists():
            if split_name == "train":
                raise ProblemError(f"{path}: file not found; a problem needs train.csv")
            continue
        splits[split_name] = read_split(path, spec.columns)
    return Problem(spec, splits, source=source)


def load_problem_dir(directory: Path) -> Problem:
    spec = read_spec(directory / "problem.toml")
    return load_data_dir(spec, directory, source=str(directory))


def save_problem(problem: Problem, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data = {s: f"{s}.csv" for s in SPLITS if s in problem.splits}
    spec = problem.spec.model_copy(update={"data": data})
    (directory / "problem.toml").write_text(
        tomli_w.dumps(spec.model_dump(exclude_none=True)), encoding="utf-8"
    )
    for split_name, filename in data.items():
        split = problem.splits[split_name]
        write_csv(directory / filename, spec.columns, split.X, split.y)
    return directory
