"""What the stages of one default fit share: the data, the clock, the objectives made so far."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from eqforge.evaluator.fit.options import FitOptions, ManyModel, RowModel
from eqforge.evaluator.fit.projection import _Projected
from eqforge.evaluator.fit.search import _subsample


@dataclass
class FitContext:
    """One fit's shared state. The stages (``search.explore``, ``polish.polish``) read it and
    add objectives and notes; the random generator is consumed in stage order, so a fit is
    reproducible from its seed."""

    model: RowModel
    model_many: ManyModel | None
    model_each: ManyModel | None
    y: np.ndarray
    opts: FitOptions
    start_time: float
    idx: np.ndarray  # the used params' indices
    rng: np.random.Generator
    anchors: np.ndarray  # rows every subsample keeps
    rows: np.ndarray | None  # the search's subsample (None: all rows)
    penalty: float  # the residual of a non-finite prediction
    atol: float  # losses this close (absolute) agree
    notes: list[str] = field(default_factory=list)
    objectives: list[_Projected] = field(default_factory=list)

    @classmethod
    def build(cls, model: RowModel, model_many: ManyModel | None, y: np.ndarray, opts: FitOptions,
              model_each: ManyModel | None) -> FitContext:
        start_time = time.perf_counter()
        idx = np.array(opts.indices if opts.indices is not None else range(opts.n_params), int)
        n = y.shape[0]
        rng = np.random.default_rng(opts.seed)
        anchors = np.unique(np.array([a for a in opts.anchors if 0 <= a < n]
                                     + [int(np.argmin(y)), int(np.argmax(y))], int)) if n else np.empty(0, int)
        rows = _subsample(n, opts.subsample, anchors, rng) if opts.subsample and n > opts.subsample else None
        spread = float(np.std(y)) + float(np.max(np.abs(y))) if n else 1.0
        penalty = 1e3 * (spread if spread > 0 and np.isfinite(spread) else 1.0)
        var_y = float(np.var(y)) if n else 0.0
        atol = opts.agree_atol * (var_y if var_y > 0 else 1.0)
        return cls(model, model_many, model_each, y, opts, start_time, idx, rng, anchors, rows, penalty, atol)

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def k(self) -> int:
        return int(self.idx.size)

    @property
    def budget(self) -> float:
        return self.opts.time_budget

    @property
    def full0(self) -> np.ndarray:
        return np.ones(self.opts.n_params)

    def agree(self, a: float, b: float) -> bool:
        return abs(a - b) <= self.opts.agree_rtol * max(abs(a), abs(b)) + self.atol

    def objective(self, on_rows: np.ndarray | None, lin: np.ndarray, until: float, exact: bool = False,
                  ) -> _Projected:
        """Residuals on ``on_rows`` with ``lin`` solved out, until ``until`` s into the fit.
        The exact objective checks results: it evaluates one vector at a time."""
        obj = _Projected(self.model, None if exact else self.model_many, self.y, on_rows, self.full0, self.idx,
                         lin, self.penalty, self.start_time + until, exact)
        obj.speculate = self.opts.speculate and on_rows is not None and on_rows.size <= 2000
        obj.model_each = self.model_each
        self.objectives.append(obj)
        return obj
