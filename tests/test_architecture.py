"""The import contract in pyproject.toml ([tool.importlinter]) holds: layers, no cycles, and
the search core has one top.

``lint-imports`` reads the package from the file system, and eqforge's subpackages live in
top-level folders mapped into ``eqforge.*`` by ``[tool.setuptools.package-dir]``; so the test
runs it on the link tree ``tests/layout.py`` builds (what ``python tests/layout.py
lint-imports`` runs by hand). The tests that must see the contract break add a module to a
tree whose package is expanded into per-file links, so nothing is written into the checkout.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import layout
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("lint-imports") is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    return layout.run(["lint-imports"], tree, capture_output=True, timeout=300)


def test_import_contract_is_kept(tmp_path):
    proc = _lint(layout.build(tmp_path / "layout"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "KEPT" in proc.stdout


def test_the_contract_catches_an_upward_import(tmp_path):
    """The same check fails when a lower layer imports a higher one (the test can fail)."""
    tree = layout.build(tmp_path / "layout", expand=frozenset({"eqforge.sandbox"}))
    (tree / "eqforge" / "sandbox" / "upward.py").write_text("import eqforge.agents.loop  # noqa\n")
    proc = _lint(tree)
    assert proc.returncode != 0 and "eqforge.sandbox.upward -> eqforge.agents.loop" in proc.stdout


def test_the_contract_forbids_the_search_importing_its_loop(tmp_path):
    """The old circle (loop -> strategies -> agent -> tools -> loop) cannot come back: a module
    of the search that imports the loop, even lazily, breaks the contract."""
    tree = layout.build(tmp_path / "layout", expand=frozenset({"eqforge.agents"}))
    (tree / "eqforge" / "agents" / "sneaky.py").write_text(
        "def f():\n    from eqforge.agents.loop import DiscoveryLoop  # noqa\n")
    proc = _lint(tree)
    assert proc.returncode != 0 and "eqforge.agents.sneaky -> eqforge.agents.loop" in proc.stdout


def test_no_module_of_the_search_names_the_loop():
    """Belt and braces, without import-linter: only the API (and benchmarks) import the loop,
    and nothing in the search receives a ``DiscoveryLoop``."""
    offenders = []
    for path in sorted((ROOT / "agents").rglob("*.py")):
        if path.name == "loop.py" and path.parent == ROOT / "agents":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "eqforge.agents.loop" for n in names) or (
                    isinstance(node, ast.Name) and node.id == "DiscoveryLoop"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_the_link_tree_is_the_installed_layout(tmp_path):
    """Every package pyproject lists is a package in the tree, reached through links only."""
    tree = layout.build(tmp_path / "layout")
    for package in layout.mapping():
        folder = tree.joinpath(*package.split("."))
        assert (folder / "__init__.py").is_file(), package
    assert (tree / "eqforge" / "agents").is_symlink()
    assert (tree / "eqforge" / "agents" / "llm" / "base.py").resolve() == ROOT / "agents" / "llm" / "base.py"
    assert not any(p.is_file() and not p.is_symlink() for p in (tree / "eqforge").iterdir())
