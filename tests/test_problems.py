"""Problems: bad data, arrays/data frames, the built-in library and the benchmark loaders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import sympy
from toy_problem import TOML

from eqforge.config import EvaluatorConfig
from eqforge.errors import ProblemError
from eqforge.problems import Problem, ProblemSpec, Split, Variable, list_problems, load_problem
from eqforge.problems.registry import describe_problem


def _rows(n: int) -> str:
    return "".join(f"{i},{i * 0.5},{2 * i + 1}\n" for i in range(n))


def _folder(tmp_path: Path, train: str, toml: str = TOML, **others: str) -> Path:
    d = tmp_path / "toy"
    d.mkdir()
    (d / "problem.toml").write_text(toml)
    (d / "train.csv").write_text(train)
    for name, text in others.items():
        (d / f"{name}.csv").write_text(text)
    return d


def _one_line_error(fn, *args, **kw) -> str:  # noqa: ANN001
    with pytest.raises(ProblemError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg and info.value.exit_code == 2
    return msg


# -- issue #2 part 1: bad data, each a one-line error naming file, column and row ----------

@pytest.mark.parametrize("train,toml,file,needles", [
    ("x,y\n" + "1,2\n" * 20, TOML, "train.csv", ["missing column 'z'"]),
    ("x,z,y,w\n" + "1,2,3,4\n" * 20, TOML, "train.csv", ["unexpected column 'w'"]),
    ("x,z,y\n" + _rows(5) + "1,abc,3\n" + _rows(14), TOML, "train.csv", ["column 'z' row 7", "'abc'"]),
    ("x,z,y\n" + _rows(3) + "1,nan,3\n" + _rows(16), TOML, "train.csv", ["column 'z' row 5", "NaN/inf"]),
    ("x,z,y\n" + _rows(3) + "1,2,-inf\n" + _rows(16), TOML, "train.csv", ["column 'y' row 5", "NaN/inf"]),
    ("x,z,y\n" + _rows(3) + "1,2\n" + _rows(16), TOML, "train.csv", ["row 5 has 2 cells"]),
    ("x,z,y\n" + _rows(3), TOML, "train.csv", ["only 3 rows"]),
    ("x,z,y\n" + "1,2,3\n" * 20, TOML, "train.csv", ["column 'y'", "constant"]),
    ("x,2z,y\n" + _rows(20), TOML.replace('"z"', '"2z"'), "problem.toml", ["'2z'", "not a valid Python identifier"]),
    ("x,lambda,y\n" + _rows(20), TOML.replace('"z"', '"lambda"'), "problem.toml", ["'lambda'", "keyword"]),
    ("x,np,y\n" + _rows(20), TOML.replace('"z"', '"np"'), "problem.toml", ["'np'", "clashes"]),
    ("x,z,y\n" + _rows(20), TOML.replace('name = "z"', 'name = "x"'), "problem.toml", ["'x' appears twice"]),
])
def test_bad_data_one_line_error(tmp_path, train, toml, file, needles):
    d = _folder(tmp_path, train, toml)
    msg = _one_line_error(load_problem, d)
    assert str(d / file) in msg
    for needle in needles:
        assert needle in msg


def test_bad_test_split_names_its_file(tmp_path):
    d = _folder(tmp_path, "x,z,y\n" + _rows(20), test_ood="x,z,y\n1,2,3\n4,oops,6\n")
    msg = _one_line_error(load_problem, d)
    assert str(d / "test_ood.csv") in msg and "column 'z' row 3" in msg


def test_bad_toml_and_missing_train(tmp_path):
    d = _folder(tmp_path, "x,z,y\n" + _rows(20), 'name = "toy"\ndescription = 3\n')
    assert "description" in _one_line_error(load_problem, d)
    (d / "problem.toml").write_text(TOML + "\nextra_key = 1\n")
    assert "extra_key" in _one_line_error(load_problem, d)
    (d / "problem.toml").write_text(TOML)
    (d / "train.csv").unlink()
    assert "train.csv" in _one_line_error(load_problem, d)


def test_direct_construction_is_validated():
    spec = ProblemSpec(name="t", description="d", inputs=[Variable(name="for")], output=Variable(name="y"))
    split = Split(X=np.arange(20.0).reshape(-1, 1), y=np.arange(20.0))
    assert "keyword" in _one_line_error(Problem, spec, {"train": split})
    spec = ProblemSpec(name="t", description="d", inputs=[Variable(name="x")], output=Variable(name="y"))
    assert "no train split" in _one_line_error(Problem, spec, {"test_id": split})
    bad = Split(X=np.arange(20.0).reshape(-1, 1), y=np.r_[np.arange(19.0), np.inf])
    assert "column 'y' row 20" in _one_line_error(Problem, spec, {"train": bad})


# -- from_arrays / from_dataframe / save ---------------------------------------------------

def _arrays(n: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.5, 2.0, size=(n, 2))
    return X, 3.0 * X[:, 0] / X[:, 1] ** 2


def test_from_arrays_save_round_trip(tmp_path):
    X, y = _arrays()
    p = Problem.from_arrays(X, y, names=["q", "Distance (m)"], description="Charges at a distance.",
                            target="F", units={"q": "C"}, seed=4, ood_variable="Distance (m)")
    assert p.input_names == ["q", "Distance"]
    assert p.spec.inputs[1].label == "Distance (m)" and p.spec.inputs[1].unit == "m"
    assert p.spec.inputs[0].unit == "C"
    rows = {k: v.n for k, v in p.splits.items()}
    assert rows == {"train": 70, "test_id": 20, "test_ood": 10}
    # the OOD rows are the largest distances
    assert p.splits["test_ood"].X[:, 1].min() >= max(p.train.X[:, 1].max(), p.splits["test_id"].X[:, 1].max())
    assert p.spec.split["seed"] == 4 and p.spec.split["ood_variable"] == "Distance"
    back = load_problem(p.save(tmp_path / "saved"))
    assert back.spec == p.spec
    for s in p.splits:
        np.testing.assert_array_equal(back.splits[s].X, p.splits[s].X)
        np.testing.assert_array_equal(back.splits[s].y, p.splits[s].y)
    # same seed, same split; another seed, another split
    again = Problem.from_arrays(X, y, names=["q", "Distance (m)"], description="d", target="F", seed=4,
                                ood_variable="Distance")
    np.testing.assert_array_equal(again.train.X, p.train.X)
    other = Problem.from_arrays(X, y, names=["q", "Distance (m)"], description="d", target="F", seed=5,
                                ood_variable="Distance")
    assert not np.array_equal(other.train.X, p.train.X)


def test_from_arrays_options_and_errors():
    X, y = _arrays(50)
    p = Problem.from_arrays(X, y, description="d", split=False)
    assert p.input_names == ["x0", "x1"] and list(p.splits) == ["train"] and p.train.n == 50
    Xt, yt = _arrays(20, seed=1)
    p = Problem.from_arrays(X, y, description="d", test_id=(Xt, yt), test_ood=(Xt * 2, yt))
    assert {k: v.n for k, v in p.splits.items()} == {"train": 50, "test_id": 20, "test_ood": 20}
    Xn = X.copy()
    Xn[2, 1] = np.nan
    assert "column 'x1' row 3" in _one_line_error(Problem.from_arrays, Xn, y, description="d")
    assert "constant" in _one_line_error(Problem.from_arrays, X, np.ones(50), description="d")
    assert "only" in _one_line_error(Problem.from_arrays, X[:8], y[:8], description="d", split=False)
    assert "description" in _one_line_error(Problem.from_arrays, X, y)
    assert "names" in _one_line_error(Problem.from_arrays, X, y, names=["a"], description="d")
    assert "not a column" in _one_line_error(Problem.from_arrays, X, y, description="d", ood_variable="w")
    assert "training rows" in _one_line_error(Problem.from_arrays, X, y, description="d",
                                              test_fraction=0.5, ood_fraction=0.5)
    obj = X.astype(object)
    obj[4, 0] = "n/a"
    assert "column 'x0' row 5" in _one_line_error(Problem.from_arrays, obj, y, description="d")


class FakeFrame:
    """The least a data frame needs to offer: columns and to_numpy()."""

    def __init__(self, columns: list[str], rows: list[list[object]]) -> None:
        self.columns = columns
        self._rows = rows

    def to_numpy(self) -> np.ndarray:
        return np.array(self._rows, dtype=object)


def test_from_dataframe_duck_typed():
    X, y = _arrays(60)
    frame = FakeFrame(["time (s)", "2nd", "out"], [[a, b, c] for a, b, c in zip(X[:, 0], X[:, 1], y, strict=True)])
    p = Problem.from_dataframe(frame, target="out", description="Something measured.", test_fraction=0.25,
                               ood_fraction=0)
    assert p.input_names == ["time", "var_2nd"] and p.output_name == "out"
    assert {k: v.n for k, v in p.splits.items()} == {"train": 45, "test_id": 15}
    frame._rows[7][1] = "abc"
    msg = _one_line_error(Problem.from_dataframe, frame, target="out", description="d")
    assert "column '2nd' row 8" in msg
    assert "target column 'nope'" in _one_line_error(Problem.from_dataframe, frame, target="nope", description="d")


def test_from_dataframe_pandas():
    pd = pytest.importorskip("pandas")
    X, y = _arrays(40)
    df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "extra": 1.0, "y": y})
    p = Problem.from_dataframe(df, target="y", inputs=["a", "b"], description="d", seed=1)
    assert p.input_names == ["a", "b"] and sum(s.n for s in p.splits.values()) == 40


# -- the built-in library -------------------------------------------------------------------

def _feynman() -> list[str]:
    return [n for n in list_problems() if n.startswith("feynman-")]


def test_library_lists_problems():
    names = list_problems()
    assert len(_feynman()) >= 30
    for n in ("oscillator1", "oscillator2", "bactgrow", "stressstrain", "feynman-I.6.2a", "feynman-I.12.1"):
        assert n in names
    assert "needs --data" in names["bactgrow"]


def test_feynman_problems_generate_deterministically_fast_and_exact():
    from eqforge.problems.library import make_feynman, ranges

    for name in _feynman():
        start = time.perf_counter()
        p = make_feynman.__wrapped__(name, 0)  # uncached
        assert time.perf_counter() - start < 1.0, name
        assert load_problem(name) is load_problem(name)  # cached
        q = make_feynman.__wrapped__(name, 0)
        r = make_feynman.__wrapped__(name, 1)
        for s in ("train", "test_id", "test_ood"):
            np.testing.assert_array_equal(p.splits[s].X, q.splits[s].X)
        assert not np.array_equal(p.train.X, r.train.X)
        spec = p.spec
        assert spec.ground_truth and spec.description and spec.output.unit
        assert all(v.unit and v.description for v in spec.inputs), name
        # the ground truth parses with sympy in the variable names and reproduces every split
        symbols = {n: sympy.Symbol(n) for n in p.input_names}
        expr = sympy.sympify(spec.ground_truth, locals=symbols)
        assert {str(s) for s in expr.free_symbols} == set(p.input_names), name
        f = sympy.lambdify([symbols[n] for n in p.input_names], expr, "numpy")
        for s, split in p.splits.items():
            pred = np.broadcast_to(f(*split.X.T), split.y.shape)
            nmse = np.mean((pred - split.y) ** 2) / np.var(split.y)
            assert nmse < 1e-20, (name, s, nmse)
        # OOD samples lie on the extended ranges
        for i, (ind, ood) in enumerate(ranges(name).values()):
            col = p.splits["test_ood"].X[:, i]
            assert ood[0] <= col.min() and col.max() <= ood[1] and ood != ind
            assert ind[0] <= p.train.X[:, i].min() and p.train.X[:, i].max() <= ind[1]


def test_simulated_oscillators_match_llmsr_regions(llmsr_data):
    for name in ("oscillator1", "oscillator2"):
        sim = load_problem(name)
        assert sim.source.startswith("<simulated") and sim.spec.split["seed"] == 0
        real = load_problem(name, data=llmsr_data / name)
        assert real.train.n == 10000 and real.source == str(llmsr_data / name)
        for s in ("train", "test_ood"):
            a, b = sim.splits[s].X, real.splits[s].X
            np.testing.assert_allclose(a.min(0), b.min(0), atol=0.02)
            np.testing.assert_allclose(a.max(0), b.max(0), atol=0.02)
    assert "oscillator1" in str(load_problem(f"llmsr:{llmsr_data / 'oscillator1'}").source)


OSC_PROGRAMS = {
    "oscillator1": "def equation(x, v, params):\n"
                   "    return 0.8*np.sin(x) - x*np.cos(x) - 0.2*x**3 - 0.5*v**3 - 0.5*x*v + 0*params[0]\n",
    "oscillator2": "def equation(t, x, v, params):\n"
                   "    return 0.3*np.sin(t) - 0.5*v**3 - x*v - 5*x*np.exp(0.5*x) + 0*params[0]\n",
    "feynman-I.12.2": "def equation(q1, q2, r, params):\n    return params[0] * q1 * q2 / r**2\n",
}


@pytest.mark.parametrize("name", list(OSC_PROGRAMS))
def test_ground_truth_through_the_evaluator(name, monkeypatch):
    from eqforge.evaluator.evaluate import Evaluator

    monkeypatch.delenv("EQFORGE_DATA", raising=False)
    problem = load_problem(name)
    with Evaluator(problem, EvaluatorConfig(workers=1)) as ev:
        result = ev.evaluate_many([OSC_PROGRAMS[name]])[0]
    assert result.ok, result.detail
    for split in ("train", "test_id", "test_ood"):
        assert result.nmse[split] < 1e-10, (split, result.nmse)


def test_describe_problem():
    text = describe_problem("feynman-I.12.2")
    assert "q1 [µC]" in text and "ground truth: F = " in text and "test_ood 250" in text
    assert "needs data" in describe_problem("bactgrow")
    assert "LLM-SR's own data" in describe_problem("oscillator1")
    with pytest.raises(ProblemError, match="unknown problem"):
        describe_problem("no-such-problem")


# -- LLM-SRBench ----------------------------------------------------------------------------

def _make_lsrbench(root: Path, *, metadata: bool = True) -> Path:
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "lsr_bench_data.hdf5", "w") as h5:
        # LSR-Transform: column 0 is the output; keys train / test / ood_test
        g = h5.create_group("/lsr_transform/I.12.2_1")
        for split, (lo, hi), n in (("train", (1, 5), 50), ("test", (1, 5), 20), ("ood_test", (5, 8), 20)):
            q, lam = rng.uniform(lo, hi, n), rng.uniform(lo, hi, n)
            g.create_dataset(split, data=np.column_stack([q * lam**2, q, lam]))
        # LSR-Synth: keys train_data / id_test_data / ood_test_data
        g = h5.create_group("/lsr_synth/matsci/MatSci0")
        for split, n in (("train_data", 40), ("id_test_data", 10), ("ood_test_data", 10)):
            T, eps = rng.uniform(1, 2, n), rng.uniform(0, 1, n)
            g.create_dataset(split, data=np.column_stack([2 * eps + 0.1 * T, T, eps]))
    if metadata:
        data = root / "data"
        data.mkdir(exist_ok=True)
        (data / "lsr_transform.jsonl").write_text(json.dumps({
            "name": "I.12.2_1", "symbols": ["F", "q", "lambda"],
            "symbol_descs": ["force", "charge", "wavelength"], "symbol_properties": ["O", "V", "V"],
            "expression": "q*lambda**2"}) + "\n")
        (data / "lsr_synth_matsci.jsonl").write_text(json.dumps({
            "name": "MatSci0", "symbols": ["sigma", "T", "epsilon"],
            "symbol_descs": ["stress", "temperature", "strain"], "symbol_properties": ["O", "V", "V"],
            "expression": "2*epsilon + 0.1*T"}) + "\n")
    return root


def test_lsrbench_loader(tmp_path):
    from eqforge.problems.benchmarks import list_lsrbench, lsrbench_refs

    root = _make_lsrbench(tmp_path / "llm-srbench")
    assert list_lsrbench(root) == ["lsr_synth/matsci/MatSci0", "lsr_transform/I.12.2_1"]
    assert len(lsrbench_refs(root, "lsr_synth")) == 1
    p = load_problem(f"lsrbench:{root}#lsr_transform/I.12.2_1")
    assert p.input_names == ["q", "lambda_"] and p.output_name == "F"
    assert p.spec.inputs[1].label == "lambda" and p.spec.inputs[1].description == "wavelength"
    assert p.spec.ground_truth == "q*lambda_**2"
    assert {k: v.n for k, v in p.splits.items()} == {"train": 50, "test_id": 20, "test_ood": 20}
    assert "represents force, given data on charge, and wavelength" in p.spec.description
    for split in p.splits.values():
        q, lam = split.X.T
        np.testing.assert_allclose(q * lam**2, split.y)
    s = load_problem(f"lsrbench:{root / 'lsr_bench_data.hdf5'}#MatSci0")
    assert s.input_names == ["T", "epsilon"] and s.output_name == "sigma"
    assert {k: v.n for k, v in s.splits.items()} == {"train": 40, "test_id": 10, "test_ood": 10}
    assert load_problem(f"lsrbench:{root}#matsci/MatSci0").spec == s.spec
    assert "no problem 'nope'" in _one_line_error(load_problem, f"lsrbench:{root}#nope")
    assert "name one problem" in _one_line_error(load_problem, f"lsrbench:{root}")
    assert "2 problems" in describe_problem(f"lsrbench:{root}")


def test_lsrbench_parquet_metadata(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    root = _make_lsrbench(tmp_path / "hf", metadata=False)
    (root / "data").mkdir()
    rows = [{"name": "I.12.2_1", "symbols": ["F", "q", "lambda"], "symbol_descs": ["force", "charge", "wavelength"],
             "symbol_properties": ["O", "V", "V"], "expression": "q*lambda**2"}]
    pd.DataFrame(rows).to_parquet(root / "data" / "lsr_transform-00000-of-00001.parquet")
    p = load_problem(f"lsrbench:{root}#I.12.2_1")
    assert p.input_names == ["q", "lambda_"] and p.spec.ground_truth == "q*lambda_**2"


def test_lsrbench_without_metadata(tmp_path):
    root = _make_lsrbench(tmp_path / "bare", metadata=False)
    p = load_problem(f"lsrbench:{root}#I.12.2_1")
    assert p.input_names == ["x1", "x2"] and p.output_name == "y" and p.spec.ground_truth is None


def test_lsrbench_needs_h5py(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "h5py", None)
    (tmp_path / "lsr_bench_data.hdf5").write_bytes(b"")
    msg = _one_line_error(load_problem, f"lsrbench:{tmp_path}#x")
    assert "h5py" in msg and "eqforge[bench]" in msg
