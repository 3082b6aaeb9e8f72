"""Statistics for a sweep's table: what the numbers support, and what they do not.

* **Median rank with a bootstrap CI.** Within each problem the cells are ranked by median
  OOD NMSE (1 = best, ties share the mean rank); a strategy's median rank over problems gets
  a 95 % percentile interval from ``BOOTSTRAP`` resamples of the problems (seeded, so tables
  are reproducible).
* **Paired tests.** For each pair of strategies (strategy, llm), the runs they share
  (same problem and seed) are paired and their log10 OOD NMSE compared with the Wilcoxon
  signed-rank test (``scipy.stats.wilcoxon``, two-sided, ``zsplit`` for ties). NMSE is
  floored at ``FLOOR`` (both exact to numerical precision count as a tie) and a missing or
  infinite NMSE is ``CEIL`` (worse than any finite fit). p-values are not corrected for the
  number of comparisons; the sentence says so when there are several.
* **One sentence per comparison**: wins, losses, ties, p, and what it does not show.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np

BOOTSTRAP = 2000
FLOOR = 1e-12
CEIL = 1e12
ALPHA = 0.05
COMPARISON_COLUMNS = ("a", "b", "pairs", "a_better", "b_better", "ties", "p_value", "sentence")


def label(key: tuple[str, str]) -> str:
    strategy, llm = key
    return f"{strategy} · {llm}"


def bootstrap_median_ci(values: list[float], *, n: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the median over resamples of ``values``."""
    arr = np.asarray(values, float)
    if arr.size == 1:
        return float(arr[0]), float(arr[0])
    rng = np.random.default_rng(seed)
    meds = np.median(arr[rng.integers(0, arr.size, (n, arr.size))], axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5])
    return float(lo), float(hi)


def log_nmse(value: float | None) -> float:
    if value is None or not math.isfinite(value):
        return math.log10(CEIL)
    return math.log10(min(max(value, FLOOR), CEIL))


def paired(runs: dict[tuple[str, str], dict[tuple[str, int], float | None]], a: tuple[str, str],
           b: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """log10 OOD NMSE of the (problem, seed) runs both strategies finished."""
    shared = sorted(set(runs.get(a, {})) & set(runs.get(b, {})))
    return (np.array([log_nmse(runs[a][k]) for k in shared]), np.array([log_nmse(runs[b][k]) for k in shared]))


def wilcoxon_p(x: np.ndarray, y: np.ndarray) -> float | None:
    from scipy.stats import wilcoxon

    d = x - y
    if d.size == 0:
        return None
    if np.all(d == 0):
        return 1.0
    try:
        return float(wilcoxon(x, y, zero_method="zsplit", alternative="two-sided").pvalue)
    except ValueError:
        return None


def comparisons(runs: dict[tuple[str, str], dict[tuple[str, int], float | None]]) -> list[dict[str, Any]]:
    """One row per pair of strategies (in table order)."""
    keys = list(runs)
    many = len(keys) > 2
    out = []
    for a, b in combinations(keys, 2):
        x, y = paired(runs, a, b)
        wins, losses = int(np.sum(x < y)), int(np.sum(x > y))
        ties = int(x.size - wins - losses)
        p = wilcoxon_p(x, y)
        out.append({"a": label(a), "b": label(b), "pairs": int(x.size), "a_better": wins, "b_better": losses,
                    "ties": ties, "p_value": p, "sentence": sentence(label(a), label(b), wins, losses, ties, p, many)})
    return out


def sentence(a: str, b: str, wins: int, losses: int, ties: int, p: float | None, many: bool) -> str:
    n = wins + losses + ties
    if n == 0:
        return f"{a} and {b} share no finished (problem, seed) run: nothing to compare."
    lead, trail, w, lo = (a, b, wins, losses) if wins >= losses else (b, a, losses, wins)
    counts = f"{lead} has the lower OOD NMSE on {w} of {n} (problem, seed) pairs, {trail} on {lo}, {ties} tied"
    if p is None:
        return counts + "; the test could not be computed."
    ptxt = f"p = {p:.2g}"
    if p < ALPHA and w > lo:
        claim = (f"{counts} (Wilcoxon {ptxt}): the data support {lead} fitting better out of domain on these "
                 f"problems; they do not say by how much, nor that it holds on other problems")
        if many:
            claim += " (uncorrected for the number of comparisons)"
        return claim + "."
    why = " — with so few pairs only a large, consistent effect could show" if n < 10 else ""
    return (f"{counts} (Wilcoxon {ptxt}): the data do not show a difference{why}; this is not evidence "
            f"that the two are equal.")
