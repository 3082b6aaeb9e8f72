"""The installed layout as a tree of links: what lint-imports, mypy and IDEs read.

eqforge's subpackages live in top-level folders that ``[tool.setuptools.package-dir]`` maps
into ``eqforge.*``; an editable install resolves that mapping at import time, which static
tools cannot follow. This builds ``build/layout/eqforge/…`` from the same mapping, out of
symbolic links back to the sources, so the tools see the package as it is installed while
every edit lands in the checkout::

    python tests/layout.py                  # build/layout (again only after adding a top-level
                                            # folder or a module directly under eqforge/)
    python tests/layout.py lint-imports     # build it, then run a tool in it: the import contract
    python tests/layout.py mypy             # the type check ([tool.mypy]: mypy_path = build/layout)

An IDE is pointed at ``build/layout`` as its source root (VS Code: ``"python.analysis.
extraPaths": ["build/layout"]``; PyCharm: mark it as Sources Root).

A package whose folder is its parent's folder plus its own name (``agents/llm`` under
``agents``) is reached through the parent's link; a folder mapped elsewhere gets its own
link, and a package folder that maps several folders (``eqforge`` itself) is a real
directory of per-entry links. The tests (``test_architecture``, ``test_typecheck``) build it
fresh each time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "build" / "layout"


def mapping(root: Path = ROOT) -> dict[str, Path]:
    """Each package (``eqforge.agents``) and its source folder (``agents``), from pyproject."""
    setuptools = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    dirs = setuptools["package-dir"]
    out: dict[str, Path] = {}
    for package in setuptools["packages"]:
        base = max((k for k in dirs if package == k or package.startswith(k + ".")), key=len)
        out[package] = root / Path(dirs[base], *package[len(base):].split(".")[1:])
    return out


def build(dest: Path = DEFAULT, root: Path = ROOT, *, expand: frozenset[str] = frozenset()) -> Path:
    """(Re)build the link tree under ``dest``; returns ``dest`` (put it on ``sys.path``).

    ``expand``: packages made real directories of per-entry links even where one link would
    do, so that a test can add a module to the tree without writing into the checkout."""
    packages = mapping(root)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    # a package whose folder is not its parent folder's child needs a place of its own
    own = {p for p in packages if "." not in p
           or packages.get(p.rsplit(".", 1)[0], Path()) / p.rsplit(".", 1)[1] != packages[p]}
    for package in sorted(own):
        target = dest.joinpath(*package.split("."))
        children = {c.split(".")[-1] for c in own
                    if c.startswith(package + ".") and c.count(".") == package.count(".") + 1}
        if not children and package not in expand:  # the whole folder, new files included
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.path.relpath(packages[package], target.parent), target_is_directory=True)
            continue
        target.mkdir(parents=True, exist_ok=True)  # entries of the folder, beside its mapped children
        for entry in packages[package].iterdir():
            if entry.name not in children and entry.name != "__pycache__":
                (target / entry.name).symlink_to(os.path.relpath(entry, target))
    return dest


def run(tool: list[str], tree: Path, root: Path = ROOT, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` or ``mypy`` against the link tree ``tree`` with ``root``'s config.

    lint-imports puts its working directory first on the import path, so it runs inside the
    tree; mypy runs in the checkout (``mypy_path`` is relative to it) unless the tree is
    elsewhere, when it is told where."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    config = str(root / "pyproject.toml")
    if tool[0] == "lint-imports":
        return subprocess.run([tool[0], "--no-cache", config, *tool[1:]], cwd=tree, env=env, text=True, **kw)  # type: ignore[call-overload, no-any-return]
    if tool[0] == "mypy":
        cmd = [sys.executable, "-m", "mypy", "--config-file", config, *tool[1:]]
        env["MYPYPATH"] = str(tree)
        return subprocess.run(cmd, cwd=root, env=env, text=True, **kw)  # type: ignore[call-overload, no-any-return]
    raise SystemExit(f"unknown tool {tool[0]!r}: lint-imports or mypy")


if __name__ == "__main__":
    tree = build()
    if len(sys.argv) > 1:
        raise SystemExit(run(sys.argv[1:], tree).returncode)
    print(tree)
