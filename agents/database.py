"""The experience buffer: FunSearch's programs database, as LLM-SR uses it.

Programs live on islands that evolve independently. Within an island, programs with the
same score form a cluster; a prompt draws clusters by a softmax over their scores with a
temperature that decays over each period of samples (so sampling sharpens towards the
best as the island fills), and within a cluster shorter programs are preferred.
Periodically the worse half of the islands is wiped and re-seeded with the best program
of a surviving island, which keeps diversity without losing progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.special

from eqforge.config import DatabaseConfig
from eqforge.prompts.parsing import normalize


@dataclass(frozen=True)
class StoredProgram:
    id: str
    code: str
    score: float
    params: tuple[float, ...] | None = None
    length: int = 0


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if not np.all(np.isfinite(logits)):
        raise ValueError(f"non-finite logits {logits}")
    probs = scipy.special.softmax(logits / temperature)
    # Make the probabilities sum to exactly one (np.random.choice is strict about it).
    i = int(np.argmax(probs))
    probs[i] = 1.0 - (np.sum(probs[:i]) + np.sum(probs[i + 1 :]))
    return probs


@dataclass
class Cluster:
    score: float
    programs: list[StoredProgram] = field(default_factory=list)

    def sample(self, rng: np.random.Generator) -> StoredProgram:
        lengths = np.array([p.length for p in self.programs], dtype=np.float64)
        normalized = (lengths - lengths.min()) / (lengths.max() + 1e-6)
        probs = _softmax(-normalized, temperature=1.0)
        return self.programs[int(rng.choice(len(self.programs), p=probs))]


class Island:
    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self.clusters: dict[float, Cluster] = {}
        self.num_programs = 0
        self.ids: set[str] = set()

    @property
    def best(self) -> StoredProgram | None:
        if not self.clusters:
            return None
        top = self.clusters[max(self.clusters)]
        return min(top.programs, key=lambda p: p.length)

    def register(self, program: StoredProgram) -> None:
        if program.id in self.ids:
            return
        self.ids.add(program.id)
        self.clusters.setdefault(program.score, Cluster(program.score)).programs.append(program)
        self.num_programs += 1

    def sample(self, rng: np.random.Generator) -> list[StoredProgram]:
        """Programs for one prompt, sorted worst to best."""
        scores = np.array(list(self.clusters), dtype=np.float64)
        period = self.config.cluster_temperature_period
        temperature = self.config.cluster_temperature_init * (
            1 - (self.num_programs % period) / period
        )
        probs = _softmax(scores, max(temperature, 1e-12))
        k = min(len(scores), self.config.functions_per_prompt)
        nonzero = int(np.count_nonzero(probs))
        replace = nonzero < k
        idx = rng.choice(len(scores), size=k, p=probs, replace=replace)
        chosen: dict[str, StoredProgram] = {}
        for i in idx:
            prog = self.clusters[float(scores[i])].sample(rng)
            chosen.setdefault(prog.id, prog)
        return sorted(chosen.values(), key=lambda p: p.score)


class ProgramsDatabase:
    def __init__(self, config: DatabaseConfig, seed: int = 0) -> None:
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.islands = [Island(config) for _ in range(config.islands)]
        self.reset_at = 0  # samples done at the last reset
        self.last_reset = time.monotonic()

    # -- registering ----------------------------------------------------------------------
    def register(self, program: StoredProgram, island: int | None) -> None:
        """Add a scored program to one island, or to all of them (the seed program)."""
        if not program.length:
            program = StoredProgram(program.id, program.code, program.score, program.params,
                                    len(normalize(program.code)))
        targets = range(len(self.islands)) if island is None else [island]
        for i in targets:
            self.islands[i].register(program)

    # -- sampling -------------------------------------------------------------------------
    def sample(self) -> tuple[int, list[StoredProgram]]:
        """Pick an island uniformly, then programs from it for a prompt."""
        nonempty = [i for i, isl in enumerate(self.islands) if isl.clusters]
        if not nonempty:
            raise RuntimeError("the database is empty; register the seed program first")
        island = int(self.rng.integers(len(self.islands)))
        if not self.islands[island].clusters:
            island = int(self.rng.choice(nonempty))
        return island, self.islands[island].sample(self.rng)

    @property
    def best(self) -> StoredProgram | None:
        bests = [b for b in (isl.best for isl in self.islands) if b is not None]
        return max(bests, key=lambda p: p.score) if bests else None

    # -- resets ---------------------------------------------------------------------------
    def reset_due(self, samples_done: int) -> bool:
        """Whether the worse half is due for a reset after ``samples_done`` samples: every
        ``reset_period_samples`` (the default; a function of the records, so a replay or a
        resume resets where the original did) or, if set, every ``reset_period_seconds``."""
        cfg = self.config
        if cfg.reset_period_samples and samples_done - self.reset_at >= cfg.reset_period_samples:
            return True
        return bool(
            cfg.reset_period_seconds
            and time.monotonic() - self.last_reset >= cfg.reset_period_seconds
        )

    def reset_islands(self, samples_done: int = 0) -> list[tuple[int, str]]:
        """Reset the worse half; returns (island, founder id) pairs for the records."""
        best_scores = np.array(
            [isl.best.score if isl.best else -np.inf for isl in self.islands], dtype=np.float64
        )
        noise = self.rng.standard_normal(len(best_scores)) * 1e-6
        order = np.argsort(best_scores + noise)
        n_reset = len(self.islands) // 2
        reset, keep = order[:n_reset], order[n_reset:]
        events = []
        for i in reset:
            founder_island = int(self.rng.choice(keep))
            founder = self.islands[founder_island].best
            self.islands[int(i)] = Island(self.config)
            if founder is not None:
                self.islands[int(i)].register(founder)
                events.append((int(i), founder.id))
        self.reset_at = samples_done
        self.last_reset = time.monotonic()
        return events

    def apply_reset(self, events: list[tuple[int, str]], programs: dict[str, StoredProgram],
                    samples_done: int = 0) -> None:
        """Replay a recorded reset (used when resuming a run)."""
        for island, founder_id in events:
            self.islands[island] = Island(self.config)
            if founder_id in programs:
                self.islands[island].register(programs[founder_id])
        self.reset_at = samples_done
        self.last_reset = time.monotonic()
