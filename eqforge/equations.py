"""The estimator's equation table: a run's distinct laws as a pandas DataFrame.

Built from a run's records alone (so a resumed, warm-started or interrupted run gives the
same table): every distinct valid program is converted to a closed form (AST to sympy, in
a helper process with deadlines — never by executing it), programs stating the same law are
grouped (``evaluator.analysis.laws``), and the table keeps the accuracy–complexity Pareto front of
the laws plus the best-scoring ones, each law once, sorted by complexity.

Columns, PySR's where PySR has one: ``complexity``, ``loss`` (MSE on the training data),
``nmse_train`` (and ``nmse_test_id`` / ``nmse_test_ood`` when the problem has those
splits), ``equation`` (the fitted closed form, constants to 6 digits), ``sympy_format``
(full-precision sympy expression), ``latex``, ``program``, ``score`` (eqforge's score:
−MSE on train, as in the run's records), ``front_score`` (PySR's ``score``:
−Δlog(loss)/Δcomplexity against the next simpler law on the front), ``pareto``,
``variants`` (programs stating this law), ``id`` (the sample), ``params``,
``law_status`` and ``verification``: whether the closed form predicts what the sandbox
scored on the training rows (``verified``), does not (``unverified``: its ``equation`` is
marked, and nothing computes it as the law) or could not be checked (``unknown``).

``select`` implements the ``model_selection`` rules: ``"accuracy"`` (lowest loss),
``"score"`` (highest ``front_score``) and ``"best"`` (PySR's default: the highest
``front_score`` among front laws whose loss is within 1.5× the lowest).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from eqforge.evaluator.analysis import Entry, SymbolicWorker, analyse_run, pareto_front
from eqforge.evaluator.analysis.laws import Law, group_laws, law_key
from eqforge.evaluator.analysis.run import simplify_entry, verify_entry

SELECTIONS = ("best", "accuracy", "score")
# Losses below this fraction of the target's variance are fitting noise (two exact laws differ
# there by rounding alone): they count as equal on the front and in the selection rules.
NOISE_NMSE = 1e-14
SPLIT_COLUMNS = {"train": "nmse_train", "test_id": "nmse_test_id", "test_ood": "nmse_test_ood"}


def _mse(e: Entry) -> float:
    return -e.score


class _Floor:
    """The loss as the front and the rules compare it: at least the noise floor."""

    def __init__(self, variance: float) -> None:
        self.floor = max(float(variance) * NOISE_NMSE, np.finfo(float).tiny)

    def __call__(self, e: Entry) -> float:
        return max(_mse(e), self.floor)


def _front_scores(front: list[Law[Entry]], loss: _Floor) -> dict[str, float]:
    """PySR's score along the front (sorted by complexity): 0 for the simplest law."""
    out: dict[str, float] = {}
    prev: tuple[int, float] | None = None
    for law in sorted(front, key=lambda w: (w.entry.complexity or 0, loss(w.entry))):
        c = int(law.entry.complexity or 0)
        value = loss(law.entry)
        if prev is None or c == prev[0]:
            out[law.entry.id] = 0.0
        else:
            out[law.entry.id] = -(math.log(value) - math.log(prev[1])) / (c - prev[0])
        prev = (c, value)
    return out


def _laws(entries: list[Entry], names: list[str]) -> list[Law[Entry]]:
    return group_laws(entries, key=lambda e: law_key(e.closed_form, names),
                      complexity_of=lambda e: e.complexity, loss_of=_mse)


def _merge(laws: list[Law[Entry]], names: list[str]) -> list[Law[Entry]]:
    """Regroup laws by their representatives' (now simplified) closed forms."""
    merged = group_laws(laws, key=lambda w: law_key(w.entry.closed_form, names),
                        complexity_of=lambda w: w.entry.complexity, loss_of=lambda w: _mse(w.entry))
    out = []
    for m in merged:
        variants = [v for w in m.variants for v in w.variants]
        out.append(Law(m.key, m.entry.entry, variants))
    return out


Predict = Callable[[str, list[float]], "dict[str, Any] | None"]


def distinct_laws(records: list[Any], names: list[str], loss: _Floor, *, top: int = 10,
                  budget: float = 60.0, predict: Predict | None = None,
                  X: Any = None) -> tuple[list[Law[Entry]], set[str]]:
    """The laws to show (the front and the ``top`` best by score) and the front's ids;
    with ``predict`` (the sandbox's) and the training inputs ``X``, each shown law's
    closed form is verified against the sandbox's predictions."""
    with SymbolicWorker() as worker:
        analysis = analyse_run(records, names, budget=budget, show=0, worker=worker)
        laws = _laws(analysis.entries, names)

        def pick(laws: list[Law[Entry]]) -> tuple[list[Law[Entry]], list[Law[Entry]]]:
            front = pareto_front(laws, lambda w: w.entry.complexity, lambda w: loss(w.entry))
            best = sorted(laws, key=lambda w: -w.entry.score)[:top]
            shown = list({id(w): w for w in [*front, *best]}.values())
            return shown, front

        shown, _ = pick(laws)
        for law in shown:
            simplify_entry(law.entry, names, worker)
        shown, front = pick(_merge(shown, names))
        if predict is not None and X is not None:
            def reference(e: Entry) -> np.ndarray | None:
                preds = predict(e.program, list(e.params or []))
                return None if not preds or "train" not in preds else np.asarray(preds["train"])

            for law in shown:
                verify_entry(law.entry, names, worker, reference, np.asarray(X, float))
    return shown, {w.entry.id for w in front}


def equations_table(records: list[Any], problem: Any, *, top: int = 10,
                    budget: float = 60.0, predict: Predict | None = None) -> pd.DataFrame:
    """The DataFrame described in the module doc (empty, with its columns, if nothing is
    valid). ``predict``: the sandbox's predictions of a program (``Evaluator.predict``),
    to verify closed forms with; without it ``law_status`` is ``unknown``."""
    names = list(problem.input_names)
    splits = [s for s in SPLIT_COLUMNS if problem.split(s) is not None]
    loss = _Floor(float(np.var(problem.train.y)))
    shown, front_ids = distinct_laws(records, names, loss, top=top, budget=budget,
                                     predict=predict, X=problem.train.X)
    front_scores = _front_scores([w for w in shown if w.entry.id in front_ids], loss)
    rows = []
    for law in shown:
        e = law.entry
        cf = e.closed_form
        ok = cf is not None and cf.ok
        status = e.law_status or "unknown"
        row: dict[str, Any] = {
            "complexity": e.complexity,
            "loss": _mse(e),
            **{SPLIT_COLUMNS[s]: e.nmse.get(s) for s in splits},
            "equation": cf.text if cf is not None and ok else "",  # marked when unverified
            "sympy_format": cf.fitted if cf is not None and ok else None,
            "latex": cf.latex if cf is not None and ok else "",
            "program": e.program,
            "score": e.score,
            "front_score": front_scores.get(e.id, np.nan),
            "pareto": e.id in front_ids,
            "variants": law.count,
            "id": e.id,
            "params": list(e.params or []),
            "no_closed_form": "" if ok else (cf.reason if cf is not None else "not analysed"),
            "law_status": status if ok else "",
            "verification": (e.verification.detail if e.verification is not None else
                             "not checked") if ok else "",
        }
        rows.append(row)
    columns = ["complexity", "loss", *(SPLIT_COLUMNS[s] for s in splits), "equation",
               "sympy_format", "latex", "program", "score", "front_score", "pareto",
               "variants", "id", "params", "no_closed_form", "law_status", "verification"]
    df = pd.DataFrame(rows, columns=columns)
    df["complexity"] = df["complexity"].astype("Int64")
    for col in ("loss", "score", "front_score", *(SPLIT_COLUMNS[s] for s in splits)):
        df[col] = df[col].astype(float)
    df = df.sort_values(["complexity", "loss"], na_position="last", kind="stable")
    df = df.reset_index(drop=True)
    df.attrs["loss_floor"] = loss.floor
    return df


def select(table: pd.DataFrame, rule: str) -> int:
    """The row chosen by a ``model_selection`` rule (see the module doc)."""
    if rule not in SELECTIONS:
        raise ValueError(f"model_selection must be one of {list(SELECTIONS)}, got {rule!r}")
    if table.empty:
        raise ValueError("the equation table is empty: no valid program was found")
    front = table[table["pareto"]]
    if rule == "accuracy" or front.empty:
        return int(table["loss"].idxmin())
    if rule == "score":
        return int(front["front_score"].idxmax())
    floor = float(table.attrs.get("loss_floor", 0.0))
    losses = front["loss"].clip(lower=floor)
    close = front[losses <= 1.5 * float(losses.min())]
    return int((close if not close.empty else front)["front_score"].idxmax())
