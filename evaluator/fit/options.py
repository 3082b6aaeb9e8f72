"""What a fit is asked for and what it returns: options, result, the model callables' types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Model = Callable[[np.ndarray], np.ndarray]  # full params vector -> predictions
RowModel = Callable[[np.ndarray, np.ndarray | None], np.ndarray]  # (params, rows | None) -> (m,)
# (params (B, n_params), rows | None) -> predictions (B, m), or None when it cannot batch
ManyModel = Callable[[np.ndarray, np.ndarray | None], np.ndarray | None]

_EPS = np.finfo(float).eps
_CLIP = 1e100  # residuals are clipped here so that their squares stay finite
_RIDGE = 1e-12  # on the unit-scaled normal equations while searching
_BATCH_ELEMENTS = 1 << 21  # most predictions computed in one batched call


@dataclass
class FitResult:
    params: np.ndarray
    loss: float
    nfev: int = 0
    starts: int = 0
    method: str = ""
    notes: list[str] = field(default_factory=list)


def mse(pred: np.ndarray, y: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        value = float(np.mean((pred - y) ** 2))
    return value if np.isfinite(value) else np.inf


@dataclass(frozen=True)
class FitOptions:
    n_params: int = 10
    indices: tuple[int, ...] | None = None  # params to fit; None: all n_params
    seed: int = 0
    time_budget: float = 10.0  # seconds for the whole fit (checked between evaluations)
    subsample: int | None = 300  # search on at most this many rows, polish on all
    screen_rows: int | None = 150  # rows the starts are screened on
    anchors: tuple[int, ...] = ()  # rows every subsample keeps (each input's extremes)
    parent: dict[int, float] | None = None  # a parent's fitted values, by param index
    screen: int = 48  # random starts screened
    sweep: int = 101  # points of the ±50% one-coordinate sweeps, shared by the free params
    starts: int = 3  # most projected LM runs on the subsample (ones and the parent always run)
    agree_rtol: float = 1e-6  # two runs agree when their losses are this close (relative)
    agree_atol: float = 1e-12  # ... or this close relative to var(y) (exact fits, loss ~ 0)
    explore_tol: float = 1e-8  # LM tolerances on the subsample
    explore_iters: int = 4  # LM evaluations per free param (+1) on the subsample
    polish_tol: float = 1e-10  # LM tolerances when polishing
    polish_iters: int = 3  # LM evaluations per free param (+1) when polishing ...
    polish_min: int = 20  # ... and at least this many
    polish_rows: int | None = 2000  # with over twice this many rows, polish on this many first ...
    final_iters: int = 2  # ... then LM evaluations per free param (+1) on all rows
    runner_up: float = 3.0  # distinct minima within this factor of the best are re-ranked on all rows
    tie: float = 0.01  # ... and the second there is polished too when this close (relative)
    plain_start: bool = True  # LM from ones over all used params on the subsample (LLM-SR-like start)
    ones_basin: bool = False  # also polish LM from ones on all rows (superseded by ``llmsr_start``)
    speculate: bool = True  # on subsamples, evaluate each point's Jacobian steps with its residuals
    llmsr_start: bool = True  # run LLM-SR's own procedure (BFGS from ones) first, keep the lower (off: ablation)
    llmsr_seconds: float = 30.0  # ... with LLM-SR's own time limit, never the search's budget
    total_seconds: float | None = None  # hard end of the whole fit (the job's timeout), if any


class OutOfTime(Exception):
    """The fit's time budget ran out between two evaluations."""
