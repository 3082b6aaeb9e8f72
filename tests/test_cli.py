"""The command line: one-line errors with exit code 2 for bad input, evaluate's output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from toy_problem import TOML

from eqforge.cli import main


def _problem(tmp_path: Path, csv: str, toml: str = TOML) -> Path:
    d = tmp_path / "toy"
    d.mkdir()
    (d / "problem.toml").write_text(toml)
    (d / "train.csv").write_text(csv)
    return d


def _good_rows(n: int = 20) -> str:
    return "".join(f"{i},{i * 0.5},{2 * i + 1}\n" for i in range(n))


@pytest.mark.parametrize("csv,toml,needle", [
    ("x,y\n" + "1,2\n" * 20, TOML, "missing column 'z'"),
    ("x,z,y,w\n" + "1,2,3,4\n" * 20, TOML, "unexpected column 'w'"),
    ("x,z,y\n" + _good_rows(5) + "1,abc,3\n" + _good_rows(14), TOML, "column 'z' row 7"),
    ("x,z,y\n" + _good_rows(3) + "1,nan,3\n" + _good_rows(16), TOML, "NaN/inf"),
    ("x,z,y\n" + _good_rows(3) + "1,2,inf\n" + _good_rows(16), TOML, "column 'y' row 5"),
    ("x,z,y\n" + _good_rows(3), TOML, "only 3 rows"),
    ("x,z,y\n" + _good_rows(20), TOML.replace('name = "z"', 'name = "2z"'), "not a valid Python identifier"),
    ("x,z,y\n" + "1,2,3\n" * 20, TOML, "constant"),
])
def test_bad_data_is_one_line_exit_2(tmp_path, capsys, csv, toml, needle):
    d = _problem(tmp_path, csv, toml)
    code = main(["run", str(d), "--llm", "replay:/nonexistent.jsonl", "--samples", "1",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert needle in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "samples.jsonl").exists()


def test_unknown_problem_and_missing_data(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("EQFORGE_DATA", raising=False)
    assert main(["run", "no-such-problem", "--llm", "replay:x"]) == 2
    assert "unknown problem" in capsys.readouterr().err


def test_missing_replay_file_is_one_line(tmp_path, capsys, llmsr_data):
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"),
                 "--llm", f"replay:{tmp_path / 'none.jsonl'}", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "replay file not found" in err and len(err.splitlines()) == 1


def test_existing_run_dir_is_not_overwritten(tmp_path, capsys, llmsr_data):
    out = tmp_path / "r"
    out.mkdir()
    (out / "samples.jsonl").write_text("{}\n")
    code = main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"),
                 "--llm", "replay:x.jsonl", "--out", str(out)])
    assert code == 1 and "--resume" in capsys.readouterr().err


def test_evaluate_writes_one_line_per_program(tmp_path, llmsr_data):
    progs = tmp_path / "p.jsonl"
    items = [
        {"id": "truth", "code": "def equation(x, v, params):\n    return params[0]*np.sin(x) + "
         "params[1]*x*np.cos(x) + params[2]*x**3 + params[3]*v**3 + params[4]*x*v\n"},
        {"id": "linear", "code": "def equation(x, v, params):\n    return params[0]*x + params[1]*v\n"},
        {"id": "bad", "code": "def equation(x, v, params):\n    return 1/0\n"},
        {"id": "evil", "code": "import os\ndef equation(x, v, params):\n    return x\n"},
    ]
    progs.write_text("".join(json.dumps(i) + "\n" for i in items))
    out = tmp_path / "scored.jsonl"
    assert main(["evaluate", "oscillator1", "--data", str(llmsr_data / "oscillator1"),
                 "--programs", str(progs), "--out", str(out), "--timeout", "10"]) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert list(rows) == ["truth", "linear", "bad", "evil"]
    for r in rows.values():
        assert {"id", "ok", "error", "score", "params", "nmse", "seconds"} <= set(r)
    assert rows["truth"]["ok"] and rows["truth"]["nmse"]["test_ood"] < 1e-6
    assert rows["linear"]["ok"] and rows["linear"]["score"] < rows["truth"]["score"]
    assert rows["bad"]["error"] == "exception:ZeroDivisionError"
    assert rows["evil"]["error"] == "policy:import"


def test_evaluate_llmsr_fitter_flag(tmp_path, llmsr_data):
    progs = tmp_path / "p.jsonl"
    progs.write_text(json.dumps({"id": "a", "code": "def equation(x, v, params):\n"
                                 "    return params[0]*x + params[1]*v\n"}) + "\n")
    out = tmp_path / "s.jsonl"
    assert main(["evaluate", "oscillator1", "--data", str(llmsr_data / "oscillator1"),
                 "--programs", str(progs), "--out", str(out), "--fitter", "llmsr"]) == 0
    row = json.loads(out.read_text())
    assert row["ok"] and row["n_params"] == 10


@pytest.mark.parametrize("style", ["completion", "chat"])
def test_end_of_run_prints_the_whole_best_program(tmp_path, capsys, llmsr_data, style):
    body = ("    restoring = params[0] * np.sin(x) + params[1] * x * np.cos(x) + params[2] * x**3\n"
            "    damping = params[3] * v**3 + params[4] * x * v\n    return restoring + damping\n")
    doc = '    """ Improved version of `equation_v0`.\n\n    Adds a cubic term.\n    """\n'
    answer = doc + body if style == "completion" else f"```python\ndef equation_v1(x, v, params):\n{doc}{body}```"
    responses = tmp_path / "r.jsonl"
    responses.write_text(json.dumps({"response": answer}) + "\n")
    assert main(["run", "oscillator1", "--data", str(llmsr_data / "oscillator1"), "--llm", f"replay:{responses}",
                 "--prompt-style", style, "--samples", "2", "--workers", "1", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out.split("best program:\n", 1)[1].split("\nparams:", 1)[0]
    assert printed == "def equation(x, v, params):\n" + doc + body.rstrip()
