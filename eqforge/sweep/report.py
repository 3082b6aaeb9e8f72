"""A sweep's outputs: results tables, best-so-far curves and one self-contained HTML report.

``write_outputs(DIR)`` reads the sweep directory only (its plan and run directories, through
``results``) and writes ``results.csv``, ``results.md``, ``curves.png`` (per strategy and
model: the median over problems and seeds of the best-so-far train NMSE, against samples),
``curves-problems.png`` (the same per problem, median over seeds; for up to 24 problems),
``strategies.csv`` and ``comparisons.csv`` (the per-strategy statistics and the paired
tests, also joined into ``results.csv`` and shown in the report), ``comparison.png``
(median rank with its bootstrap interval, symbolic accuracy recovered / not recovered /
unknown, and the paired tests' p-values as a matrix) and ``report.html``, which embeds the
tables and the PNGs and loads nothing else, so it
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
from eqforge.sweep import stats as S
from eqforge.sweep.spec import short_problem
from eqforge.textsafe import terminal_safe

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
            style = "--" if R.is_baseline(llm) else "-"
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


def comparison_plot(summary: list[dict[str, Any]], tests: list[dict[str, Any]]) -> bytes:
    """Three panels: median rank with its bootstrap 95 % interval, SA counts, paired p-values."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, max(3.5, 0.45 * len(summary) + 1.5)))
    labels = [f"{r['strategy']} · {r['llm']}" for r in summary]
    y = np.arange(len(summary))
    ax = fig.add_subplot(1, 3, 1)
    med = np.array([r["median_rank"] for r in summary], float)
    lo = np.array([r["rank_ci_low"] for r in summary], float)
    hi = np.array([r["rank_ci_high"] for r in summary], float)
    ax.errorbar(med, y, xerr=[med - lo, hi - med], fmt="o", capsize=3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("median rank over problems (1 = best), 95 % bootstrap CI")
    ax.grid(True, axis="x", alpha=0.3)
    ax = fig.add_subplot(1, 3, 2)
    left = np.zeros(len(summary))
    for col, colour, name in (("sa_recovered", "#2a9d55", "recovered"),
                              ("sa_not_recovered", "#c0392b", "not recovered"),
                              ("sa_unknown", "#aaaaaa", "unknown")):
        vals = np.array([r[col] or 0 for r in summary], float)
        ax.barh(y, vals, left=left, color=colour, label=name)
        left += vals
    ax.set_yticks(y, [""] * len(summary))
    ax.invert_yaxis()
    ax.set_xlabel("problems (symbolic accuracy)")
    ax.legend(fontsize=7, loc="lower right")
    ax = fig.add_subplot(1, 3, 3)
    index = {lab: i for i, lab in enumerate(labels)}
    mat = np.full((len(labels), len(labels)), np.nan)
    for t in tests:
        i, j = index.get(t["a"]), index.get(t["b"])
        if i is not None and j is not None and t["p_value"] is not None:
            mat[i, j] = mat[j, i] = t["p_value"]
    im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis_r")
    for t in tests:
        i, j = index.get(t["a"]), index.get(t["b"])
        if i is None or j is None:
            continue
        ax.text(j, i, f"{t['a_better']}:{t['b_better']}", ha="center", va="center", fontsize=7, color="k")
        ax.text(i, j, f"{t['b_better']}:{t['a_better']}", ha="center", va="center", fontsize=7, color="k")
    ax.set_xticks(range(len(labels)), [str(i + 1) for i in range(len(labels))], fontsize=8)
    ax.set_yticks(range(len(labels)), [f"{i + 1}" for i in range(len(labels))], fontsize=8)
    ax.set_title("Wilcoxon p (colour); wins row:column", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("Strategies compared (numbers in the matrix: the order of the left panels)")
    fig.tight_layout()
    return _png(fig)


def collect(out: Path) -> list[R.RunResult]:
    from eqforge.sweep.execute import SweepDir

    sweep_dir = SweepDir(out)
    return [R.read_run(plan, sweep_dir.runs_dir / plan["run_id"]) for plan in sweep_dir.planned()]


def write_outputs(out: str | Path, *, judge: str | None = None) -> dict[str, Path]:
    """Write the tables, plots and HTML report of the sweep in ``out``; return their paths.
    ``judge``: a model spec to ask, besides the sympy check, whether each best law is the
    ground truth (``sweep.judge``; verdicts in ``judge.jsonl``, disagreements in ``judge.md``)."""
    out = Path(out)
    results = collect(out)
    verdicts = []
    if judge:
        from eqforge.sweep.judge import judge_runs, sweep_items

        verdicts = judge_runs(out, sweep_items(results), judge)
    rows = R.cell_rows(results)
    summary, notes = R.strategy_summary(rows)
    tests = R.comparisons(rows)
    paths = {"csv": out / "results.csv", "markdown": out / "results.md", "strategies": out / "strategies.csv",
             "comparisons": out / "comparisons.csv", "curves": out / "curves.png", "html": out / "report.html"}
    paths["csv"].write_text(R.to_csv(R.joined(rows, summary), R.CSV_COLUMNS), encoding="utf-8")
    paths["strategies"].write_text(R.to_csv(summary, R.SUMMARY_COLUMNS), encoding="utf-8")
    paths["comparisons"].write_text(R.to_csv(tests, S.COMPARISON_COLUMNS), encoding="utf-8")
    paths["markdown"].write_text(R.results_markdown(rows, summary, notes, tests), encoding="utf-8")
    images = []
    if summary:
        compared = comparison_plot(summary, tests)
        paths["comparison"] = out / "comparison.png"
        paths["comparison"].write_bytes(compared)
        images.append(("Strategies compared: rank, symbolic accuracy, paired tests", compared))
    curves = curves_plot(results)
    paths["curves"].write_bytes(curves)
    images.append(("Best-so-far curves per strategy", curves))
    per_problem = problem_curves_plot(results)
    if per_problem is not None:
        paths["problem_curves"] = out / "curves-problems.png"
        paths["problem_curves"].write_bytes(per_problem)
        images.append(("Best-so-far curves per problem", per_problem))
    if judge:
        paths["judge"] = out / "judge.md"
        notes = notes + [f"LLM judge ({judge}): {sum(v.judge is True for v in verdicts)} of {len(verdicts)} best laws "
                         f"judged the same as the ground truth; {sum(v.disagrees for v in verdicts)} disagree with the "
                         "sympy check (listed in judge.md)."]
        # the found law is program-derived: inert on a terminal (textsafe), escaped in HTML
        notes += [terminal_safe(f"judge vs sympy on {v.problem} ({v.run}): sympy {v.sympy}, judge "
                                f"{'same' if v.judge else 'different'} — truth {v.truth}; found {v.found}",
                                oneline=True)
                  for v in verdicts if v.disagrees]
    paths["html"].write_text(render_html(out, rows, summary, notes, images, results, tests), encoding="utf-8")
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
TEXT_COLUMNS = {"problem", "strategy", "llm", "beats_baselines", "a", "b", "sentence"}


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cls = ' class="base"' if R.is_baseline(str(r.get("llm", ""))) else ""
        cells = "".join(
            f'<td{" class=t" if c in TEXT_COLUMNS else ""}>{html.escape(R.fmt(r.get(c), c))}</td>'
            for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(out: Path, rows: list[dict[str, Any]], summary: list[dict[str, Any]], notes: list[str],
                images: list[tuple[str, bytes]], results: list[R.RunResult],
                tests: list[dict[str, Any]] | None = None) -> str:
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
        "finished: NMSE of each seed's best program (median and interquartile range); Acc<sub>0.1</sub> "
        "two ways, as the share of seeds whose best program has <b>all</b> points within 10 % (LLM-SRBench) "
        "or <b>at least 95 %</b> of them (SR-Scientist); symbolic accuracy <code>sa</code> with the seeds "
        "recovered / not recovered / unknown (unknown is not a failure); and totals over seeds. "
        "<i>Italic rows</i> are baselines (<code>terms:</code>, <code>sindy:</code>, <code>operon:</code>, "
        "<code>gplearn:</code>).</p>",
        _table(rows, R.COLUMNS),
        "<h2>Strategies</h2><p>Median rank over problems (the cells of each problem ranked by median "
        "OOD NMSE, 1 = best) with a bootstrap 95 % interval; SA over problems (recovered when at least half "
        "of the known seeds are); cost per solved (problem, seed) run.</p>",
        _table(summary, R.SUMMARY_COLUMNS),
    ]
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    if tests:
        parts += ["<h2>Paired comparisons</h2><p>Wilcoxon signed-rank test on log10 OOD NMSE over the "
                  "(problem, seed) runs both strategies finished.</p>",
                  _table(tests, S.COMPARISON_COLUMNS[:-1]),
                  "<ul class=sentences>" + "".join(f"<li>{html.escape(t['sentence'])}</li>" for t in tests) + "</ul>"]
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
