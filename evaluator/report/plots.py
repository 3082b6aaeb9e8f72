"""Figures for run reports, drawn with matplotlib's Agg canvas (no display, no pyplot).

Every function returns PNG bytes; ``math_svg`` renders LaTeX through matplotlib's
mathtext, so reports need neither a TeX installation nor a network (MathJax).
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

DPI = 110
COLORS = {"valid": "#2e7d32", "duplicate": "#90a4ae", "front": "#c62828", "all": "#9e9e9e",
          "best": "#1565c0"}
FAILURE_COLORS = ["#ef6c00", "#8e24aa", "#6d4c41", "#d81b60", "#fbc02d", "#00838f",
                  "#5d4037"]


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555",
            wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _positive(values: Sequence[float | None]) -> np.ndarray:
    """Values for a log axis: non-positive (exact fits) clipped to a tiny positive number."""
    arr = np.array([np.nan if v is None else float(v) for v in values], float)
    return np.where(arr > 0, arr, 1e-300)


#: rendering a candidate's LaTeX: longer formulas are not drawn (MathML is shown), and the
#: drawing runs in the analysis' helper process under this deadline
MAX_MATH_CHARS = 4000
MATH_TIMEOUT = 10.0


def math_svg(latex: str, *, size: float = 16) -> bytes | None:
    """LaTeX (sympy's dialect) rendered by mathtext as SVG, or None if mathtext cannot (or
    not within ``MATH_TIMEOUT``: the text comes from a candidate's expression)."""
    from eqforge.evaluator.analysis.worker import SymbolicWorker

    if len(latex) > MAX_MATH_CHARS:
        return None
    with SymbolicWorker() as worker:
        out = worker.call("call", _math_svg_here, latex, size, timeout=MATH_TIMEOUT)
    return out if isinstance(out, bytes) else None


def _math_svg_here(latex: str, size: float) -> bytes | None:
    from matplotlib import mathtext

    buf = io.BytesIO()
    try:
        mathtext.math_to_image(f"${latex}$", buf, format="svg",
                               prop=FontProperties(size=size))
    except Exception:  # noqa: BLE001 - unsupported construct: caller falls back to MathML
        return None
    return buf.getvalue()


# -- Pareto front --------------------------------------------------------------------------


def pareto_plot(points: list[tuple[int, float]], front: list[tuple[int, float, str]],
                best: tuple[int, float] | None) -> bytes:
    """Train NMSE against complexity: every converted program, the front, the best."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    if not points:
        _note(ax, "no program could be converted to a closed form")
        return _png(fig)
    xs = [p[0] for p in points]
    ax.scatter(xs, _positive([p[1] for p in points]), s=18, color=COLORS["all"], alpha=0.6,
               label="valid programs", zorder=2)
    if front:
        fx = [f[0] for f in front]
        fy = _positive([f[1] for f in front])
        ax.step(fx, fy, where="post", color=COLORS["front"], lw=1.5, zorder=3)
        ax.scatter(fx, fy, s=40, color=COLORS["front"], label="Pareto front", zorder=4)
        for x, y, label in zip(fx, fy, [f[2] for f in front], strict=True):
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=COLORS["front"])
    if best is not None:
        ax.scatter([best[0]], _positive([best[1]]), s=160, marker="*",
                   color=COLORS["best"], label="best score", zorder=5)
    ax.set_yscale("log")
    ax.set_xlabel("complexity (expression nodes)")
    ax.set_ylabel("train NMSE")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Accuracy vs complexity")
    return _png(fig)


# -- progress over the run -----------------------------------------------------------------


def progress_plot(samples: list[dict[str, Any]]) -> bytes:
    """Best training MSE so far against samples, wall time and tokens."""
    fig = Figure(figsize=(11, 3.4))
    axes = fig.subplots(1, 3)
    rows = sorted(samples, key=lambda r: r.get("index", 0))
    best = math.inf
    xs_n, xs_t, xs_k, ys = [], [], [], []
    tokens = 0
    for r in rows:
        tokens += (r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0)
        if r.get("ok") and r.get("score") is not None:
            best = min(best, -float(r["score"]))
        if math.isfinite(best):
            xs_n.append(r.get("index", 0))
            xs_t.append(float(r.get("elapsed") or 0.0))
            xs_k.append(tokens)
            ys.append(best)
    specs = [(axes[0], xs_n, "samples"), (axes[1], xs_t, "wall time (s)"),
             (axes[2], xs_k, "tokens (prompt + completion)")]
    for ax, xs, label in specs:
        if not ys:
            _note(ax, "no valid program yet")
            continue
        if label.startswith("tokens") and tokens == 0:
            _note(ax, "no token usage recorded\n(replay or local model)")
            continue
        ax.step(xs, _positive(ys), where="post", color=COLORS["best"], lw=1.6)
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("best train MSE so far (= −score)")
    fig.suptitle("Best score so far", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def validity_plot(samples: list[dict[str, Any]], bins: int = 20, top: int = 6) -> bytes:
    """Share of valid, duplicate and each failure reason, in windows of consecutive samples."""
    rows = sorted((r for r in samples if r.get("source", "llm") == "llm"),
                  key=lambda r: r.get("index", 0))
    fig = Figure(figsize=(9, 3.6))
    ax = fig.add_subplot()
    if not rows:
        _note(ax, "no samples from the model yet")
        return _png(fig)

    def kind(r: dict[str, Any]) -> str:
        if r.get("duplicate_of"):
            return "duplicate"
        if r.get("ok"):
            return "valid"
        return str(r.get("error") or "failed")

    kinds = [kind(r) for r in rows]
    reasons = [k for k, _ in Counter(k for k in kinds if k not in ("valid", "duplicate"))
               .most_common()]
    keep = reasons[:top]
    kinds = [k if k in ("valid", "duplicate", *keep) else "other failures" for k in kinds]
    order = ["valid", "duplicate", *keep] + (["other failures"] if len(reasons) > top else [])
    n = len(rows)
    width = max(1, math.ceil(n / bins))
    starts = list(range(0, n, width))
    bottom = np.zeros(len(starts))
    for i, k in enumerate(order):
        share = np.array([sum(1 for x in kinds[s:s + width] if x == k) / len(kinds[s:s + width])
                          for s in starts])
        if not share.any():
            continue
        color = COLORS.get(k) or FAILURE_COLORS[(i - 2) % len(FAILURE_COLORS)]
        ax.bar([s + 1 for s in starts], share, width=width * 0.9, bottom=bottom, align="edge",
               color=color, label=f"{k} ({kinds.count(k)})")
        bottom += share
    ax.set_xlim(0.5, n + 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"sample (windows of {width})")
    ax.set_ylabel("share of samples")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title("Valid programs and failure reasons over the run")
    return _png(fig)


# -- fit quality on held-out data ----------------------------------------------------------


def fit_plot(data: dict[str, tuple[np.ndarray, np.ndarray]], output: str,
             max_points: int = 4000) -> bytes:
    """Predicted vs true (top) and residuals (bottom) per split; ``data[split] = (y, ŷ)``."""
    splits = list(data)
    fig = Figure(figsize=(4.2 * max(1, len(splits)), 7))
    if not splits:
        _note(fig.add_subplot(), "no predictions available")
        return _png(fig)
    axes = fig.subplots(2, len(splits), squeeze=False)
    rng = np.random.default_rng(0)
    titles = {"train": "train", "test_id": "in-domain test (ID)",
              "test_ood": "out-of-domain test (OOD)"}
    for j, split in enumerate(splits):
        y, pred = (np.asarray(a, float) for a in data[split])
        if y.size > max_points:
            idx = rng.choice(y.size, max_points, replace=False)
            y, pred = y[idx], pred[idx]
        ok = np.isfinite(pred)
        top, bottom = axes[0][j], axes[1][j]
        top.scatter(y[ok], pred[ok], s=4, alpha=0.4, color=COLORS["best"], rasterized=True)
        if ok.any():
            lo = float(min(y[ok].min(), pred[ok].min()))
            hi = float(max(y[ok].max(), pred[ok].max()))
            top.plot([lo, hi], [lo, hi], color="#333", lw=0.8, ls="--")
        top.set_title(titles.get(split, split) + (f"  ({(~ok).sum()} non-finite)"
                                                  if (~ok).any() else ""), fontsize=10)
        top.set_xlabel(f"true {output}")
        top.set_ylabel(f"predicted {output}")
        top.grid(alpha=0.3)
        bottom.scatter(y[ok], (pred - y)[ok], s=4, alpha=0.4, color=COLORS["front"],
                       rasterized=True)
        bottom.axhline(0, color="#333", lw=0.8)
        bottom.set_xlabel(f"true {output}")
        bottom.set_ylabel("residual (predicted − true)")
        bottom.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)
