"""End to end: a replay run of oscillator1, its enriched summary and its report (issue #6).

The run replays model answers that include the true law, so the report must show it in
LaTeX with constants within 1e-6 of the truth and mark it "recovered".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eqforge.cli import main

TRUTH = {"sin(x)": 0.8, "x*cos(x)": -1.0, "x**3": -0.2, "v**3": -0.5, "v*x": -0.5}

RESPONSES = [
    # the true law, with intermediate variables
    "```python\ndef equation(x, v, params):\n    restoring = params[0] * np.sin(x) "
    "+ params[1] * x * np.cos(x)\n    cubic = params[2] * x**3 + params[3] * v**3\n"
    "    return restoring + cubic + params[4] * x * v\n```",
    "```python\ndef equation(x, v, params):\n    return params[0]*x + params[1]*v + "
    "params[2]*x**3\n```",
    "```python\ndef equation(x, v, params):\n    damping = params[1]*v\n"
    "    return params[0]*np.sin(x) + damping + params[2]*v**3\n```",
    # valid but no closed form: a loop over the rows
    "```python\ndef equation(x, v, params):\n    out = np.zeros_like(x)\n"
    "    for i in range(len(x)):\n        out[i] = params[0]*x[i]\n    return out\n```",
    # fails: unknown name
    "```python\ndef equation(x, v, params):\n    return params[0]*x + undefined_name\n```",
    # a helper function
    "```python\ndef cube(z):\n    return z**3\n\ndef equation(x, v, params):\n"
    "    return params[0]*np.sin(x) + params[1]*cube(x)\n```",
    "```python\ndef equation(x, v, params):\n    return np.where(x > 0, params[0]*x, "
    "params[1]*x) + params[2]*v\n```",
    "```python\ndef equation(x, v, params):\n    return params[0]\n```",
]

_CACHE: dict[str, Path] = {}


def build_report_run(root: Path, data: Path) -> Path:
    """Run oscillator1 on replayed answers, then write both reports (once per session)."""
    if "run" in _CACHE:
        return _CACHE["run"]
    replay = root / "replay.jsonl"
    replay.write_text("".join(json.dumps({"response": r}) + "\n" for r in RESPONSES))
    out = root / "run"
    rc = main(["run", "oscillator1", "--data", str(data / "oscillator1"), "--llm",
               f"replay:{replay}", "--samples", "16", "--samples-per-prompt", "2",
               "--workers", "2", "--quiet", "--out", str(out)])
    assert rc == 0
    assert main(["report", str(out)]) == 0
    assert main(["report", str(out), "--format", "markdown"]) == 0
    _CACHE["run"] = out
    return out


@pytest.fixture(scope="session")
def report_run(tmp_path_factory: pytest.TempPathFactory, llmsr_data: Path) -> Path:
    return build_report_run(tmp_path_factory.mktemp("report"), llmsr_data)


LATEX_TERMS = {"\\sin{\\left(x\\right)}": "sin(x)", "x\\cos{\\left(x\\right)}": "x*cos(x)",
               "x^{3}": "x**3", "v^{3}": "v**3", "vx": "v*x", "xv": "v*x"}


def _constants_in(latex: str) -> dict[str, float]:
    """Coefficient of each term of the oscillator law as sympy writes it in LaTeX."""
    parts = re.split(r"(?:^|\s)([+-])\s", " " + latex.strip())
    if not parts[0].strip():
        parts = parts[1:]
    else:
        parts = ["+", *parts]
    out = {}
    for sign, body in zip(parts[::2], parts[1::2], strict=True):
        m = re.match(r"\s*(\d+(?:\.\d*)?(?:e[+-]?\d+)?)?\s*(.*)$", body.strip())
        coeff = float(m.group(1)) if m.group(1) else 1.0
        rest = m.group(2).replace(" ", "")
        out[LATEX_TERMS.get(rest, rest)] = -coeff if sign == "-" else coeff
    return out


def test_summary_has_closed_form_pareto_and_recovery(report_run: Path) -> None:
    summary = json.loads((report_run / "summary.json").read_text())
    best = summary["best"]
    cf = best["closed_form"]
    assert cf["convertible"] is True
    assert cf["skeleton"] == "c0*sin(x) + c1*x*cos(x) + c2*x**3 + c3*v**3 + c4*v*x"
    assert best["complexity"] == 29
    assert best["recovery"]["recovered"] is True
    assert summary["recovered"] is True
    assert set(best["metrics"]) == {"train", "test_id", "test_ood"}
    assert set(best["metrics"]["test_ood"]) == {"mse", "nmse", "r2", "acc_0.1"}
    front = summary["pareto"]
    assert front[-1]["id"] == best["id"]
    comps = [p["complexity"] for p in front]
    losses = [p["nmse"]["train"] for p in front]
    assert comps == sorted(comps) and losses == sorted(losses, reverse=True)
    assert summary["closed_forms"]["not_convertible"].get("loop") == 1


def test_html_report_shows_the_law_recovered(report_run: Path) -> None:
    html = (report_run / "report.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org/1998/Math/MathML", "")
    assert "https://" not in html and "<script" not in html  # self-contained, no network
    latex = re.search(r"<pre id='best-latex'>(.*?)</pre>", html, re.S).group(1)
    lhs, rhs = latex.split("=", 1)
    assert lhs.strip() == "a"
    found = _constants_in(rhs)
    assert set(found) == set(TRUTH)
    for term, value in TRUTH.items():
        assert abs(found[term] - value) <= 1e-6, (term, found[term])
    assert "<span class='badge ok'>recovered</span>" in html
    for section in ("id='best'", "id='top'", "id='pareto'", "id='progress'", "id='validity'",
                    "id='fit'", "id='config'"):
        assert section in html
    assert html.count("data:image/png;base64,") == 4  # pareto, progress, validity, fit
    assert "data:image/svg+xml;base64," in html  # the rendered best equation
    assert "<math" in html  # MathML in the tables
    assert "no closed form (loop)" in html
    for png in ("plot-pareto.png", "plot-progress.png", "plot-validity.png", "plot-fit.png"):
        assert (report_run / png).read_bytes().startswith(b"\x89PNG")


def test_markdown_report(report_run: Path) -> None:
    md = (report_run / "report.md").read_text()
    assert "**Symbolic recovery: recovered**" in md
    assert re.search(r"\$\$ a = .*0\.8 \\sin", md)
    assert "![Pareto front](plot-pareto.png)" in md
    assert "| # | sample | equation | complexity | train NMSE | ID NMSE | OOD NMSE |" in md


def test_report_errors_are_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
