"""Finding a problem by name or path.

A reference is either a folder holding ``problem.toml``, or the name of a built-in
definition. Built-in definitions that carry no data of their own (LLM-SR's four problems)
read it from ``--data DIR`` or from ``$EQFORGE_DATA/<name>/``; simulated built-ins (see
``problems.library``) generate theirs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from eqforge.errors import ProblemError
from eqforge.problems.io import load_data_dir, load_problem_dir, read_spec
from eqforge.problems.spec import Problem, ProblemSpec

# Generators for built-in problems whose data the package makes itself; filled by
# ``problems.library`` (issue: built-in library) via ``register_generator``.
_GENERATORS: dict[str, Callable[[int], Problem]] = {}
_GENERATOR_INFO: dict[str, str] = {}


def register_generator(name: str, make: Callable[[int], Problem], summary: str = "") -> None:
    _GENERATORS[name] = make
    _GENERATOR_INFO[name] = summary


def _load_library() -> None:
    try:
        import eqforge.problems.library  # noqa: F401  (registers generators on import)
    except ImportError:
        pass


def builtin_spec_names() -> list[str]:
    root = resources.files("eqforge.problems") / "builtin"
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def builtin_spec(name: str) -> ProblemSpec | None:
    path = resources.files("eqforge.problems") / "builtin" / f"{name}.toml"
    if not path.is_file():
        return None
    with resources.as_file(path) as real:
        return read_spec(Path(real))


def list_problems() -> dict[str, str]:
    """Name -> one-line summary of every built-in problem."""
    _load_library()
    out: dict[str, str] = {}
    for name in builtin_spec_names():
        spec = builtin_spec(name)
        assert spec is not None
        out[name] = spec.description
    for name, summary in _GENERATOR_INFO.items():
        out.setdefault(name, summary)
    return dict(sorted(out.items()))


def load_problem(ref: str | os.PathLike[str], *, data: str | os.PathLike[str] | None = None,
                 seed: int = 0) -> Problem:
    """Resolve ``ref`` (folder or built-in name) into a validated ``Problem``."""
    path = Path(ref)
    if (path / "problem.toml").is_file():
        return load_problem_dir(path)
    name = str(ref)
    spec = builtin_spec(name)
    if spec is not None:
        data_dir = _find_data_dir(name, data)
        if data_dir is not None:
            return load_data_dir(spec, data_dir, source=str(data_dir))
    _load_library()
    if name in _GENERATORS and data is None:
        return _GENERATORS[name](seed)
    if spec is not None:
        raise ProblemError(
            f"problem {name!r} needs data: pass --data DIR (a folder with train.csv, "
            f"test_id.csv, test_ood.csv) or set EQFORGE_DATA to a folder holding {name}/"
        )
    if path.exists():
        raise ProblemError(f"{path}: no problem.toml in this folder; create one with `eqforge new`")
    raise ProblemError(
        f"unknown problem {name!r}: give a folder with problem.toml or one of "
        f"`eqforge problems list`"
    )


def _find_data_dir(name: str, data: str | os.PathLike[str] | None) -> Path | None:
    if data is not None:
        d = Path(data)
        if not d.is_dir():
            raise ProblemError(f"{d}: --data must be a folder holding train.csv")
        if not (d / "train.csv").exists() and (d / name / "train.csv").exists():
            d = d / name
        return d
    root = os.environ.get("EQFORGE_DATA")
    if root and (Path(root) / name / "train.csv").exists():
        return Path(root) / name
    return None
