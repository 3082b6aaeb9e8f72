"""A sweep's outputs: results tables, best-so-far curves and one self-contained HTML report.

``write_outputs(DIR)`` reads the sweep directory only (its plan and run directories, through
``results``) and writes ``results.csv``, ``results.md``, ``curves.png`` (per strategy and
model: the median over problems and seeds of the best-so-far train NMSE, against samples),
``curves-problems.png`` (the same per problem, median over seeds; for up to 24 problems)
and ``report.html``, which embeds the tables and the PNGs and loads nothing else, so it
opens offline and can be mailed. What ``eqforge sweep`` writes at the end and
``eqforge sweep DIR --table`` writes at any time.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from eqforge.sweep import results as R
from eqforge.sweep.spec import short_problem

MAX_PROBLEM_PANELS = 24
FLOOR = 1e-20  # exact fits on a log axis


def _padded_median(curves: list[list[float]]) -> np.ndarray:
    curves = [c for c in curves if c]
    if not curves:
        return np.array([])
    n = max(len(c) for c in curves)
    arr = np.array([c + [c[-1]] * (n - len(c)) for c in curves], float)
    arr = np.where(np.isfinite(arr), np.maximum(arr, FLOOR), np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(arr, axis=0)


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _label(strategy: str, llm: str, llms: set[str]) -> str:
    return strategy if len(llms) == 1 else f"{strategy} · {llm}"


def _draw(ax: Any, series: dict[tuple[str, str], np.ndarray], llms: set[str]) -> None:
    drawn = False
    for (strategy, llm), y in sorted(series.items()):
        if y.size and np.isfinite(y).any():
            style = "--" if llm.startswith(R.BASELINE_PREFIX) else "-"
            ax.plot(np.arange(1, y.size + 1), y, style, lw=1.6, label=_label(strategy, llm, llms))
            drawn = True
    if drawn:
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no finished runs with a valid program", ha="center", va="center",
                transform=ax.transAxes, color="#555")
    ax.grid(True, which="major", alpha=0.3)


def curves_plot(results: list[R.RunResult]) -> bytes:
    from matplotlib.figure import Figure

    llms = {r.llm for r in results}
    groups: dict[tuple[str, str], list[list[float]]] = {}
    for r in results:
        if r.curve:
            groups.setdefault((r.strategy, r.llm), []).append(r.curve)
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    _draw(ax, {k: _padded_median(v) for k, v in groups.items()}, llms)
    ax.set_xlabel("samples")
    ax.set_ylabel("best-so-far NMSE (train), median")
    ax.set_title("Best so far per strategy (median over problems and seeds)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _png(fig)


def problem_curves_plot(results: list[R.RunResult]) -> bytes | None:
    from matplotlib.figure import Figure

    problems = list(dict.fromkeys(r.problem for r in results))
    if not problems or len(problems) > MAX_PROBLEM_PANELS:
        return None
    llms = {r.llm for r in results}
    cols = min(3, len(problems))
    rows = math.ceil(len(problems) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    for i, problem in enumerate(problems):
        ax = fig.add_subplot(rows, cols, i + 1)
        groups: dict[tuple[str, str], list[list[float]]] = {}
        for r in results:
            if r.problem == problem and r.curve:
                groups.setdefault((r.strategy, r.llm), []).append(r.curve)
        _draw(ax, {k: _padded_median(v) for k, v in groups.items()}, llms)
        ax.set_title(short_problem(problem), fontsize=9)
        ax.set_xlabel("samples", fontsize=8)
        if i == 0 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("Best-so-far train NMSE per problem (median over seeds)")
    fig.tight_layout()
    return _png(fig)


def collect(out: Path) -> list[R.RunResult]:
    from eqforge.sweep.execute import SweepDir

    sweep_dir = SweepDir(out)
    return [R.read_run(plan, sweep_dir.runs_dir / plan["run_id"]) for plan in sweep_dir.planned()]


def write_outputs(out: str | Path) -> dict[str, Path]:
    """Write the tables, plots and HTML report of the sweep in ``out``; return their paths."""
    out = Path(out)
    results = collect(out)
    rows = R.cell_rows(results)
    summary, notes = R.strategy_summary(rows)
    paths = {"csv": out / "results.csv", "markdown": out / "results.md",
             "curves": out / "curves.png", "html": out / "report.html"}
    paths["csv"].write_text(R.to_csv(rows), encoding="utf-8")
    paths["markdown"].write_text(R.results_markdown(rows, summary, notes), encoding="utf-8")
    curves = curves_plot(results)
    paths["curves"].write_bytes(curves)
    images = [("Best-so-far curves per strategy", curves)]
    per_problem = problem_curves_plot(results)
    if per_problem is not None:
        paths["problem_curves"] = out / "curves-problems.png"
        paths["problem_curves"].write_bytes(per_problem)
        images.append(("Best-so-far curves per problem", per_problem))
    paths["html"].write_text(render_html(out, rows, summary, notes, images, results), encoding="utf-8")
    return paths


# -- HTML --------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9rem}
table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right;white-space:nowrap}
th{background:#f3f5f8}td.t{text-align:left}
tr.base td{color:#555;font-style:italic}
img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f7f7f7;padding:.8rem;overflow-x:auto;font-size:.8rem}
li{margin:.2rem 0}
"""
TEXT_COLUMNS = {"problem", "strategy", "llm", "beats_terms"}


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cls = ' class="base"' if str(r.get("llm", "")).startswith(R.BASELINE_PREFIX) else ""
        cells = "".join(
            f'<td{" class=t" if c in TEXT_COLUMNS else ""}>{html.escape(R.fmt(r.get(c), c))}</td>'
            for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(out: Path, rows: list[dict[str, Any]], summary: list[dict[str, Any]], notes: list[str],
                images: list[tuple[str, bytes]], results: list[R.RunResult]) -> str:
    sweep_toml = (out / "sweep.toml").read_text(encoding="utf-8") if (out / "sweep.toml").is_file() else ""
    try:
        versions = json.loads((out / "versions.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        versions = {}
    done = sum(r.state == "done" for r in results)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        f"<title>eqforge sweep: {html.escape(out.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>eqforge sweep: {html.escape(out.name)}</h1>",
        f"<p class=meta>{done} of {len(results)} runs finished · {len(rows)} cells · written {stamp}</p>",
        "<h2>Results</h2><p>One row per (problem, strategy, llm), aggregated over the seeds that "
        "finished: NMSE of each seed's best program (median and interquartile range), share of seeds "
        "recovering the ground truth, and totals over seeds. <i>Italic rows</i> are the "
        "<code>terms:</code> baseline.</p>",
        _table(rows, R.COLUMNS),
        "<h2>Strategies</h2><p>Median rank over problems (the cells of each problem ranked by median "
        "OOD NMSE, 1 = best) and share of problems recovered (at least half of the seeds).</p>",
        _table(summary, R.SUMMARY_COLUMNS),
    ]
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    for title, png in images:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("<h2>Sweep file</h2><pre>" + html.escape(sweep_toml) + "</pre>")
    if versions:
        parts.append("<h2>Versions</h2><p class=meta>" + html.escape(
            ", ".join(f"{k} {v}" for k, v in versions.items())) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
