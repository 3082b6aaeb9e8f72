"""The built-in problems: their definitions (``problems/builtin/*.toml``) and generators.

A built-in is a TOML definition shipped with the package (LLM-SR's four problems read
their data from ``--data``) or a generator that makes its data itself (``problems.library``
registers ``oscillator1``, ``feynman-*``, … here when the registry first needs them). It
sits below both the registry and the library, so neither imports the other's users.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

from eqforge.problems.io import read_spec
from eqforge.problems.spec import Problem, ProblemSpec

#: name -> generator(seed) for the built-ins whose data the package makes itself
GENERATORS: dict[str, Callable[[int], Problem]] = {}
#: name -> one-line summary of each generator
GENERATOR_INFO: dict[str, str] = {}


def register_generator(name: str, make: Callable[[int], Problem], summary: str = "") -> None:
    GENERATORS[name] = make
    GENERATOR_INFO[name] = summary


def builtin_spec_names() -> list[str]:
    root = resources.files("eqforge.problems") / "builtin"
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def builtin_spec(name: str) -> ProblemSpec | None:
    path = resources.files("eqforge.problems") / "builtin" / f"{name}.toml"
    if not path.is_file():
        return None
    with resources.as_file(path) as real:
        return read_spec(Path(real))
