"""The markdown report: PNGs linked beside it, math as ``$$LaTeX$$`` for papers and notebooks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from eqforge.evaluator.analysis import Entry
from eqforge.evaluator.analysis.laws import Law
from eqforge.evaluator.report.data import PLOT_FILES, SPLIT_LABELS, Report, _agent_turns
from eqforge.evaluator.report.escaping import md_cell, md_code, md_fence, md_math, md_text
from eqforge.evaluator.report.facts import _facts, _g, _lhs
from eqforge.textsafe import encodable

# -- markdown ------------------------------------------------------------------------------
# Text from the run (programs, model messages, reasons quoting them) goes through
# evaluator/report/escaping.py: code in fences it cannot close, raw HTML escaped elsewhere.


#: how a recovery verdict is shown (None: unknown)
_RECOVERED: dict[bool | None, str] = {True: "yes", False: "no", None: "unknown"}


def _md_cell(text: Any) -> str:
    return md_cell(text)


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
        eq = (f"${md_math(cf.latex)}$" if cf is not None and cf.ok
              else f"no closed form ({md_cell(cf.reason if cf else 'not analysed')})")
        row = (f"| {i} | {md_cell(e.id)} | {eq} | {e.complexity if e.complexity is not None else '–'} "
               f"| {_g(e.nmse.get('train'), 3)} | {_g(e.nmse.get('test_id'), 3)} "
               f"| {_g(e.nmse.get('test_ood'), 3)} | {law.count} |")
        if recovery:
            r = e.recovery
            row += f" {'' if r is None else _RECOVERED[r.recovered]} |"
        lines.append(row)
    return lines


def _agent_markdown(report: Report) -> list[str]:
    from eqforge.evaluator.report.transcript import transcript_markdown

    episode, turns = _agent_turns(report)
    if not turns:
        return []
    return [f"## How the best equation was found (agent episode {md_text(episode)})", "",
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

    out = [f"# eqforge report — {md_text(data.config.get('run', {}).get('problem', '?'))}", ""]
    if data.problem is not None:
        out += [md_text(data.problem.spec.description), ""]
    out += ["| | |", "|---|---|"]
    out += [f"| {k} | {_md_cell(v)} |" for k, v in _facts(data, analysis).rows]
    out += ["", "## Best equation", ""]
    if best is None:
        out.append("No valid program in this run.")
    else:
        cf = best.closed_form
        if cf is not None and cf.ok:
            out += [f"Sample {md_code(best.id)}, score (−MSE on train) {_g(best.score, 6)}, "
                    f"complexity {cf.complexity}.", "",
                    f"$$ {_lhs(data.output_name)} = {md_math(cf.latex, cell=False)} $$", "",
                    *md_fence(f"{data.output_name} = {cf.text}"), "",
                    f"Skeleton: $ {_lhs(data.output_name)} = {md_math(cf.skeleton_latex, cell=False)} $ with "
                    + (", ".join(f"{k} = {v:.10g}" for k, v in cf.constants.items())
                       or "no constants") + "."]
        else:
            out.append(md_text(f"No closed form ({cf.reason if cf else 'not analysed'}: "
                               f"{cf.detail if cf else ''})."))
        out += ["", *md_fence(best.program.rstrip(), "python"), ""]
        truth = analysis.ground_truth
        if truth:
            rec = best.recovery
            verdict = rec.status if rec is not None else "not checked"
            out += [f"**Symbolic recovery: {verdict}** — "
                    f"{md_text(rec.detail if rec is not None else '')}. Ground truth: {md_code(truth)}.", ""]
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
            "## Configuration", "",
            *md_fence(json.dumps({k: data.config.get(k) for k in ("run", "config", "backend")
                                  if k in data.config}, indent=2), "json"), ""]
    return encodable("\n".join(out))
