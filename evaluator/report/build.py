"""``eqforge report RUN_DIR``: one self-contained HTML (or markdown) report of a run.

The report is built from the run directory alone: ``config.json`` and ``samples.jsonl``
(plus the problem's data for the fit plots). Equations come from ``analysis.analyse_run``
(AST to sympy in a helper process with deadlines, never executing a candidate here); each
shown closed form is verified against the sandboxed ``Evaluator``'s predictions on the
training rows (an unverified one is marked), and predictions for the fit plots are
recomputed by the same sandbox. The HTML embeds its images (PNG, and SVG for
the rendered math) and MathML, so it opens offline; the PNG plots are also written next to
it in the run directory. The markdown variant links those PNGs and writes math as
``$$LaTeX$$`` for papers and notebooks."""

from __future__ import annotations

from pathlib import Path

from eqforge.errors import EqforgeError
from eqforge.evaluator.analysis import SymbolicWorker, analyse_run
from eqforge.evaluator.analysis.run import simplify_entry, verify_entry
from eqforge.evaluator.report import plots
from eqforge.evaluator.report.data import (
    PLOT_FILES,
    Report,
    load_run,
    predictions,
    reference_predictions,
)
from eqforge.evaluator.report.html import render_html
from eqforge.evaluator.report.markdown import render_markdown

_LAST: dict[tuple, Report] = {}  # the last report built, for writing it in another format


def _state(run_dir: Path) -> tuple:
    files = [run_dir / n for n in ("config.json", "samples.jsonl", "summary.json")]
    return tuple((f.stat().st_mtime_ns, f.stat().st_size) if f.exists() else None
                 for f in files)


def build(run_dir: Path, *, budget: float = 60.0, top: int = 10) -> Report:
    """Analyse a run and draw its figures (reused while the run directory is unchanged)."""
    key = (str(Path(run_dir).resolve()), _state(Path(run_dir)), budget, top)
    if key in _LAST:
        return _LAST[key]
    report = _build(run_dir, budget=budget, top=top)
    _LAST.clear()
    _LAST[key] = report
    return report


def _build(run_dir: Path, *, budget: float, top: int) -> Report:
    data = load_run(run_dir)
    truth = data.problem.spec.ground_truth if data.problem is not None else None
    with reference_predictions(data) as reference, SymbolicWorker() as worker:
        X = data.problem.train.X if reference is not None and data.problem is not None else None
        analysis = analyse_run(data.samples, data.input_names, ground_truth=truth,
                               budget=budget, show=top, reference=reference, X=X,
                               worker=worker)
        if reference is not None and X is not None:
            # the tables show each law's simplest variant, which may not be among the
            # entries analysed above: those are printed and verified too
            tables = Report(data, analysis, {}, {})
            for law in [*tables.top_laws(top), *tables.pareto_laws()]:
                if law.entry.verification is None:
                    simplify_entry(law.entry, data.input_names, worker)
                    verify_entry(law.entry, data.input_names, worker, reference, X)
    images: dict[str, bytes] = {}
    notes: dict[str, str] = {}
    converted = [e for e in analysis.entries if e.complexity is not None]
    best = analysis.best
    images["pareto"] = plots.pareto_plot(
        [(e.complexity or 0, e.loss or 0.0) for e in converted],
        [(e.complexity or 0, e.loss or 0.0, e.id) for e in analysis.pareto],
        (best.complexity, best.loss or 0.0) if best is not None and best.complexity is not None
        else None)
    images["progress"] = plots.progress_plot(data.samples)
    images["validity"] = plots.validity_plot(data.samples)
    if best is not None:
        pred, why = predictions(data, best)
        if why:
            notes["fit"] = why
        if pred:
            images["fit"] = plots.fit_plot(pred, data.output_name)
    else:
        notes["fit"] = "no valid program"
    return Report(data, analysis, images, notes)


def write_report(run_dir: Path, fmt: str = "html", out: str | None = None) -> Path:
    """Write the report; returns its path (default ``RUN_DIR/report.html`` or ``.md``)."""
    if fmt not in ("html", "markdown"):
        raise EqforgeError(f"unknown report format {fmt!r} (html or markdown)", exit_code=2)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EqforgeError(f"{run_dir}: no such run directory", exit_code=2)
    report = build(run_dir)
    for name, png in report.images.items():
        (run_dir / PLOT_FILES[name]).write_bytes(png)
    path = Path(out) if out else run_dir / ("report.html" if fmt == "html" else "report.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(report) if fmt == "html" else render_markdown(report, path.parent)
    path.write_text(text, encoding="utf-8")
    return path
