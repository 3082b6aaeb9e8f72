"""Shared fixtures: where the read-only test material lives, and skips when it is absent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EQFORGE_SHARED", REPO.parent / "shared"))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test material {path} is absent (set EQFORGE_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def llmsr_data() -> Path:
    """Root holding oscillator1/, oscillator2/, bactgrow/, stressstrain/."""
    return _need(SHARED / "data" / "llmsr")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in _need(path).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def corpus_programs() -> list[dict]:
    return _jsonl(SHARED / "corpus" / "programs.jsonl")


@pytest.fixture(scope="session")
def hostile_programs() -> list[dict]:
    return _jsonl(SHARED / "corpus" / "hostile.jsonl")
