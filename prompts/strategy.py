"""Prompting strategies as data: ``prompts/strategies/NAME/strategy.toml`` plus templates.

A study of *how* to prompt should be a folder, not a fork: a strategy declares in a small
TOML which feedback blocks its prompts carry (scores, failures, residuals, memory), which
ablation switches it flips (anonymised problem, no fitting, no refinement, one-term
extension) and where its templates come from (its own folder, falling back along ``base``
to other strategies, ending at ``llmsr``). A strategy that only changes text needs no code.

Template files in a strategy folder (all optional when ``base`` provides them):
``completion.txt`` (raw text a base model continues), ``system.txt`` and ``user.txt`` (chat
form), ``docstring.txt`` (the docstring of the first version), ``reflect_*.txt`` (the
reflection request) and ``agent_*.txt`` (the tool-using agent).
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eqforge.errors import ConfigError

Block = Literal["scores", "failures", "residuals", "memory"]


class Strategy(BaseModel):
    """The validated ``strategy.toml`` of one strategy (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    description: str
    source: str = Field("", description="where the idea comes from (paper, section)")
    kind: Literal["prompt", "agent"] = "prompt"
    abstract: bool = Field(False, description="a template base for other strategies, not run itself")
    base: str | None = Field("llmsr", description="strategy whose templates fill the gaps")
    blocks: tuple[Block, ...] = ()
    anonymise: bool = Field(False, description="withhold the problem's wording; x0.. and y")
    anonymous_description: str = Field(
        "Find the mathematical function skeleton that represents $output, given data on $inputs.",
        description="the task text shown instead of the problem's description when anonymised",
    )
    fit: bool = Field(True, description="False: params are not fitted (all 1.0)")
    refine: bool = Field(True, description="False: every prompt shows only the seed program")
    extend: bool = Field(False, description="the prompt ends inside the best return expression")
    reflect_every: int = Field(0, ge=0, description="samples between reflections (0: never)")
    memory_size: int = Field(6, ge=1, description="insights kept in the reflective memory")
    max_failures: int = Field(4, ge=1, description="distinct failure reasons shown")
    failure_window: int = Field(12, ge=1, description="recent failures of the island considered")


def _root() -> Traversable:
    return resources.files("eqforge.prompts") / "strategies"


def strategy_names() -> list[str]:
    return sorted(p.name for p in _root().iterdir() if (p / "strategy.toml").is_file())


@lru_cache(maxsize=32)
def load_strategy(name: str) -> Strategy:
    """Read and validate a shipped strategy; a one-line error names what is wrong."""
    folder = _root() / name
    path = folder / "strategy.toml"
    if not path.is_file():
        raise ConfigError(f"unknown strategy {name!r}; available: {', '.join(strategy_names())}"
                          " (see `eqforge strategies list`)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        strategy = Strategy.model_validate({**raw, "name": name})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"prompts/strategies/{name}/strategy.toml: invalid TOML ({exc})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"prompts/strategies/{name}/strategy.toml: {loc}: {err['msg']}") from None
    if name != "llmsr" and strategy.base is None:
        raise ConfigError(f"prompts/strategies/{name}/strategy.toml: base must name a strategy")
    return strategy


def runnable_strategy(name: str) -> Strategy:
    """``load_strategy`` for a run: template bases (``abstract``) are refused."""
    s = load_strategy(name)
    if s.abstract:
        raise ConfigError(f"strategy {name!r} is a template base for other strategies; "
                          f"run one of: {', '.join(n for n in strategy_names() if not load_strategy(n).abstract)}")
    return s


@lru_cache(maxsize=256)
def strategy_template(name: str, part: str) -> str:
    """The text of ``part`` (e.g. ``completion``) for a strategy, following ``base``.

    ``extend_user`` falls back to ``user`` at the end of the chain.
    """
    if part == "extend_user" and not _has_part(name, part):
        part = "user"
    seen: list[str] = []
    current: str | None = name
    while current is not None:
        if current in seen:
            raise ConfigError(f"strategy {name!r}: base strategies form a cycle {seen}")
        seen.append(current)
        path = _root() / current / f"{part}.txt"
        if path.is_file():
            return path.read_text(encoding="utf-8")
        current = load_strategy(current).base if current != "llmsr" else None
    raise ConfigError(f"strategy {name!r} has no {part}.txt template (looked in {', '.join(seen)})")


def _has_part(name: str, part: str) -> bool:
    current: str | None = name
    for _ in range(16):
        if current is None:
            return False
        if (_root() / current / f"{part}.txt").is_file():
            return True
        current = load_strategy(current).base if current != "llmsr" else None
    return False


def describe_strategy(name: str) -> str:
    """What ``eqforge strategies show NAME`` prints."""
    s = load_strategy(name)
    lines = [f"{name}: {' '.join(s.description.split())}"]
    if s.source:
        lines.append(f"source: {' '.join(s.source.split())}")
    lines.append(f"kind: {s.kind}" + (f" (templates fall back to {s.base})" if s.base and name != "llmsr" else ""))
    switches = [f"blocks={','.join(s.blocks)}" if s.blocks else "",
                "anonymised" if s.anonymise else "", "" if s.fit else "no fitting",
                "" if s.refine else "no refinement", "extend" if s.extend else "",
                f"reflect every {s.reflect_every} samples (memory {s.memory_size})"
                if s.reflect_every else ""]
    if any(switches):
        lines.append("settings: " + "; ".join(x for x in switches if x))
    return "\n".join(lines)
