"""What a run found, as science: closed forms, complexity, the Pareto front, recovery.

``analyse_run`` converts every distinct valid program of a run to a closed form (best
scores first, in a helper process with deadlines, within a total time budget), builds the
accuracy–complexity Pareto front, simplifies the equations that will be shown and checks
them against the problem's ground truth. ``enrich_summary`` adds the result to a run's
summary; the report builds on the same analysis.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eqforge.evaluator.analysis import verify
from eqforge.evaluator.analysis.closed_form import ClosedForm
from eqforge.evaluator.analysis.pareto import pareto_front
from eqforge.evaluator.analysis.recovery import Recovery
from eqforge.evaluator.analysis.recovery import unknown as unknown_recovery
from eqforge.evaluator.analysis.verify import Verification
from eqforge.evaluator.analysis.worker import TIMEOUT, SymbolicWorker, timeout_form

log = logging.getLogger(__name__)

# Deadlines of the helper process: safety nets, not budgets (see ``worker``). A step that
# overruns is retried once with a deadline ``RETRY_FACTOR`` times longer; if that expires
# too, the step is recorded as undecided (``timeout`` / recovery ``unknown``).
CONVERT_TIMEOUT = 2.0
SIMPLIFY_TIMEOUT = 3.0
RECOVERY_TIMEOUT = 5.0
VERIFY_TIMEOUT = 5.0
RETRY_FACTOR = 4.0

#: the sandbox's predictions of an entry on the training rows (``None``: not available)
Reference = Callable[["Entry"], "np.ndarray | None"]


@dataclass
class Entry:
    """One distinct valid program of a run and its closed form."""

    id: str
    index: int
    program: str
    params: list[float] | None
    score: float
    nmse: dict[str, float | None]
    metrics: dict[str, dict[str, float | None]]
    closed_form: ClosedForm | None = None
    recovery: Recovery | None = None
    #: the closed form as converted (before simplification): what exports compute
    written_form: ClosedForm | None = None
    verification: Verification | None = None

    @property
    def law_status(self) -> str | None:
        """``verified`` / ``unverified`` / ``unknown``; ``None`` when not checked."""
        return self.verification.status if self.verification is not None else None

    @property
    def complexity(self) -> int | None:
        cf = self.closed_form
        return cf.complexity if cf is not None and cf.ok else None

    @property
    def loss(self) -> float | None:
        """Train NMSE (monotone in the score, but comparable across problems)."""
        value = self.nmse.get("train")
        return float(value) if value is not None else -self.score

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "score": self.score, "complexity": self.complexity,
            "nmse": self.nmse, "metrics": self.metrics,
        }
        if self.closed_form is not None:
            cf = self.closed_form.to_json()
            out["closed_form"] = cf
            if cf.get("convertible"):
                out["equation"] = cf["equation"]
        if self.verification is not None:
            out["verification"] = self.verification.to_json()
            if "closed_form" in out:
                out["closed_form"]["verified"] = self.verification.status
        if self.recovery is not None:
            out["recovery"] = self.recovery.to_json()
        return out


@dataclass
class RunAnalysis:
    entries: list[Entry] = field(default_factory=list)  # by score, best first
    pareto: list[Entry] = field(default_factory=list)
    not_convertible: Counter = field(default_factory=Counter)
    skipped: int = 0  # not converted: out of time budget
    ground_truth: str | None = None
    seconds: float = 0.0

    @property
    def best(self) -> Entry | None:
        return self.entries[0] if self.entries else None

    def top(self, k: int = 10) -> list[Entry]:
        return self.entries[:k]

    def stats(self) -> dict[str, Any]:
        converted = sum(1 for e in self.entries if e.closed_form is not None
                        and e.closed_form.ok)
        return {"programs": len(self.entries), "converted": converted,
                "not_convertible": dict(self.not_convertible.most_common()),
                "skipped": self.skipped, "seconds": round(self.seconds, 3)}


def _field(rec: Any, name: str, default: Any = None) -> Any:
    return rec.get(name, default) if isinstance(rec, dict) else getattr(rec, name, default)


def distinct_valid(records: list[Any]) -> list[Entry]:
    """Valid programs, each distinct program once, best score first."""
    seen: set[str] = set()
    out = []
    for r in records:
        if not _field(r, "ok") or _field(r, "duplicate_of") or not _field(r, "program"):
            continue
        score = _field(r, "score")
        if score is None:
            continue
        key = _field(r, "program_key") or _field(r, "program")
        if key in seen:
            continue
        seen.add(key)
        out.append(Entry(id=_field(r, "id"), index=_field(r, "index", 0),
                         program=_field(r, "program"), params=_field(r, "params"),
                         score=float(score), nmse=dict(_field(r, "nmse") or {}),
                         metrics=dict(_field(r, "metrics") or {})))
    out.sort(key=lambda e: (-e.score, e.index))
    return out


def analyse_run(records: list[Any], input_names: list[str], *, ground_truth: str | None = None,
                budget: float = 60.0, show: int = 10, worker: SymbolicWorker | None = None,
                reference: Reference | None = None, X: np.ndarray | None = None,
                ) -> RunAnalysis:
    """Closed forms, Pareto front, verification and recovery for a run's records.

    ``show``: how many of the best programs get simplified, verified and checked for
    recovery (besides the Pareto front). ``reference`` and ``X`` (the training inputs):
    the sandbox's predictions, against which each shown closed form is verified (see
    ``verify``). ``budget`` (seconds) is a safety net for hostile runs: programs not
    reached within it are counted as skipped; the best programs come first.
    """
    start = time.monotonic()
    deadline = start + budget
    result = RunAnalysis(entries=distinct_valid(records), ground_truth=ground_truth)
    own = worker is None
    worker = worker or SymbolicWorker()
    try:
        _convert(result, input_names, worker, deadline)
        result.pareto = pareto_front(result.entries, lambda e: e.complexity, lambda e: e.loss)
        shown = list({e.id: e for e in [*result.entries[:show], *result.pareto]}.values())
        for e in shown:
            simplify_entry(e, input_names, worker)
        if reference is not None and X is not None:
            for e in shown:
                verify_entry(e, input_names, worker, reference, X)
        if ground_truth:
            for e in shown:
                e.recovery = _recover(e, ground_truth, input_names, worker)
    finally:
        if own:
            worker.close()
    result.seconds = time.monotonic() - start
    return result


def _convert(result: RunAnalysis, names: list[str], worker: SymbolicWorker,
             deadline: float) -> None:
    for e in result.entries:
        if deadline - time.monotonic() <= 0:
            result.skipped += 1
            continue
        cf = worker.call_retry("convert", e.program, names, e.params, timeout=CONVERT_TIMEOUT,
                               factor=RETRY_FACTOR)
        if cf is None:
            cf = timeout_form(CONVERT_TIMEOUT * RETRY_FACTOR, worker)
        e.closed_form = e.written_form = cf
        if not cf.ok:
            result.not_convertible[cf.reason or "?"] += 1


def simplify_entry(e: Entry, names: list[str], worker: SymbolicWorker) -> None:
    cf = e.closed_form
    if cf is None or not cf.ok or cf.simplified:
        return
    better = worker.call_retry("simplify", cf, e.params, names, timeout=SIMPLIFY_TIMEOUT,
                               factor=RETRY_FACTOR)
    if better is not None:
        e.closed_form = better
    elif worker.last_status == TIMEOUT:
        log.info("simplifying %s ran out of time; shown as written", e.id)


def verify_entry(e: Entry, names: list[str], worker: SymbolicWorker, reference: Reference,
            X: np.ndarray) -> None:
    written, shown = e.written_form, e.closed_form
    if written is None or not written.ok or written.fitted is None:
        return
    try:
        ref = reference(e)
    except Exception as exc:  # noqa: BLE001 - the sandbox's answer is optional here
        log.info("no reference predictions for %s: %s", e.id, exc)
        ref = None
    if ref is None:
        e.verification = verify.unknown("the sandbox gave no predictions to compare with")
        return
    exprs = [written.fitted]
    if shown is not None and shown is not written and shown.fitted is not None:
        exprs.append(shown.fitted)
    v = worker.call_retry("verify", exprs, names, np.asarray(X, float), np.asarray(ref, float),
                          timeout=VERIFY_TIMEOUT, factor=RETRY_FACTOR)
    if v is None and len(exprs) > 1:
        exprs = exprs[:1]
    if v is not None and not v.verified and len(exprs) > 1:
        # the simplified display may be what disagrees: fall back to the form as written
        alone = worker.call_retry("verify", exprs[:1], names, np.asarray(X, float),
                                  np.asarray(ref, float), timeout=VERIFY_TIMEOUT,
                                  factor=RETRY_FACTOR)
        if alone is not None and alone.verified:
            e.closed_form, v = written, alone
    if v is None:
        v = verify.unknown(f"the check did not finish ({worker.last_status})")
    e.verification = v
    if v.status == verify.UNVERIFIED:
        for cf in {id(f): f for f in (e.closed_form, e.written_form) if f is not None}.values():
            cf.mark_unverified()


def _recover(e: Entry, truth: str, names: list[str], worker: SymbolicWorker) -> Recovery:
    """Recovery of the form as written (not the simplified display, which depends on
    whether simplification finished), unknown when the form is not the scored law."""
    cf = e.written_form or e.closed_form
    if cf is None:
        return unknown_recovery("not analysed", truth)
    if e.verification is not None and e.verification.status == verify.UNVERIFIED:
        return unknown_recovery("the closed form does not reproduce the scored program", truth)
    if not cf.ok:
        return worker.call("recover", cf, truth, names, 1e-3, 1e-6, timeout=RECOVERY_TIMEOUT) \
            or unknown_recovery(f"no closed form ({cf.reason})", truth)
    rec = worker.call_retry("recover", cf, truth, names, 1e-3, 1e-6, timeout=RECOVERY_TIMEOUT,
                            factor=RETRY_FACTOR)
    if rec is None:
        return unknown_recovery(f"the check did not finish ({worker.last_status}, deadline "
                                f"{RECOVERY_TIMEOUT * RETRY_FACTOR:g} s)", truth)
    return rec


def enrich_summary(summary: dict[str, Any], records: list[Any], problem: Any, *,
                   budget: float = 60.0,
                   predict: Callable[[str, list[float]], dict[str, Any] | None] | None = None,
                   ) -> dict[str, Any]:
    """Add closed form, complexity, verification and recovery of the best program, the
    Pareto front and conversion counts to a run summary (in place; also returned).

    ``predict`` (the sandboxed ``Evaluator.predict``): the scored program's predictions,
    against which the closed form is verified. ``recovered`` is ``True``, ``False`` or
    ``None`` (unknown), ``recovery_status`` says it in words."""
    spec = problem.spec

    def reference(e: Entry) -> np.ndarray | None:
        if predict is None or not e.params:
            return None
        preds = predict(e.program, list(e.params))
        return None if not preds or "train" not in preds else np.asarray(preds["train"])

    analysis = analyse_run(records, spec.input_names, ground_truth=spec.ground_truth,
                           budget=budget, show=1, reference=reference if predict else None,
                           X=problem.train.X if predict else None)
    best = summary.get("best")
    entry = analysis.best
    match = entry
    if isinstance(best, dict) and entry is not None:
        match = next((e for e in analysis.entries if e.id == best.get("id")), entry)
        data = match.to_json()
        for key in ("closed_form", "complexity", "recovery", "equation", "verification"):
            if key in data:
                best[key] = data[key]
        if match.verification is not None:
            best["law_status"] = match.verification.status
    summary["pareto"] = [e.to_json() for e in analysis.pareto]
    summary["closed_forms"] = analysis.stats()
    if spec.ground_truth:
        summary["ground_truth"] = spec.ground_truth
        rec = entry.recovery if entry is not None else None
        status = rec.status if rec is not None else "unknown"
        summary["recovered"] = rec.recovered if rec is not None else None
        summary["recovery_status"] = status
        if isinstance(best, dict):
            best["recovered"], best["recovery_status"] = summary["recovered"], status
        summary["recovered_on_front"] = any(e.recovery is not None and e.recovery.recovered
                                            for e in analysis.pareto)
    return summary
