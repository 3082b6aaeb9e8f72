"""Which in-process engine runs a local model, and what every engine hands back.

Two engines, imported lazily (both are optional and heavy):

* ``llama-cpp`` (llama-cpp-python): reads GGUF as is; on 2 CPU cores Gemma 3 270M decodes
  ~60 tokens/s and Qwen2.5-Coder 1.5B ~9. No Linux wheel exists on the index, so it is
  compiled once (``llama_build``) and preferred whenever present.
* ``transformers``: prebuilt wheels, de-quantises GGUF to fp32; fine for Gemma 270M,
  impractical for 1.5B (>200 s per sample, 7 GB RSS).

Thread count: a setting (``engine_args.threads``). Its default is half the cores this
process may use, at least 1: measured on 2 cores with another process busy on one, 2
llama.cpp threads fell to 0.3 tokens/s while 1 thread kept 5.5-7.4 (a thread that waits for
a descheduled sibling at every barrier stalls the whole step).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from eqforge.errors import BackendError

ENGINES = ("llama-cpp", "transformers")
#: completion-style answers are one function body: a few hundred tokens at most. A sample
#: still going after this many is a model rambling, not a longer program.
BODY_TOKENS = 320


@dataclass
class Sample:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    error: str | None = None
    detail: str = ""


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """Half the usable cores, at least one (see the module docstring for the measurement)."""
    return max(1, usable_cores() // 2)


def _have(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def available_engines(path: Path) -> list[str]:
    out = []
    if path.suffix == ".gguf" and _have("llama_cpp"):
        out.append("llama-cpp")
    needs = ("transformers", "torch") + (("gguf", "accelerate") if path.suffix == ".gguf" else ())
    if _have(*needs):
        out.append("transformers")
    return out


def choose_engine(path: Path, wanted: str = "auto") -> str:
    from eqforge.agents.llm.model_files import INSTALL_HINT

    have = available_engines(path)
    if wanted in (None, "", "auto"):
        if not have:
            raise BackendError(f"no local model engine is installed: {INSTALL_HINT}")
        return have[0]  # llama-cpp first: measured faster per valid program (benchmarks/local_model.py)
    if wanted not in ENGINES:
        raise BackendError(f"unknown local engine {wanted!r}; use one of: {', '.join(ENGINES)}")
    if wanted not in have:
        hint = ("python -m eqforge.agents.llm.llama_build (compiles it once, see docs/backends.md)"
                if wanted == "llama-cpp" else 'pip install -e ".[local]"')
        raise BackendError(f"the {wanted} engine is not available for {path.name}: {hint}")
    return wanted
