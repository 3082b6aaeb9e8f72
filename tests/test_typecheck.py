"""The type checker passes: mypy over the installed layout, as configured in ``[tool.mypy]``.

The annotations are only worth what checks them. mypy reads the package through the link
tree ``tests/layout.py`` builds (an editable install maps the folders at import time, which
mypy cannot follow), with the strictness pyproject states; zero errors in every package
(``sandbox``, ``evaluator``, ``agents``, ``prompts``, ``problems`` and ``eqforge``). By hand:
``python tests/layout.py mypy``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import layout
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                reason="mypy is not installed (pip install -e '.[test]')")


def _mypy(tree: Path, *args: str) -> str:
    cache = tree.parent / "mypy_cache"  # a cache is tied to the tree's paths: a fresh one per tree
    proc = layout.run(["mypy", "--cache-dir", str(cache), *args], tree, capture_output=True, timeout=900)
    return f"rc={proc.returncode}\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}"


@pytest.mark.slow
def test_mypy_finds_no_errors(tmp_path):
    out = _mypy(layout.build(tmp_path / "layout"))
    assert out.startswith("rc=0") and "Success: no issues found" in out, out


def test_mypy_reports_a_type_error(tmp_path):
    """The same check fails on a wrong annotation (the test can fail)."""
    tree = layout.build(tmp_path / "layout", expand=frozenset({"eqforge.agents"}))
    (tree / "eqforge" / "agents" / "wrong.py").write_text(
        "def f(n: int) -> str:\n    return n\n", encoding="utf-8")
    out = _mypy(tree, "-m", "eqforge.agents.wrong")
    assert out.startswith("rc=1") and "wrong.py:2: error: Incompatible return value type" in out, out
