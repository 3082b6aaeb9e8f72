"""Symbolic accuracy (SA): the share of problems whose best law *is* the ground truth.

SA is built on ``recovery`` (one run's best law against its ground truth, tri-state) and
adds the rules a table needs:

* A run's status is its summary's ``recovery_status`` ("recovered", "not recovered",
  "unknown"), or — for run directories written before that field — ``recovered`` read as
  True / False / None. A problem without a ground truth has no status and no SA.
* "Recovered" means equal to the ground truth up to fitted constants after canonicalisation
  (``recovery``: the fitted form is expanded, each constant snapped to a number of the truth,
  a small integer or 0 within 1e-3 relative + 1e-6 absolute, then ``expand``/``simplify``
  must give the truth exactly).
* "Unknown" (no closed form, or the check ran out of its work budget) is not a failure: it
  is counted apart and left out of the share. SA = recovered / (recovered + not recovered).
* Over seeds, a cell's SA is that share of its seeds; over problems, a problem counts as
  recovered by a strategy when at least half of its known seeds are.

``recheck`` redoes one best law's check (for run directories without the analysis). The
program is a candidate's, so its conversion and the check run in the killable helper
(``worker``) with deadlines, like the end-of-run analysis: a step that overruns gives
"unknown", never "not recovered". The optional LLM judge is ``evaluator.analysis.judge``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eqforge.evaluator.analysis.recovery import STATUSES, UNDECIDED_REASONS, Recovery, unknown
from eqforge.evaluator.analysis.worker import SymbolicWorker, timeout_form

RECOVERED, NOT_RECOVERED, UNKNOWN = STATUSES[True], STATUSES[False], STATUSES[None]


def run_status(summary: dict[str, Any] | None) -> str | None:
    """A finished run's recovery status, or None when its problem declares no ground truth."""
    if not summary:
        return None
    status = summary.get("recovery_status")
    if status in (RECOVERED, NOT_RECOVERED, UNKNOWN):
        return str(status)
    if "recovered" not in summary and not summary.get("ground_truth"):
        return None
    value = summary.get("recovered")
    return STATUSES[value if isinstance(value, bool) else None]


@dataclass(frozen=True)
class SymbolicAccuracy:
    recovered: int = 0
    not_recovered: int = 0
    unknown: int = 0

    @property
    def known(self) -> int:
        return self.recovered + self.not_recovered

    @property
    def sa(self) -> float | None:
        """recovered / known; None when nothing is known (not 0: unknown is no failure)."""
        return self.recovered / self.known if self.known else None

    @property
    def majority(self) -> str | None:
        """The status of a problem over its seeds: recovered when at least half of the known
        seeds are, unknown when none is known."""
        if not self.known:
            return UNKNOWN if self.unknown else None
        return RECOVERED if self.recovered >= self.known / 2 else NOT_RECOVERED

    def to_json(self) -> dict[str, Any]:
        return {"sa": self.sa, "recovered": self.recovered, "not_recovered": self.not_recovered,
                "unknown": self.unknown}


def tally(statuses: Iterable[str | None]) -> SymbolicAccuracy:
    """Count statuses (None — no ground truth — is skipped)."""
    counts = {RECOVERED: 0, NOT_RECOVERED: 0, UNKNOWN: 0}
    for s in statuses:
        if s is not None:
            counts[s] += 1
    return SymbolicAccuracy(counts[RECOVERED], counts[NOT_RECOVERED], counts[UNKNOWN])


#: deadlines of ``recheck``'s two helper steps (safety nets: see ``worker``), each retried
#: once with a deadline ``RETRY_FACTOR`` times longer; the values of ``analysis.run``
CONVERT_TIMEOUT = 2.0
RECOVERY_TIMEOUT = 5.0
RETRY_FACTOR = 4.0


def recheck(program: str, params: list[float] | None, truth: str, input_names: list[str], *,
            worker: SymbolicWorker | None = None, convert_timeout: float = CONVERT_TIMEOUT,
            recovery_timeout: float = RECOVERY_TIMEOUT) -> Recovery:
    """One law against the ground truth, every sympy step in the helper process.

    ``worker``: a helper to reuse over many laws (closed by its owner); without it one is
    started and closed here. A deadline that expires (after its retry) or a helper that
    dies gives ``unknown`` with the reason, never "not recovered"."""
    own = worker is None
    w = worker if worker is not None else SymbolicWorker()
    try:
        cf = w.call_retry("convert", program, list(input_names),
                          list(params) if params is not None else None,
                          timeout=convert_timeout, factor=RETRY_FACTOR)
        if cf is None:
            cf = timeout_form(convert_timeout * RETRY_FACTOR, w)
        if not cf.ok and cf.reason in UNDECIDED_REASONS:
            return unknown(f"no closed form ({cf.reason}: {cf.detail})", truth)
        rec = w.call_retry("recover", cf, truth, list(input_names), 1e-3, 1e-6,
                           timeout=recovery_timeout, factor=RETRY_FACTOR)
        if rec is None:
            return unknown(f"the check did not finish ({w.last_status}, deadline "
                           f"{recovery_timeout * RETRY_FACTOR:g} s)", truth)
        return rec
    finally:
        if own:
            w.close()
