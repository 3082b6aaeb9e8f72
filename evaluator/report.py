"""``eqforge report RUN_DIR``: one self-contained HTML (or markdown) report of a run.

The report is built from the run directory alone: ``config.json`` and ``samples.jsonl``
(plus the problem's data for the fit plots). Equations come from ``analysis.analyse_run``
(AST to sympy, never executing a candidate here); predictions for the fit plots are
recomputed by the sandboxed ``Evaluator``. The HTML embeds its images (PNG, and SVG for
the rendered math) and MathML, so it opens offline; the PNG plots are also written next to
it in the run directory. The markdown variant links those PNGs and writes math as
``$$LaTeX$$`` for papers and notebooks.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sympy as sp

from eqforge.errors import EqforgeError
from eqforge.evaluator import plots
from eqforge.evaluator.analysis import Entry, RunAnalysis, analyse_run
from eqforge.evaluator.laws import Law, entry_laws
from eqforge.evaluator.pareto import pareto_front
from eqforge.evaluator.rundir import RunDir, RunStats, SampleRecord

log = logging.getLogger(__name__)

SPLIT_LABELS = {"train": "train", "test_id": "test ID", "test_ood": "test OOD"}
PLOT_FILES = {"pareto": "plot-pareto.png", "progress": "plot-progress.png",
              "validity": "plot-validity.png", "fit": "plot-fit.png"}


@dataclass
class RunData:
    directory: Path
    config: dict[str, Any]
    samples: list[dict[str, Any]]
    summary: dict[str, Any] | None
    problem: Any = None  # eqforge.problems.spec.Problem, or None when it cannot be loaded
    problem_error: str | None = None
    run_config: Any = None  # eqforge.config.Config
    notes: list[str] = field(default_factory=list)
    records: list[SampleRecord] = field(default_factory=list)

    @property
    def llm_samples(self) -> list[dict[str, Any]]:
        return [s for s in self.samples if s.get("source", "llm") == "llm"]

    @property
    def input_names(self) -> list[str]:
        if self.problem is not None:
            return list(self.problem.input_names)
        return list(self.config.get("problem", {}).get("inputs", []))

    @property
    def output_name(self) -> str:
        if self.problem is not None:
            return str(self.problem.output_name)
        return str(self.config.get("problem", {}).get("output", "y"))


def load_run(run_dir: Path) -> RunData:
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    config = run.read_config(exit_code=2)
    records = run.read_samples(strict=False)  # the report is read-only: a torn line is skipped
    data = RunData(run_dir, config, [r.to_json() for r in records], run.read_summary(), records=records)
    try:
        from eqforge.config import Config

        data.run_config = Config.model_validate(config.get("config", {}))
    except Exception as exc:  # noqa: BLE001 - an older or edited config still gets a report
        data.notes.append(f"configuration not understood ({type(exc).__name__})")
    run = config.get("run", {})
    try:
        from eqforge.problems.registry import load_problem

        seed = data.run_config.run.seed if data.run_config is not None else 0
        data.problem = load_problem(run.get("problem"), data=run.get("data"), seed=seed)
    except Exception as exc:  # noqa: BLE001 - data moved: report without the fit plots
        data.problem_error = f"{type(exc).__name__}: {exc}"
    return data


def predictions(data: RunData, entry: Entry) -> tuple[dict[str, tuple[Any, Any]], str | None]:
    """(y, ŷ) per test split for ``entry``, re-evaluated in the sandbox."""
    if data.problem is None:
        return {}, f"the problem could not be loaded ({data.problem_error})"
    if not entry.params:
        return {}, "the best program has no fitted parameters on record"
    from eqforge.config import EvaluatorConfig
    from eqforge.evaluator.evaluate import Evaluator

    base = data.run_config.evaluator if data.run_config is not None else EvaluatorConfig()
    try:
        with Evaluator(data.problem, base.model_copy(update={"workers": 1})) as ev:
            preds = ev.predict(entry.program, list(entry.params))
    except Exception as exc:  # noqa: BLE001 - the report goes on without the plot
        return {}, f"re-evaluation failed ({type(exc).__name__}: {exc})"
    if preds is None:
        return {}, "re-evaluating the best program failed"
    out = {}
    for split in ("test_id", "test_ood"):
        sp_ = data.problem.split(split)
        if sp_ is not None and split in preds:
            out[split] = (sp_.y, preds[split])
    if not out:
        return {}, "the problem has no test splits"
    return out, None


# -- formatting helpers ----------------------------------------------------------------------


def _g(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _lhs(output: str) -> str:
    return sp.latex(sp.Symbol(output))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _mathml(entry: Entry | None) -> str:
    cf = entry.closed_form if entry is not None else None
    if cf is None or not cf.ok:
        return ""
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML">{cf.mathml()}</math>'


@dataclass
class Facts:
    """Numbers about the run shown in the header of both formats."""

    rows: list[tuple[str, str]]


def _facts(data: RunData, analysis: RunAnalysis) -> Facts:
    llm = data.llm_samples
    counted = RunStats.from_records(data.records)
    valid, dup = counted.valid, counted.duplicates
    tokens_p, tokens_c, cost = counted.prompt_tokens, counted.completion_tokens, counted.cost
    elapsed = max((s.get("elapsed") or 0.0 for s in data.samples), default=0.0)
    if data.summary and data.summary.get("elapsed_seconds") is not None:
        elapsed = max(elapsed, float(data.summary["elapsed_seconds"]))
    run = data.config.get("run", {})
    configured = ((data.config.get("config") or {}).get("llm") or {}).get("backends") or []
    models = sorted({s.get("model") for s in llm if s.get("model")}) or [b.get("spec") for b in configured]
    started = min((s.get("time") for s in data.samples if s.get("time")), default=None)
    stats = analysis.stats()
    rows = [
        ("problem", str(run.get("problem", "?"))),
        ("data", str(run.get("data") or "built-in")),
        ("strategy", str((data.config.get("config", {}).get("sampler") or {}).get("strategy")
                         or "llmsr")),
        ("model", ", ".join(map(str, models)) or "n/a"),
        ("started", _dt.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S")
         if started else "n/a"),
        ("samples", f"{len(llm)}" + (f" of {data.run_config.run.samples}"
                                     if data.run_config is not None else "")),
        ("valid", f"{valid} ({_pct(valid, len(llm))}), of which {dup} duplicates"),
        ("distinct valid programs", f"{stats['programs']}; {stats['converted']} with a closed "
         "form" + (f", {stats['skipped']} not analysed (time budget)" if stats["skipped"]
                   else "")),
        ("stopped", str((data.summary or {}).get("stopped") or "still running or killed")),
        ("wall time", _duration(elapsed)),
        ("tokens", f"{tokens_p + tokens_c:,} ({tokens_p:,} prompt, {tokens_c:,} completion)"),
        ("cost", f"${cost:.4f}"),
    ]
    return Facts(rows)


# -- the report -------------------------------------------------------------------------------


@dataclass
class Report:
    data: RunData
    analysis: RunAnalysis
    images: dict[str, bytes]
    notes: dict[str, str]

    @property
    def best(self) -> Entry | None:
        return self.analysis.best

    def top_laws(self, k: int = 10) -> list[Law[Entry]]:
        """The ``k`` best distinct laws (programs stating one law grouped, simplest kept)."""
        return entry_laws(self.analysis.entries, self.data.input_names)[:k]

    def pareto_laws(self) -> list[Law[Entry]]:
        """The Pareto front over distinct laws (one point per law)."""
        laws = entry_laws(self.analysis.entries, self.data.input_names)
        return pareto_front(laws, lambda w: w.entry.complexity, lambda w: w.entry.loss)


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
    analysis = analyse_run(data.samples, data.input_names, ground_truth=truth, budget=budget,
                           show=top)
    images: dict[str, bytes] = {}
    notes: dict[str, str] = {}
    converted = [e for e in analysis.entries if e.complexity is not None]
    best = analysis.best
    images["pareto"] = plots.pareto_plot(
        [(e.complexity or 0, e.loss or 0.0) for e in converted],
        [(e.complexity or 0, e.loss or 0.0, e.id) for e in analysis.pareto],
        (best.complexity, best.loss) if best is not None and best.complexity is not None
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


# -- HTML -----------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;
 margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1240px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:1.6em;margin:0 0 4px} h2{font-size:1.2em;margin:32px 0 10px;
 border-bottom:2px solid #dde2ea;padding-bottom:4px}
.sub{color:#5a6372;margin:0 0 16px}
.card{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:14px 18px;
 margin:10px 0}
table{border-collapse:collapse;font-size:.92em;width:100%}
th,td{border-bottom:1px solid #e7eaf0;padding:5px 8px;text-align:left;vertical-align:middle}
th{background:#f0f2f6;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.facts td:first-child{color:#5a6372;width:210px}
.eq{overflow-x:auto;padding:8px 0}
.eq img{max-width:100%;height:auto}
pre{background:#f3f4f7;border:1px solid #e1e4ea;border-radius:6px;padding:8px 10px;
 overflow-x:auto;font-size:.85em;white-space:pre-wrap;word-break:break-word}
.badge{display:inline-block;padding:3px 10px;border-radius:12px;font-weight:600;
 font-size:.9em}
.ok{background:#e3f4e5;color:#1b5e20;border:1px solid #a5d6a7}
.no{background:#fdecea;color:#8e1c14;border:1px solid #f5b7b1}
.na{background:#eef0f3;color:#4a5260;border:1px solid #d5d9e0}
.plot{max-width:100%;height:auto;display:block;margin:6px auto}
.tbl{overflow-x:auto;max-width:100%}
.tbl table{font-size:.88em}
.muted{color:#6b7482;font-size:.9em}
math{font-size:1.05em}
details summary{cursor:pointer;color:#33415c}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<img class="plot" alt="{_e(alt)}" src="data:image/png;base64,{_b64(png)}">'


def _metrics_table_html(entry: Entry) -> str:
    head = ("<tr><th>split</th><th class='num'>MSE</th><th class='num'>NMSE</th>"
            "<th class='num'>R²</th><th class='num'>Acc<sub>0.1</sub></th></tr>")
    rows = []
    for split, label in SPLIT_LABELS.items():
        m = entry.metrics.get(split)
        if not m:
            continue
        acc = next((v for k, v in m.items() if k.startswith("acc_")), None)
        rows.append(f"<tr><td>{label}</td><td class='num'>{_g(m.get('mse'))}</td>"
                    f"<td class='num'>{_g(m.get('nmse'))}</td><td class='num'>"
                    f"{_g(m.get('r2'), 6)}</td><td class='num'>"
                    f"{'n/a' if acc is None else f'{100 * acc:.1f}%'}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _recovery_html(report: Report) -> str:
    best = report.best
    truth = report.analysis.ground_truth
    if not truth:
        return ("<p><span class='badge na'>no ground truth</span> "
                "<span class='muted'>the problem declares no ground-truth expression, so "
                "symbolic recovery is not checked.</span></p>")
    rec = best.recovery if best is not None else None
    truth_tex = _truth_latex(truth, report.data.input_names)
    if rec is None:
        badge, detail = "<span class='badge na'>not checked</span>", "the check did not run"
    elif rec.recovered:
        badge, detail = "<span class='badge ok'>recovered</span>", rec.detail
    else:
        badge, detail = "<span class='badge no'>not recovered</span>", rec.detail
    svg = plots.math_svg(f"{_lhs(report.data.output_name)} = {truth_tex}", size=13) \
        if truth_tex else None
    shown = (f"<img alt='{_e(truth)}' src='data:image/svg+xml;base64,{_b64(svg)}'>"
             if svg else f"<code>{_e(truth)}</code>")
    return (f"<p>{badge} <span class='muted'>{_e(detail)}</span></p>"
            f"<p class='muted'>Ground truth: </p><div class='eq'>{shown}</div>"
            f"<p class='muted'>LaTeX: <code>{_e(truth_tex or truth)}</code></p>")


def _truth_latex(truth: str, names: list[str]) -> str | None:
    from eqforge.evaluator.symbolic import NotConvertible, parse_truth

    try:
        return sp.latex(parse_truth(truth, names, exact=False), full_prec=False)
    except (NotConvertible, Exception):  # noqa: BLE001
        return None


def _best_html(report: Report) -> str:
    best = report.best
    if best is None:
        return "<div class='card'><p>No valid program in this run.</p></div>"
    cf = best.closed_form
    parts = [f"<p class='muted'>sample <b>{_e(best.id)}</b> · score (−MSE on train) "
             f"{_g(best.score, 6)}"]
    if cf is not None and cf.ok:
        parts[0] += f" · complexity {cf.complexity}</p>"
        latex = f"{_lhs(report.data.output_name)} = {cf.latex}"
        svg = plots.math_svg(latex, size=18)
        if svg is not None:
            parts.append(f"<div class='eq' id='best-equation'><img alt='{_e(cf.text)}' "
                         f"src='data:image/svg+xml;base64,{_b64(svg)}'></div>")
        else:
            parts.append(f"<div class='eq' id='best-equation'>"
                         f"<math display='block'>{cf.mathml()}</math></div>")
        consts = ", ".join(f"{k} = {v:.10g}" for k, v in cf.constants.items()) or "none"
        skel_svg = plots.math_svg(f"{_lhs(report.data.output_name)} = {cf.skeleton_latex}",
                                  size=12)
        parts.append(
            f"<p class='muted'>LaTeX (constants to 6 significant digits):</p>"
            f"<pre id='best-latex'>{_e(latex)}</pre>"
            f"<p class='muted'>Plain text:</p><pre id='best-text'>"
            f"{_e(report.data.output_name)} = {_e(cf.text)}</pre>"
            "<details open><summary>Skeleton with constants c<sub>i</sub> = params[i]</summary>"
            + (f"<div class='eq'><img alt='{_e(cf.skeleton_text)}' "
               f"src='data:image/svg+xml;base64,{_b64(skel_svg)}'></div>" if skel_svg else "")
            + f"<pre>{_e(cf.skeleton_text)}</pre><pre>{_e(cf.skeleton_latex)}</pre>"
            f"<p class='muted'>fitted constants: {_e(consts)}</p>"
            + ("<p class='muted'>shown after sympy simplification</p>" if cf.simplified
               else "") + "</details>")
    else:
        parts[0] += "</p>"
        reason = (f"{cf.reason}: {cf.detail}" if cf is not None else "not analysed")
        parts.append(f"<p><span class='badge na'>no closed form</span> "
                     f"<span class='muted'>{_e(reason)}</span></p>")
    parts.append("<details><summary>Program</summary>"
                 f"<pre>{_e(best.program.rstrip())}</pre>"
                 f"<p class='muted'>params = {_e(json.dumps(best.params))}</p></details>")
    parts.append("<h3>Symbolic recovery</h3>" + _recovery_html(report))
    parts.append("<h3>Metrics</h3>" + _metrics_table_html(best))
    return "<div class='card'>" + "".join(parts) + "</div>"


def _equations_table_html(laws: list[Law[Entry]], *, recovery: bool) -> str:
    head = ("<tr><th>#</th><th>sample</th><th>equation</th><th class='num'>complexity</th>"
            "<th class='num'>NMSE train</th><th class='num'>NMSE ID</th>"
            "<th class='num'>NMSE OOD</th><th class='num' title='programs stating this law'>"
            "variants</th>" + ("<th>recovered</th>" if recovery else "") + "</tr>")
    rows = []
    for i, law in enumerate(laws, 1):
        e = law.entry
        cf = e.closed_form
        if cf is not None and cf.ok and cf.display is not None \
                and not cf.display.has(sp.Piecewise):
            eq = f"<span title='{_e(cf.text)}'>{_mathml(e)}</span>"
        elif cf is not None and cf.ok:  # no MathML for piecewise functions
            eq = f"<code>{_e(cf.text)}</code>"
        else:
            why = cf.reason if cf is not None else "not analysed"
            eq = f"<span class='muted'>no closed form ({_e(why)})</span>"
        rec = ""
        if recovery:
            r = e.recovery
            rec = "<td>" + ("" if r is None else ("yes" if r.recovered else "no")) + "</td>"
        rows.append(
            f"<tr><td>{i}</td><td>{_e(e.id)}</td><td>{eq}</td>"
            f"<td class='num'>{e.complexity if e.complexity is not None else '–'}</td>"
            f"<td class='num'>{_g(e.nmse.get('train'), 3)}</td>"
            f"<td class='num'>{_g(e.nmse.get('test_id'), 3)}</td>"
            f"<td class='num'>{_g(e.nmse.get('test_ood'), 3)}</td>"
            f"<td class='num'>{law.count}</td>{rec}</tr>")
    return f"<div class='tbl'><table>{head}{''.join(rows)}</table></div>"


def _failures_html(report: Report) -> str:
    llm = report.data.llm_samples
    n = len(llm)
    counts: dict[str, int] = {}
    for s in llm:
        if s.get("duplicate_of"):
            key = "duplicate (valid)" if s.get("ok") else "duplicate (failed)"
        elif s.get("ok"):
            key = "valid"
        else:
            key = str(s.get("error") or "failed")
        counts[key] = counts.get(key, 0) + 1
    rows = "".join(f"<tr><td>{_e(k)}</td><td class='num'>{v}</td>"
                   f"<td class='num'>{_pct(v, n)}</td></tr>"
                   for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    nc = report.analysis.not_convertible
    conv = "".join(f"<tr><td>{_e(k)}</td><td class='num'>{v}</td></tr>"
                   for k, v in nc.most_common())
    out = (f"<table><tr><th>outcome</th><th class='num'>samples</th><th class='num'>share"
           f"</th></tr>{rows}</table>")
    if conv:
        out += ("<p class='muted'>Valid programs without a closed form, by reason:</p>"
                f"<table><tr><th>reason</th><th class='num'>programs</th></tr>{conv}</table>")
    return out


def _agent_turns(report: Report) -> tuple[str | None, list[dict[str, Any]]]:
    """The agent episode behind the best program, when the run used ``--strategy agent``."""
    from eqforge.evaluator.transcript import episode_of, episode_turns

    best = report.best
    episode = episode_of(report.data.samples, best.id) if best is not None else None
    if episode is None:
        return None, []
    return episode, episode_turns(RunDir(report.data.directory).read_turns(strict=False), episode)


def _agent_html(report: Report) -> list[str]:
    from eqforge.evaluator.transcript import transcript_html

    episode, turns = _agent_turns(report)
    if not turns:
        return []
    return [f"<h2 id='agent'>How the best equation was found (agent episode {_e(episode)})</h2>",
            transcript_html(turns)]


def render_html(report: Report) -> str:
    data, analysis = report.data, report.analysis
    problem = data.problem
    title = f"eqforge report — {data.config.get('run', {}).get('problem', '?')}"
    desc = problem.spec.description if problem is not None else ""
    facts = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>"
                    for k, v in _facts(data, analysis).rows)
    notes = "".join(f"<p class='muted'>note: {_e(n)}</p>" for n in data.notes)
    if data.problem_error:
        notes += f"<p class='muted'>note: problem not loaded: {_e(data.problem_error)}</p>"
    has_truth = bool(analysis.ground_truth)
    fit = (_img(report.images.get("fit"), "predicted vs true and residuals")
           if "fit" in report.images else
           f"<p class='muted'>{_e(report.notes.get('fit', 'not available'))}</p>")
    cfg = {k: data.config.get(k) for k in ("run", "config", "problem", "backend", "versions",
                                           "argv") if k in data.config}
    sections = [
        f"<h1>{_e(title)}</h1><p class='sub'>{_e(desc)}</p>",
        f"<div class='card'><table class='facts'>{facts}</table>{notes}</div>",
        "<h2 id='best'>Best equation</h2>", _best_html(report),
        "<h2 id='top'>Top equations</h2>",
        "<div class='card'><p class='muted'>Distinct laws by training score (programs whose "
        "skeletons agree once their constants are collapsed are one law: the simplest is "
        "shown, <i>variants</i> counts them); NMSE = MSE / variance of the target.</p>"
        + _equations_table_html(report.top_laws(10), recovery=has_truth) + "</div>",
        "<h2 id='pareto'>Pareto front: accuracy vs complexity</h2>",
        "<div class='card'>" + _img(report.images.get("pareto"), "Pareto front")
        + "<p class='muted'>Complexity counts the nodes of the expression tree as PySR does "
          "(variables, constants, operators and functions count 1 each).</p>"
        + _equations_table_html(report.pareto_laws(), recovery=has_truth) + "</div>",
        "<h2 id='progress'>Search progress</h2>",
        "<div class='card'>" + _img(report.images.get("progress"), "best score so far")
        + "</div>",
        "<h2 id='validity'>Valid programs and failures</h2>",
        "<div class='card'>" + _img(report.images.get("validity"), "validity over the run")
        + _failures_html(report) + "</div>",
        "<h2 id='fit'>Fit of the best equation on held-out data</h2>",
        "<div class='card'><p class='muted'>Predictions recomputed in the sandbox with the "
        "fitted constants; left: in-domain test data, right: out-of-domain.</p>"
        + fit + "</div>",
        *_agent_html(report),
        "<h2 id='config'>Configuration</h2>",
        f"<div class='card'><pre>{_e(json.dumps(cfg, indent=2))}</pre></div>",
        f"<p class='muted'>Generated by eqforge on "
        f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M:%S')} from {_e(data.directory)}; "
        f"analysis took {analysis.seconds:.1f} s.</p>",
    ]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(title)}</title><link rel='icon' href='data:,'>"
            f"<style>{CSS}</style></head><body><main>"
            + "\n".join(sections) + "</main></body></html>\n")


# -- markdown ------------------------------------------------------------------------------


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_equations(laws: list[Law[Entry]], recovery: bool) -> list[str]:
    head = "| # | sample | equation | complexity | train NMSE | ID NMSE | OOD NMSE | variants |"
    sep = "|---|---|---|---:|---:|---:|---:|---:|"
    if recovery:
        head += " recovered |"
        sep += "---|"
    lines = [head, sep]
    for i, law in enumerate(laws, 1):
        e = law.entry
        cf = e.closed_form
        eq = (f"${_md_cell(cf.latex)}$" if cf is not None and cf.ok
              else f"no closed form ({cf.reason if cf else 'not analysed'})")
        row = (f"| {i} | {e.id} | {eq} | {e.complexity if e.complexity is not None else '–'} "
               f"| {_g(e.nmse.get('train'), 3)} | {_g(e.nmse.get('test_id'), 3)} "
               f"| {_g(e.nmse.get('test_ood'), 3)} | {law.count} |")
        if recovery:
            r = e.recovery
            row += f" {'' if r is None else ('yes' if r.recovered else 'no')} |"
        lines.append(row)
    return lines


def _agent_markdown(report: Report) -> list[str]:
    from eqforge.evaluator.transcript import transcript_markdown

    episode, turns = _agent_turns(report)
    if not turns:
        return []
    return [f"## How the best equation was found (agent episode {episode})", "",
            *transcript_markdown(turns), ""]


def render_markdown(report: Report, where: Path) -> str:
    data, analysis = report.data, report.analysis
    best = report.best
    run_dir = data.directory

    def img(name: str, alt: str) -> str:
        if name not in report.images:
            return f"_{report.notes.get(name, 'not available')}_"
        target = os.path.relpath(run_dir / PLOT_FILES[name], where)
        return f"![{alt}]({Path(target).as_posix()})"

    out = [f"# eqforge report — {data.config.get('run', {}).get('problem', '?')}", ""]
    if data.problem is not None:
        out += [data.problem.spec.description, ""]
    out += ["| | |", "|---|---|"]
    out += [f"| {k} | {_md_cell(v)} |" for k, v in _facts(data, analysis).rows]
    out += ["", "## Best equation", ""]
    if best is None:
        out.append("No valid program in this run.")
    else:
        cf = best.closed_form
        if cf is not None and cf.ok:
            out += [f"Sample `{best.id}`, score (−MSE on train) {_g(best.score, 6)}, "
                    f"complexity {cf.complexity}.", "",
                    f"$$ {_lhs(data.output_name)} = {cf.latex} $$", "",
                    "```", f"{data.output_name} = {cf.text}", "```", "",
                    f"Skeleton: $ {_lhs(data.output_name)} = {cf.skeleton_latex} $ with "
                    + (", ".join(f"{k} = {v:.10g}" for k, v in cf.constants.items())
                       or "no constants") + "."]
        else:
            out.append(f"No closed form ({cf.reason if cf else 'not analysed'}: "
                       f"{cf.detail if cf else ''}).")
        out += ["", "```python", best.program.rstrip(), "```", ""]
        truth = analysis.ground_truth
        if truth:
            rec = best.recovery
            verdict = ("recovered" if rec is not None and rec.recovered else
                       "not recovered" if rec is not None else "not checked")
            out += [f"**Symbolic recovery: {verdict}** — "
                    f"{rec.detail if rec is not None else ''}. Ground truth: `{truth}`.", ""]
        else:
            out += ["Symbolic recovery: no ground truth declared.", ""]
        out += ["| split | MSE | NMSE | R² | Acc0.1 |", "|---|---:|---:|---:|---:|"]
        for split, label in SPLIT_LABELS.items():
            m = best.metrics.get(split)
            if m:
                acc = next((v for k, v in m.items() if k.startswith("acc_")), None)
                out.append(f"| {label} | {_g(m.get('mse'))} | {_g(m.get('nmse'))} | "
                           f"{_g(m.get('r2'), 6)} | "
                           f"{'n/a' if acc is None else f'{100 * acc:.1f}%'} |")
    has_truth = bool(analysis.ground_truth)
    out += ["", "## Top equations", "", *_md_equations(report.top_laws(10), has_truth), "",
            "## Pareto front", "", img("pareto", "Pareto front"), "",
            *_md_equations(report.pareto_laws(), has_truth), "",
            "## Search progress", "", img("progress", "best score so far"), "",
            "## Valid programs and failures", "", img("validity", "validity over the run"), "",
            "## Fit of the best equation on held-out data", "",
            img("fit", "predicted vs true and residuals"), "",
            *_agent_markdown(report),
            "## Configuration", "", "```json",
            json.dumps({k: data.config.get(k) for k in ("run", "config", "backend")
                        if k in data.config}, indent=2), "```", ""]
    return "\n".join(out)
