"""JSON lines, written and read one way: a run's files, and the JSONL files users hand in.

Every line of a run's ``.jsonl`` files goes through ``append`` (one ``write`` of a whole line,
flushed and fsynced, so a kill leaves at most one torn last line) and comes back through
``read``. A final line without its newline is that torn line: it is always ignored, and
cut from the file with ``repair`` (only by the process that owns the run directory, before
it appends). A corrupt line elsewhere is an error when reading strictly (resume: the
records must be exact) and skipped when reading tolerantly (a report of a hand-edited or
foreign file).

A file a user wrote — replay responses, programs for ``eqforge evaluate`` — is read with
``read_inputs``: every non-blank line must be an object with the named string field, and the
error names the line that is not. The module sits beside the run directory (``rundir``) and
the evaluator rather than inside either, so both use it without importing each other.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from eqforge.errors import EqforgeError


def jsonable(obj: Any) -> Any:
    """``json.dumps`` default: numpy arrays and scalars become lists and numbers."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def clean(obj: Any) -> Any:
    """Replace non-finite floats by None so files stay strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """Strict JSON; ASCII unless a caller asks otherwise, so any string (a model's lone
    surrogate included) is written as a ``\\uXXXX`` escape and reads back unchanged."""
    kw.setdefault("ensure_ascii", True)
    return json.dumps(clean(obj), allow_nan=False, default=jsonable, **kw)


def append(path: Path, obj: dict[str, Any]) -> None:
    line = dumps(obj) + "\n"
    # ASCII already; backslashreplace would write a stray surrogate as the same JSON escape
    with path.open("a", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read(path: Path, *, strict: bool = True, repair: bool = False) -> list[dict[str, Any]]:
    """The objects of a JSONL file (none if it does not exist); see the module doc."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    complete, _, tail = raw.rpartition(b"\n")
    out = []
    for number, line in enumerate(complete.split(b"\n") if complete else [], start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if strict:
                raise EqforgeError(f"{path}: line {number} is corrupt JSON; cannot read it") from None
            continue
        if isinstance(obj, dict):
            out.append(obj)
        elif strict:
            raise EqforgeError(f"{path}: line {number} is not a JSON object; cannot read it")
    if tail.strip() and repair:
        with path.open("r+b") as fh:
            fh.truncate(len(raw) - len(tail))
    return out


def read_inputs(path: Path, field: str, *, error: type[EqforgeError] = EqforgeError
                ) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a user's JSONL file; a line that is
    not JSON, or lacks the string ``field``, is an ``error`` naming it."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}: line {number} is not JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(field), str):
            raise error(f"{path}: line {number} needs a string field {field!r}")
        out.append((number, obj))
    return out
