"""The sweep file, and resolving it into planned runs.

A sweep file is TOML::

    [sweep]
    samples = 200                 # per run; max_seconds / max_cost optional
    seeds = [0, 1, 2]
    problems = ["oscillator1", "feynman-I.1*", "lsrbench:/data/lsrbench#phys*", "my_problem/"]
    strategies = ["llmsr", "residuals"]
    llms = ["terms:", "sindy:", "operon:", "openai:gpt-4o-mini",
            "openai-compatible@http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct"]
    [overrides]                   # any Config section/key, applied to every run
    evaluator = { timeout = 10 }

Everything is checked here, before a single run starts: unknown keys (in ``[sweep]`` and in
the overrides, which go through ``Config``), problems (built-in names, globs over them,
``lsrbench:PATH#PATTERN``, ``llmsr:DIR``, folders with ``problem.toml`` or a folder of such
folders — each one is loaded once), strategies and model specs. Relative paths are relative
to the sweep file. The result is a ``ResolvedSweep``: the same file with every problem
spelled out (what the sweep directory keeps as ``sweep.toml``) and one ``PlannedRun`` per
cell × seed, each with the exact ``RunSpec`` and ``Config`` its run will use.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eqforge.config import Config, read_toml
from eqforge.errors import ConfigError, EqforgeError

#: what an eqforge without the strategies registry (prompts.strategy) accepts
FALLBACK_STRATEGIES = ("llmsr", "no-prior", "scores", "feedback", "residuals", "reflect",
                       "extend", "agent")
DEFAULT_STRATEGY = "llmsr"
_GLOB = set("*?[")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SweepSection(_Frozen):
    samples: int = Field(200, ge=1, description="sample budget of every run")
    max_seconds: float | None = Field(None, gt=0, description="wall-clock budget of every run")
    max_cost: float | None = Field(None, ge=0, description="spend (USD) budget of every run")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    problems: list[str] = Field(min_length=1)
    strategies: list[str] = Field(default_factory=lambda: [DEFAULT_STRATEGY], min_length=1)
    llms: list[str] = Field(min_length=1)


class SweepFile(_Frozen):
    sweep: SweepSection
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def to_toml(self) -> str:
        import tomli_w

        data = self.model_dump(mode="json", exclude_none=True)
        return tomli_w.dumps(data)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: a cell (problem, strategy, llm) and a seed."""

    problem: str
    strategy: str
    llm: str
    seed: int
    spec: dict[str, Any]  # eqforge.api.RunSpec fields
    config: dict[str, Any]  # eqforge.config.Config, dumped

    @property
    def cell(self) -> tuple[str, str, str]:
        return (self.problem, self.strategy, self.llm)

    @property
    def run_id(self) -> str:
        """The run directory's name: readable, and unique through a hash of the cell."""
        digest = hashlib.sha256(json.dumps(self.cell).encode()).hexdigest()[:6]
        parts = [_safe(short_problem(self.problem)), _safe(self.strategy), _safe(self.llm)]
        return "__".join(p[:40] for p in parts) + f"__s{self.seed}-{digest}"

    def to_json(self) -> dict[str, Any]:
        return {"problem": self.problem, "strategy": self.strategy, "llm": self.llm,
                "seed": self.seed, "spec": self.spec, "config": self.config}

    def identity(self) -> dict[str, Any]:
        """What must match for a run directory to belong to this planned run (the number of
        sandbox workers is how it runs, not what it computes)."""
        data = json.loads(json.dumps(self.to_json()))
        data["config"].get("evaluator", {}).pop("workers", None)
        return data


@dataclass(frozen=True)
class ResolvedSweep:
    file: SweepFile
    runs: list[PlannedRun]
    source: str

    @property
    def cells(self) -> list[tuple[str, str, str]]:
        return list(dict.fromkeys(r.cell for r in self.runs))


def _safe(text: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("_")
    return out or "x"


def short_problem(ref: str) -> str:
    if "#" in ref:
        return ref.rsplit("#", 1)[1].replace("/", "-")
    p = Path(ref.split(":", 1)[-1] if ref.startswith("llmsr:") else ref)
    return p.name if ("/" in ref or ref.startswith("llmsr:")) else ref


def _loc(err: Mapping[str, Any]) -> str:
    return ".".join(str(p) for p in err["loc"])


def load_sweep_file(path: str | Path) -> SweepFile:
    p = Path(path)
    try:
        raw = read_toml(p, what="sweep file")
    except IsADirectoryError:
        raise ConfigError(f"{p}: a folder without sweep.toml; give a sweep file") from None
    return parse_sweep(raw, source=str(p))


def parse_sweep(raw: dict[str, Any], *, source: str) -> SweepFile:
    try:
        return SweepFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            where = _loc(err)
            known = (SweepSection.model_fields if where.startswith("sweep.") else SweepFile.model_fields)
            msg = f"unknown key; known: {', '.join(known)}"
        raise ConfigError(f"{source}: {_loc(err)}: {msg}") from None


# -- strategies ------------------------------------------------------------------------


def known_strategies() -> tuple[str, ...]:
    """Strategy names a run accepts (the strategies registry's, template bases left out)."""
    try:
        from eqforge.prompts.strategy import load_strategy, strategy_names
    except ImportError:  # an eqforge without the strategies registry
        return FALLBACK_STRATEGIES
    return tuple(n for n in strategy_names() if not load_strategy(n).abstract)


def strategy_overrides(name: str) -> dict[str, dict[str, Any]]:
    """The Config overrides that select a strategy."""
    from eqforge.config import SamplerConfig

    if "strategy" in SamplerConfig.model_fields:
        return {"sampler": {"strategy": name}}
    if name == DEFAULT_STRATEGY:
        return {}
    raise ConfigError(f"strategy {name!r} is not available in this eqforge (only {DEFAULT_STRATEGY!r})")


# -- models ----------------------------------------------------------------------------


def parse_llm(entry: str, base: Path) -> tuple[str, dict[str, Any]]:
    """A sweep's model entry -> (``--llm`` spec, backend options).

    ``openai-compatible@URL#MODEL`` names server and model in one string; ``replay:PATH``
    paths are made absolute (relative to the sweep file)."""
    if entry.startswith("openai-compatible@"):
        url, sep, model = entry[len("openai-compatible@"):].partition("#")
        if not url or not sep or not model:
            raise ConfigError(f"llm {entry!r}: write openai-compatible@URL#MODEL, "
                              "e.g. openai-compatible@http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct")
        return "openai-compatible", {"base_url": url, "model": model}
    kind, _, arg = entry.partition(":")
    if kind == "replay" and arg:
        p = Path(arg).expanduser()
        return f"replay:{p if p.is_absolute() else (base / p).resolve()}", {}
    return entry, {}


def check_llm(spec: str, backend: dict[str, Any]) -> None:
    """Fail now (missing key, bad spec, missing file) rather than in the middle of a sweep."""
    from eqforge.agents.llm.registry import make_backend
    from eqforge.config import LLM_KINDS as KNOWN
    from eqforge.config import BackendConfig

    kind = spec.partition(":")[0]
    from eqforge.agents.classical import is_classical, parse_classical

    if is_classical(spec):  # a classical searcher: its options, and whether its extra is installed
        parse_classical(spec)
        return
    if kind not in KNOWN:
        raise ConfigError(f"llm {spec!r}: unknown kind {kind!r}; use one of: "
                          + ", ".join(f"{k}:…" for k in KNOWN)
                          + ", openai-compatible@URL#MODEL, sindy:, operon:, gplearn:")
    if kind in ("local", "vllm"):
        return  # loading a model to check its name would cost minutes; the run reports it
    make_backend(BackendConfig(spec=spec, **backend))


# -- problems --------------------------------------------------------------------------


def _builtin_names() -> list[str]:
    from eqforge.problems.registry import list_problems

    return list(list_problems())


def expand_problem(entry: str, base: Path) -> list[str]:
    """One ``problems`` entry -> problem references (each loadable by ``load_problem``)."""
    from eqforge.problems.benchmarks import LLMSR, LSRBENCH, list_lsrbench

    if entry.startswith(LSRBENCH):
        path, _, pattern = entry[len(LSRBENCH):].partition("#")
        p = Path(path).expanduser()
        path = str(p if p.is_absolute() else (base / p).resolve())
        if pattern and not (_GLOB & set(pattern)):
            return [f"{LSRBENCH}{path}#{pattern}"]
        names = list_lsrbench(path)
        if pattern:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)
                     or fnmatch.fnmatchcase(n.rsplit("/", 1)[-1], pattern)
                     or fnmatch.fnmatchcase(n, f"*/{pattern}")]
        if not names:
            raise ConfigError(f"problems: {entry!r} matches no LLM-SRBench problem at {path}")
        return [f"{LSRBENCH}{path}#{n}" for n in names]
    if entry.startswith(LLMSR):
        path, sep, name = entry[len(LLMSR):].partition("#")
        p = Path(path).expanduser()
        return [f"{LLMSR}{p if p.is_absolute() else (base / p).resolve()}{sep}{name}"]
    builtins = _builtin_names()
    if entry in builtins:
        return [entry]
    p = Path(entry).expanduser()
    p = p if p.is_absolute() else base / p
    if p.is_dir():
        if (p / "problem.toml").is_file():
            return [str(p.resolve())]
        found = sorted(str(d.resolve()) for d in p.iterdir() if (d / "problem.toml").is_file())
        if found:
            return found
        raise ConfigError(f"problems: {p}: no problem.toml in this folder or its subfolders")
    if _GLOB & set(entry):
        matched = [n for n in builtins if fnmatch.fnmatchcase(n, entry)]
        if not matched:
            raise ConfigError(f"problems: {entry!r} matches no built-in problem (see `eqforge problems list`)")
        return matched
    close = difflib.get_close_matches(entry, builtins, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else " (see `eqforge problems list`)"
    raise ConfigError(f"problems: unknown problem {entry!r}: not a built-in name, glob, "
                      f"benchmark reference or folder{hint}")


def _check_problem(ref: str, seed: int) -> None:
    from eqforge.problems.registry import load_problem

    try:
        load_problem(ref, seed=seed)
    except EqforgeError as exc:
        raise ConfigError(f"problems: {exc}") from None


# -- resolving -------------------------------------------------------------------------


def apply_overrides(config: Config, overrides: dict[str, dict[str, Any]]) -> Config:
    """``config`` with ``[overrides]`` applied; unknown sections and keys are errors."""
    data = config.model_dump()
    for section, values in overrides.items():
        if not isinstance(data.get(section), dict):
            raise ConfigError(f"overrides.{section}: unknown Config section; known: {', '.join(data)}")
        data[section].update(values)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise ConfigError(f"overrides.{_loc(err)}: {msg}") from None


def resolve(sweep: SweepFile, *, base: Path, source: str = "sweep file",
            check_problems: bool = True) -> ResolvedSweep:
    """Expand and check everything; plan every run (in file order: problem, strategy, llm, seed)."""
    s = sweep.sweep
    try:
        problems = list(dict.fromkeys(ref for entry in s.problems for ref in expand_problem(entry, base)))
        if check_problems:
            for ref in problems:
                _check_problem(ref, s.seeds[0])
        known = known_strategies()
        for name in s.strategies:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=2)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(f"strategies: unknown strategy {name!r}{hint} (known: {', '.join(known)})")
        # a replay path is made absolute in the plan and the stored sweep.toml, so continuing the
        # sweep from its directory (another base) plans the same runs
        llms = [(spec if spec.startswith("replay:") else entry, spec, backend)
                for entry in s.llms for spec, backend in [parse_llm(entry, base)]]
        for _entry, spec, backend in llms:
            check_llm(spec, backend)
        for section in ("run",):
            bad = {"seed", "out", "samples"} & set(sweep.overrides.get(section, {}))
            if bad:
                raise ConfigError(f"overrides.run.{sorted(bad)[0]}: set samples and seeds in [sweep]; "
                                  "the sweep chooses each run's directory")
        base_config = apply_overrides(Config(), sweep.overrides)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except EqforgeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    runs = []
    for problem in problems:
        for strategy in s.strategies:
            try:
                chosen = base_config.with_overrides(strategy_overrides(strategy))
            except ConfigError as exc:
                raise ConfigError(f"{source}: strategies: {exc}") from None
            for entry, spec, backend in llms:
                for seed in s.seeds:
                    config = chosen.with_overrides({"run": {
                        "samples": s.samples, "seed": seed, "max_seconds": s.max_seconds,
                        "max_cost": s.max_cost}, "llm": {"backends": [{**backend, "spec": spec}]}})
                    runs.append(PlannedRun(
                        problem=problem, strategy=strategy, llm=entry, seed=seed,
                        spec={"problem": problem, "data": None},
                        config=config.model_dump(mode="json")))
    resolved = sweep.model_copy(update={"sweep": s.model_copy(update={"problems": problems,
                                                                       "llms": [e for e, _, _ in llms]})})
    return ResolvedSweep(resolved, runs, source)
