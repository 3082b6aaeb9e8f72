"""Parsing a classical searcher's ``--llm`` spec into validated, frozen options.

``sindy:``, ``operon:max_length=30`` or ``gplearn:population=2000,generations=30``: the part
after the colon is ``key=value`` pairs, checked against the method's options (an unknown key
is an error naming the known ones), so a sweep fails before its first run, not in the middle.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eqforge.errors import BackendError

EXTRA = "pip install 'eqforge[baselines]'"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SindyOptions(_Frozen):
    """STLSQ over monomials (inputs and, where the data exclude 0, their reciprocals) up to
    ``degree`` factors, plus sin, cos, x·sin and x·cos of each input; ``thresholds`` values on a log grid
    from ``threshold_min`` to ``threshold_max`` give the sparsity path (the Pareto front)."""

    degree: int = Field(3, ge=1, le=5)
    reciprocals: bool = True
    trig: bool = True
    threshold_min: float = Field(1e-6, gt=0, description="on unit-RMS columns, unit-variance target")
    threshold_max: float = Field(1.0, gt=0)
    thresholds: int = Field(40, ge=1, le=400)
    alpha: float = Field(1e-10, ge=0, description="ridge penalty of each STLSQ step")
    max_terms: int = Field(12, ge=1, description="models with more terms are not recorded")
    engine: Literal["numpy", "pysindy"] = "numpy"


class OperonOptions(_Frozen):
    """``pyoperon.sklearn.SymbolicRegressor``: multi-objective (R², length) NSGA-II, whose
    final non-dominated set is the front recorded."""

    population: int = Field(1000, ge=10)
    generations: int = Field(1000, ge=1)
    max_evaluations: int = Field(1_000_000, ge=100)
    max_length: int = Field(40, ge=3)
    symbols: str = "add,sub,mul,div,sin,cos,exp,log,sqrt,constant,variable"
    threads: int = Field(1, ge=1)


class GplearnOptions(_Frozen):
    """``gplearn.genetic.SymbolicRegressor``: one best program (gplearn keeps no front)."""

    population: int = Field(1000, ge=10)
    generations: int = Field(20, ge=1)
    parsimony: float = Field(0.001, ge=0)
    functions: str = "add,sub,mul,div,sin,cos"
    jobs: int = Field(1, ge=1)


OPTIONS: dict[str, type[_Frozen]] = {"sindy": SindyOptions, "operon": OperonOptions, "gplearn": GplearnOptions}
CLASSICAL_KINDS = tuple(OPTIONS)
#: the import each searcher needs (checked lazily, named in the one-line error)
MODULES = {"sindy": "pysindy", "operon": "pyoperon", "gplearn": "gplearn"}


@dataclass(frozen=True)
class ClassicalSpec:
    kind: str
    options: Any  # one of the option models above
    text: str

    def describe(self) -> dict[str, Any]:
        return {"backend": self.kind, "model": self.kind, "spec": self.text, "classical": True,
                "options": self.options.model_dump()}


def is_classical(spec: str) -> bool:
    return spec.partition(":")[0] in OPTIONS


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_classical(spec: str, *, check_installed: bool = True) -> ClassicalSpec:
    """``kind:key=value,...`` -> ClassicalSpec; ``BackendError`` with one line on any problem."""
    kind, _, arg = spec.partition(":")
    if kind not in OPTIONS:
        raise BackendError(f"--llm {spec}: not a classical searcher ({', '.join(k + ':' for k in OPTIONS)})")
    raw: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in arg.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            example = next(iter(OPTIONS[kind].model_fields))
            raise BackendError(f"--llm {spec}: options are key=value pairs, e.g. {kind}:{example}=…")
        raw[key.strip()] = _value(value.strip())
    try:
        options = OPTIONS[kind].model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = (f"unknown option; known: {', '.join(OPTIONS[kind].model_fields)}"
               if err["type"] == "extra_forbidden" else err["msg"])
        raise BackendError(f"--llm {spec}: {where}: {msg}") from None
    if check_installed and (kind != "sindy" or options.engine == "pysindy"):  # type: ignore[attr-defined]
        require(kind)
    return ClassicalSpec(kind, options, spec)


def require(kind: str) -> None:
    """One line naming the extra when the searcher's library is missing."""
    module = MODULES[kind]
    if importlib.util.find_spec(module) is None:
        raise BackendError(f"{kind}: needs {module}; {EXTRA}")
