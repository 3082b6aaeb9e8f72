"""Loaders for community benchmarks, by reference string.

``load_problem`` (and so ``eqforge run`` / ``evaluate``) accepts these references:

* ``llmsr:DIR`` — a folder in LLM-SR's layout (``train.csv``, ``test_id.csv``,
  ``test_ood.csv``) named after one of LLM-SR's problems (``oscillator1``, ``oscillator2``,
  ``bactgrow``, ``stressstrain``); the same as ``NAME --data DIR``. ``llmsr:DIR#NAME`` names
  the problem when the folder is named otherwise.
* ``lsrbench:PATH#NAME`` — one problem of LLM-SRBench (LSR-Transform or LSR-Synth) from a
  local copy of its Hugging Face dataset ``nnheui/llm-srbench``. ``PATH`` is the folder
  holding ``lsr_bench_data.hdf5`` (and the metadata under ``data/*.parquet``, or JSON/JSONL
  files with the same stems), or the HDF5 file itself. ``NAME`` is ``lsr_transform/<name>``,
  ``lsr_synth/<domain>/<name>``, ``<domain>/<name>`` or just ``<name>`` when unambiguous.

LLM-SRBench's layout: the HDF5 file holds one group per problem, ``/lsr_transform/<name>``
or ``/lsr_synth/<domain>/<name>``, with arrays ``train``, ``test`` and (mostly) ``ood_test``
(LSR-Synth copies may call them ``train_data``, ``id_test_data``, ``ood_test_data``); column 0
is the output, the other columns the inputs, in the order of the metadata's ``symbols``.
The metadata (one record per problem) gives ``name``, ``symbols``, ``symbol_descs``,
``symbol_properties`` (``O`` output, ``V`` input) and the ground-truth ``expression``.
Reading HDF5 needs ``h5py`` and parquet needs ``pandas`` + ``pyarrow``
(``pip install 'eqforge[bench]'``); both are imported only when used.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from eqforge.errors import ProblemError
from eqforge.problems.spec import Problem, ProblemSpec, Split, Variable

LSRBENCH = "lsrbench:"
LLMSR = "llmsr:"
HDF5_NAME = "lsr_bench_data.hdf5"
GROUPS = ("lsr_transform", "lsr_synth")
SPLIT_KEYS = {
    "train": ("train", "train_data"),
    "test_id": ("test", "id_test", "id_test_data", "test_data", "test_id"),
    "test_ood": ("ood_test", "ood_test_data", "test_ood"),
}
INSTALL_HINT = "pip install 'eqforge[bench]'"


def is_benchmark_ref(ref: object) -> bool:
    return isinstance(ref, str) and (ref.startswith(LSRBENCH) or ref.startswith(LLMSR))


def load_benchmark(ref: str) -> Problem:
    """Resolve an ``lsrbench:`` or ``llmsr:`` reference into a validated ``Problem``."""
    if ref.startswith(LSRBENCH):
        path, _, name = ref[len(LSRBENCH):].partition("#")
        if not path:
            raise ProblemError(f"{ref}: give the dataset folder, e.g. lsrbench:~/llm-srbench#lsr_transform/NAME")
        if not name:
            names = list_lsrbench(path)
            raise ProblemError(
                f"{ref}: name one problem after '#', e.g. {LSRBENCH}{path}#{names[0] if names else 'NAME'} "
                f"({len(names)} problems; `eqforge problems show {LSRBENCH}{path}` lists them)"
            )
        return load_lsrbench(path, name)
    if ref.startswith(LLMSR):
        path, _, name = ref[len(LLMSR):].partition("#")
        return load_llmsr(path, name or None)
    raise ProblemError(f"{ref}: not a benchmark reference (use lsrbench:PATH#NAME or llmsr:DIR)")


# ---------------------------------------------------------------------------------------
# LLM-SR data folders
# ---------------------------------------------------------------------------------------

def load_llmsr(directory: str | Path, name: str | None = None) -> Problem:
    """An LLM-SR data folder, with the built-in definition of the problem it belongs to."""
    from eqforge.problems.builtin import builtin_spec, builtin_spec_names
    from eqforge.problems.io import load_data_dir

    d = Path(directory).expanduser()
    if not d.is_dir():
        raise ProblemError(f"{d}: not a folder; llmsr:DIR needs a folder holding train.csv")
    name = name or d.name
    spec = builtin_spec(name)
    if spec is None:
        raise ProblemError(
            f"{d}: no built-in definition named {name!r}; use llmsr:DIR#NAME with one of {builtin_spec_names()}"
        )
    return load_data_dir(spec, d, source=str(d))


# ---------------------------------------------------------------------------------------
# LLM-SRBench
# ---------------------------------------------------------------------------------------

def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ProblemError(f"reading LLM-SRBench's HDF5 data needs h5py: {INSTALL_HINT}") from None
    return h5py


def _hdf5_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_file():
        return p
    for cand in (p / HDF5_NAME, p / "data" / HDF5_NAME):
        if cand.is_file():
            return cand
    if p.is_dir():
        found = sorted(p.glob("*.hdf5")) + sorted(p.glob("*.h5"))
        if len(found) == 1:
            return found[0]
        raise ProblemError(f"{p}: no {HDF5_NAME} here; download it from huggingface.co/datasets/nnheui/llm-srbench")
    raise ProblemError(f"{p}: not found; point lsrbench: at the folder holding {HDF5_NAME}")


def _problem_groups(h5: Any) -> list[str]:
    """Paths (no leading slash) of groups that hold a train array."""
    out: list[str] = []

    def visit(path: str, obj: Any) -> None:
        if hasattr(obj, "keys") and any(k in obj for k in SPLIT_KEYS["train"]):
            out.append(path)

    h5.visititems(visit)
    return sorted(out)


def list_lsrbench(path: str | Path) -> list[str]:
    """Qualified names (``lsr_transform/NAME``, ``lsr_synth/DOMAIN/NAME``) in a local copy."""
    h5py = _h5py()
    with h5py.File(_hdf5_path(path), "r") as h5:
        return _problem_groups(h5)


def lsrbench_refs(path: str | Path, prefix: str = "") -> list[str]:
    """``lsrbench:PATH#NAME`` for every problem (whose qualified name starts with ``prefix``), for sweeps."""
    return [f"{LSRBENCH}{path}#{n}" for n in list_lsrbench(path) if n.startswith(prefix)]


def _metadata_group(stem: str) -> str | None:
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", stem)
    if stem == "lsr_transform":
        return "lsr_transform"
    if stem.startswith("lsr_synth_"):
        return "lsr_synth/" + stem[len("lsr_synth_"):]
    return None


def _read_records(file: Path) -> list[dict[str, Any]]:
    if file.suffix == ".parquet":
        try:
            import pandas as pd

            frame = pd.read_parquet(file)
        except ImportError:
            raise ProblemError(f"{file}: reading parquet metadata needs pandas and pyarrow: {INSTALL_HINT}") from None
        except Exception as exc:  # noqa: BLE001 - report any reader failure in one line
            raise ProblemError(f"{file}: cannot read parquet ({exc})") from None
        return [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()}
                for row in frame.to_dict(orient="records")]
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProblemError(f"{file}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
    if isinstance(data, dict):
        data = data.get("problems") or data.get("equations") or list(data.values())
    return [r for r in data if isinstance(r, dict)]


def _metadata(root: Path, group: str, item: str) -> dict[str, Any] | None:
    """The metadata record for one problem, from parquet/JSON/JSONL files near the HDF5 file."""
    files = []
    for d in dict.fromkeys([root, root / "data", root.parent, root.parent / "data"]):
        if d.is_dir():
            files += [f for ext in ("*.parquet", "*.jsonl", "*.json") for f in sorted(d.glob(ext))]
    # files named for this group first, then any others
    files.sort(key=lambda f: _metadata_group(f.stem) != group)
    for f in files:
        g = _metadata_group(f.stem)
        if g is not None and g != group:
            continue
        if g is None and f.suffix == ".parquet":
            continue
        for rec in _read_records(f):
            if str(rec.get("name")) == item:
                return rec
    return None


def _resolve(groups: list[str], name: str, source: str) -> str:
    name = name.strip("/")
    if name in groups:
        return name
    for cand in (f"lsr_synth/{name}", f"lsr_transform/{name}"):
        if cand in groups:
            return cand
    matches = [g for g in groups if g.rsplit("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ProblemError(f"{source}: {name!r} is ambiguous: {matches}")
    close = [g for g in groups if name.lower() in g.lower()][:5]
    hint = f"; similar: {close}" if close else f" ({len(groups)} problems, e.g. {groups[:3]})"
    raise ProblemError(f"{source}: no problem {name!r}{hint}")


def _rename_expression(expr: str, mapping: dict[str, str]) -> str:
    if not mapping:
        return expr
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True))
                         + r")(?![\w])")
    return pattern.sub(lambda m: mapping[m.group(1)], expr)


def load_lsrbench(path: str | Path, name: str) -> Problem:
    """One LLM-SRBench problem from a local copy of the dataset."""
    from eqforge.problems.naming import safe_names

    h5py = _h5py()
    h5file = _hdf5_path(path)
    source = f"{h5file}#{name}"
    with h5py.File(h5file, "r") as h5:
        qualified = _resolve(_problem_groups(h5), name, str(h5file))
        group = h5[qualified]
        arrays: dict[str, np.ndarray] = {}
        for split, keys in SPLIT_KEYS.items():
            key = next((k for k in keys if k in group), None)
            if key is not None:
                arrays[split] = np.asarray(group[key][...], dtype=np.float64)
    family, _, item = qualified.rpartition("/")
    train = arrays["train"]
    if train.ndim != 2 or train.shape[1] < 2:
        raise ProblemError(f"{source}: train array has shape {train.shape}; expected (rows, 1 + inputs)")
    k = train.shape[1]
    meta = _metadata(h5file.parent, family, item)
    if meta is not None:
        symbols = [str(s) for s in meta.get("symbols") or []]
        descs = [str(s) for s in meta.get("symbol_descs") or [""] * len(symbols)]
        props = [str(s) for s in meta.get("symbol_properties") or []]
        expression = meta.get("expression")
        if len(symbols) != k:
            keep = [i for i, p in enumerate(props) if p in ("O", "V")] if props else []
            if len(keep) == k:
                symbols = [symbols[i] for i in keep]
                descs = [descs[i] if i < len(descs) else "" for i in keep]
                props = [props[i] for i in keep]
            else:
                raise ProblemError(
                    f"{source}: metadata lists {len(symbols)} symbols {symbols} but the data has {k} columns"
                )
        out_idx = props.index("O") if "O" in props else 0
    else:
        symbols = ["y", *[f"x{i}" for i in range(1, k)]]
        descs = ["the output", *[f"input {i}" for i in range(1, k)]]
        expression, out_idx = None, 0
    descs = (descs + [""] * k)[:k]
    order = [i for i in range(k) if i != out_idx] + [out_idx]
    labels = [symbols[i] for i in order]
    names = safe_names(labels)
    renamed = {lab: nm for lab, nm in zip(labels, names, strict=True) if lab != nm}
    variables = [
        Variable(name=nm, description=descs[i], label=lab if lab != nm else None)
        for i, lab, nm in zip(order, labels, names, strict=True)
    ]
    in_descs = [v.description or v.name for v in variables[:-1]]
    given = in_descs[0] if len(in_descs) == 1 else ", ".join(in_descs[:-1]) + f", and {in_descs[-1]}"
    description = (f"Find the mathematical function skeleton that represents "
                   f"{variables[-1].description or variables[-1].name}, given data on {given}.")
    spec = ProblemSpec(
        name=f"lsrbench-{item}",
        description=description,
        inputs=variables[:-1],
        output=variables[-1],
        ground_truth=_rename_expression(str(expression), renamed) if expression else None,
        split={"method": "given", "benchmark": "LLM-SRBench", "group": qualified},
    )
    cols = order[:-1]
    splits = {}
    for s, a in arrays.items():
        if a.ndim != 2 or a.shape[1] != k:
            raise ProblemError(f"{source}: {s} array has shape {a.shape}; the train array has {k} columns")
        if len(a):
            splits[s] = Split(X=a[:, cols], y=a[:, out_idx], origin=f"{source} [{s}]")
    return Problem(spec, splits, source=source)
