"""The self-contained HTML report: embedded PNG and SVG images, MathML, one file that opens offline."""

from __future__ import annotations

import datetime as _dt
import html
import json
from typing import Any

import sympy as sp

from eqforge.evaluator.analysis import Entry
from eqforge.evaluator.analysis.laws import Law
from eqforge.evaluator.report import plots
from eqforge.evaluator.report.data import SPLIT_LABELS, Report, _agent_turns
from eqforge.evaluator.report.facts import _b64, _facts, _g, _lhs, _mathml, _pct
from eqforge.textsafe import encodable

# -- HTML -----------------------------------------------------------------------------------

#: how a recovery verdict is shown (None: unknown)
_RECOVERED: dict[bool | None, str] = {True: "yes", False: "no", None: "unknown"}


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
    """Text into HTML, attribute-safe; lone surrogates as escapes (the file must encode)."""
    return encodable(html.escape(str(text), quote=True))


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
    elif rec.recovered is None:
        badge, detail = "<span class='badge na'>unknown</span>", rec.detail
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
    from eqforge.evaluator.analysis import NotConvertible, parse_truth

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
            rec = "<td>" + ("" if r is None else _RECOVERED[r.recovered]) + "</td>"
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


def _agent_html(report: Report) -> list[str]:
    from eqforge.evaluator.report.transcript import transcript_html

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
    return encodable("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(title)}</title><link rel='icon' href='data:,'>"
            f"<style>{CSS}</style></head><body><main>"
            + "\n".join(sections) + "</main></body></html>\n")
