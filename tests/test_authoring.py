"""`eqforge new`: a CSV and a paragraph become a problem folder, optionally with LLM-drafted
variable descriptions."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from eqforge.agents.drafting import as_complete
from eqforge.cli import main
from eqforge.cli import scaffold_from_args as scaffold_from_cli
from eqforge.errors import ProblemError
from eqforge.problems import load_problem
from eqforge.problems.authoring import scaffold
from eqforge.problems.drafting import parse_draft
from eqforge.problems.naming import safe_names

HEADER = ["Angle (rad)", "ω [rad/s]", "Length (m)", "2nd", "lambda", "Angular acc. (rad/s²)"]
DESCRIBE = ('A pendulum with air drag; I measured angle, angular velocity and length.\n'
            'I want the "angular acceleration".')


@pytest.fixture()
def pendulum_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 200
    th, w, L = rng.uniform(-1, 1, n), rng.uniform(-2, 2, n), rng.uniform(0.5, 2, n)
    k = rng.integers(1, 5, n)
    acc = -9.81 / L * np.sin(th) - 0.1 * w * np.abs(w)
    path = tmp_path / "pendulum data.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(zip(th, w, L, k, 2 * k, acc, strict=True))
    return path


def _toml(d: Path) -> dict:
    return tomllib.loads((d / "problem.toml").read_text())


def test_safe_names():
    assert safe_names(HEADER) == ["Angle", "omega", "Length", "var_2nd", "lambda_", "Angular_acc"]
    assert safe_names(["x", "x (m)", "np", "sum", "Δx", "", "a b", "a_b"]) == [
        "x", "x_2", "np_", "sum_", "Delta_x", "var", "a_b_2", "a_b"]


def test_new_scaffolds_a_problem(tmp_path, pendulum_csv):
    out = scaffold(tmp_path / "pendulum", pendulum_csv, "Angular acc. (rad/s²)", DESCRIBE,
                   ood_variable="Length (m)", seed=7)
    raw = _toml(out)
    assert raw["description"] == DESCRIBE  # verbatim
    assert [v["name"] for v in raw["inputs"]] == ["Angle", "omega", "Length", "var_2nd", "lambda_"]
    assert [v.get("label") for v in raw["inputs"]] == HEADER[:5]
    assert raw["inputs"][0]["unit"] == "rad" and raw["inputs"][1]["unit"] == "rad/s"
    assert raw["output"] == {"name": "Angular_acc", "description": "Angular acc.", "unit": "rad/s²",
                             "label": "Angular acc. (rad/s²)"}
    split = raw["split"]
    assert split["seed"] == 7 and split["ood_variable"] == "Length" and split["source"] == pendulum_csv.name
    assert (split["test_fraction"], split["ood_fraction"], split["rows"]) == (0.2, 0.1, 200)
    p = load_problem(out)
    assert {k: v.n for k, v in p.splits.items()} == {"train": 140, "test_id": 40, "test_ood": 20}
    length = {s: p.splits[s].X[:, 2] for s in p.splits}
    assert length["test_ood"].min() >= max(length["train"].max(), length["test_id"].max())
    assert length["test_ood"].min() == split["ood_threshold"]
    # deterministic for a seed
    again = load_problem(scaffold(tmp_path / "again", pendulum_csv, "Angular acc. (rad/s²)", DESCRIBE,
                                  ood_variable="Length", seed=7))
    np.testing.assert_array_equal(again.train.X, p.train.X)
    other = load_problem(scaffold(tmp_path / "other", pendulum_csv, "Angular_acc", DESCRIBE, seed=8,
                                  test_fraction=0.3, ood_fraction=0))
    assert {k: v.n for k, v in other.splits.items()} == {"train": 140, "test_id": 60}
    assert other.spec.split["method"] == "random"


def test_new_errors(tmp_path, pendulum_csv):
    def err(*args, **kw) -> str:  # noqa: ANN002, ANN003
        with pytest.raises(ProblemError) as info:
            scaffold(*args, **kw)
        assert "\n" not in str(info.value) and info.value.exit_code == 2
        return str(info.value)

    d = tmp_path / "p"
    assert "target column 'nope'" in err(d, pendulum_csv, "nope", "text")
    assert "OOD variable 'zz'" in err(d, pendulum_csv, "2nd", "text", ood_variable="zz")
    assert "OOD fraction" in err(d, pendulum_csv, "2nd", "text", ood_fraction=1.5)
    assert "description" in err(d, pendulum_csv, "2nd", "  ")
    assert "file not found" in err(d, tmp_path / "missing.csv", "2nd", "text")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n" + "1,2\n" * 5 + "3,x\n" + "1,3\n" * 10)
    assert f"{bad}: column 'b' row 7" in err(d, bad, "b", "text")
    small = tmp_path / "small.csv"
    small.write_text("a,b\n" + "".join(f"{i},{i * i}\n" for i in range(8)))
    assert "only" in err(d, small, "b", "text")
    scaffold(d, pendulum_csv, "2nd", "text")
    assert "--force" in err(d, pendulum_csv, "2nd", "text")
    scaffold(d, pendulum_csv, "2nd", "other text", force=True)
    assert _toml(d)["description"] == "other text"


CANNED = """Here is my draft. I inferred units from the headers.

```json
{"variables": [
  {"name": "Angle", "description": "angular displacement from the vertical", "unit": "rad"},
  {"name": "ω [rad/s]", "description": "angular velocity", "unit": "rad/s"},
  {"name": "Length", "description": "length of the pendulum", "unit": "m"},
  {"name": "air_density", "description": "density of the surrounding air", "unit": "kg/m^3"},
  {"name": "Angular_acc", "description": "angular acceleration", "unit": "rad/s^2"}
]}
```
Hope this helps!"""


def test_llm_drafted_descriptions(tmp_path, pendulum_csv):
    prompts: list[str] = []

    def complete(text: str) -> str:
        prompts.append(text)
        return CANNED

    out = scaffold(tmp_path / "drafted", pendulum_csv, "Angular acc. (rad/s²)", DESCRIBE, llm=complete,
                   llm_name="fake")
    prompt = prompts[0]
    assert DESCRIBE in prompt and "`var_2nd` (header: '2nd')" in prompt and "min " in prompt
    raw = _toml(out)
    assert raw["description"] == DESCRIBE
    inputs = {v["name"]: v for v in raw["inputs"]}
    assert list(inputs) == ["Angle", "omega", "Length", "var_2nd", "lambda_"]  # none invented, none dropped
    assert inputs["Angle"]["description"] == "angular displacement from the vertical"
    assert inputs["omega"]["description"] == "angular velocity"  # keyed by the original header
    assert inputs["lambda_"]["description"] == "lambda"  # left out by the model: keeps its default
    assert "air_density" not in (out / "problem.toml").read_text()
    assert raw["output"]["description"] == "angular acceleration" and raw["output"]["unit"] == "rad/s^2"
    text = (out / "problem.toml").read_text()
    assert "drafted by fake" in text and "nothing for: var_2nd, lambda_" in text
    assert load_problem(out).input_names == list(inputs)


def test_parse_draft_shapes():
    names, labels = ["x", "v", "a"], ["x (m)", "v", "acc"]
    assert parse_draft('{"x": {"description": "position", "unit": "m"}, "bogus": "no"}', names, labels) == {
        "x": {"description": "position", "unit": "m"}}
    got = parse_draft('Answer: [{"name": "ACC", "description": " accel\\n eration ", "unit": "null"}] done',
                      names, labels)
    assert got == {"a": {"description": "accel eration", "unit": None}}
    got = parse_draft('{"inputs": [{"name": "v", "description": "speed"}], "output": {"name": "a", '
                      '"description": "acceleration", "units": "m/s^2"}}', names, labels)
    assert got == {"v": {"description": "speed", "unit": None},
                   "a": {"description": "acceleration", "unit": "m/s^2"}}
    assert parse_draft("I cannot help with that.", names, labels) == {}
    assert parse_draft("```\nnot json\n```", names, labels) == {}


def test_as_complete_adapts_a_backend():
    class Backend:
        async def generate(self, prompt, sampling):  # noqa: ANN001, ANN201
            assert sampling.n == 1 and prompt.messages[-1]["content"] == "hello"
            return [SimpleNamespace(text="world", error=None)]

    assert as_complete(Backend())("hello") == "world"
    with pytest.raises(TypeError):
        as_complete(42)


def test_new_through_cli_with_replay_backend_then_run(tmp_path, pendulum_csv, capsys):
    replay = tmp_path / "draft.jsonl"
    replay.write_text(json.dumps({"response": CANNED}) + "\n")
    d = tmp_path / "pend"
    assert main(["new", str(d), "--csv", str(pendulum_csv), "--target", "Angular acc. (rad/s²)",
                 "--describe", DESCRIBE, "--llm", f"replay:{replay}"]) == 0
    args = SimpleNamespace(directory=str(tmp_path / "direct"), csv=str(pendulum_csv), target="Angular_acc",
                           describe=DESCRIBE, llm=None, seed=0)  # the flags scaffold_from_cli reads
    assert scaffold_from_cli(args) == tmp_path / "direct"
    raw = _toml(d)
    assert raw["inputs"][2]["description"] == "length of the pendulum"
    assert raw["split"]["ood_variable"] == "Angle"  # default: the first input
    # the problem `new` wrote is one `eqforge run` accepts
    program = ("def equation_v1(Angle, omega, Length, var_2nd, lambda_, params):\n"
               "    return params[0] / Length * np.sin(Angle) + params[1] * omega * np.abs(omega)\n")
    responses = tmp_path / "responses.jsonl"
    responses.write_text(json.dumps({"response": program}) + "\n")
    capsys.readouterr()
    code = main(["run", str(d), "--llm", f"replay:{responses}", "--samples", "2", "--workers", "1",
                 "--quiet", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best"]["nmse"]["test_ood"] < 1e-10
