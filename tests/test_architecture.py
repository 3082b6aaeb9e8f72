"""The import contract in pyproject.toml ([tool.importlinter]) holds: layers, no cycles.

``lint-imports`` reads the package from the file system, and eqforge's subpackages live in
top-level folders mapped into ``eqforge.*`` by ``[tool.setuptools.package-dir]``; so the
test lays the sources out as the installed package (a copy in a temporary folder, from the
same mapping) and runs the linter there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([exe, "--no-cache", str(ROOT / "pyproject.toml")], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


def _layout(tree: Path) -> Path:
    """The sources as the installed package lays them out, under ``tree``."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    mapping = setuptools["package-dir"]
    for package in setuptools["packages"]:
        base = max((k for k in mapping if package == k or package.startswith(k + ".")), key=len)
        folder = Path(mapping[base], *package[len(base):].split(".")[1:])
        dst = tree.joinpath(*package.split("."))
        dst.mkdir(parents=True, exist_ok=True)
        for src in (ROOT / folder).glob("*.py"):
            shutil.copy(src, dst / src.name)
    return tree


def test_import_contract_is_kept(tmp_path):
    proc = _lint(_layout(tmp_path))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "KEPT" in proc.stdout


def test_the_contract_catches_an_upward_import(tmp_path):
    """The same check fails when a lower layer imports a higher one (the test can fail)."""
    tree = _layout(tmp_path)
    (tree / "eqforge" / "sandbox" / "upward.py").write_text("import eqforge.agents.loop  # noqa\n")
    proc = _lint(tree)
    assert proc.returncode != 0 and "eqforge.sandbox.upward -> eqforge.agents.loop" in proc.stdout
