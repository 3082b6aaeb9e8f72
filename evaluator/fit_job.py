"""The typed messages between the evaluator and its trusted driver, across the sandbox.

The sandbox carries ``Job.options`` and ``Outcome.payload`` without reading them (it knows
nothing of equations); these are what the evaluator puts there. ``FitJob`` is built once by
``Evaluator`` and read by ``runner.fit_job``: every default is defined here (or in
``FitOptions``, which it refers to), nowhere else. ``FitPayload`` is what the driver returns
and the ``Scorer`` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypedDict

import numpy as np

from eqforge.evaluator.fit.options import FitOptions


@dataclass(frozen=True)
class FitJob:
    """One program's fit-and-predict request (``Job.options``)."""

    n_params: int = 10  # the params vector's length (the program may read fewer)
    fitter: Literal["default", "llmsr"] = "default"
    indices: tuple[int, ...] | None = None  # the params the trusted analysis found used; None: all
    seed: int = 0
    subsample: int | None = FitOptions.subsample
    time_budget: float = FitOptions.time_budget
    parent: Mapping[int, float] | None = None  # a parent's fitted values, by param index
    params: tuple[float, ...] | None = None  # given: no fit, only predictions
    batch: bool = True  # evaluate many vectors in one program call when the program broadcasts
    pointwise: bool = True  # hide row order and check rows are independent (problem opt-out)
    fit_options: Mapping[str, Any] = field(default_factory=dict)  # FitOptions overrides (tests, ablations)

    @classmethod
    def of(cls, options: object) -> FitJob:
        """A ``FitJob`` from itself or from a plain mapping of its fields (tests, benchmarks)."""
        if isinstance(options, FitJob):
            return options
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(f"a fit job is a FitJob or a mapping, not {type(options).__name__}")
        raw = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown fit job fields {sorted(unknown)}")
        if raw.get("indices") is not None:
            raw["indices"] = tuple(int(i) for i in raw["indices"])
        if raw.get("params") is not None:
            raw["params"] = tuple(float(v) for v in np.asarray(raw["params"], np.float64).ravel())
        if raw.get("parent"):
            raw["parent"] = {int(k): float(v) for k, v in raw["parent"].items()}
        return cls(**raw)

    def fit_options_for(self, indices: tuple[int, ...], anchors: tuple[int, ...],
                        total_seconds: float | None = None) -> FitOptions:
        """The default fitter's options for this job (overrides checked by name)."""
        known = {f.name for f in fields(FitOptions)}
        extra = {k: v for k, v in self.fit_options.items() if k in known}
        return FitOptions(n_params=self.n_params, indices=indices, seed=self.seed, time_budget=self.time_budget,
                          subsample=self.subsample, parent=dict(self.parent) if self.parent else None,
                          anchors=anchors, total_seconds=total_seconds, **extra)


class FitPayload(TypedDict):
    """What ``runner.fit_job`` returns (``Outcome.payload``) and the ``Scorer`` reads."""

    params: list[float]
    n_params: int
    predictions: dict[str, np.ndarray]
    fit: dict[str, Any]
