"""``eqforge sweep``: the command around ``spec``, ``execute`` and ``report``.

``eqforge sweep FILE --out DIR`` runs (or continues) a sweep; ``eqforge sweep DIR``
continues the sweep in ``DIR`` from its resolved ``sweep.toml``; ``eqforge sweep DIR --out
NEW`` re-runs it into ``NEW`` with a copy of its response cache (zero model calls for what
it already asked); ``--table`` only writes the tables and report of what is on disk.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from eqforge.errors import ConfigError, EqforgeError
from eqforge.textsafe import terminal_safe

log = logging.getLogger("eqforge.sweep")


def default_parallel(cores: int, workers: int) -> int:
    """Runs at once: as many as the cores give each run's sandbox workers."""
    return max(1, cores // max(1, workers))


def _progress(quiet: bool, samples: int) -> Any:
    from eqforge.sweep.progress import LiveSweepProgress, PlainSweepProgress, QuietSweepProgress

    if quiet:
        return QuietSweepProgress()
    if sys.stderr.isatty():
        return LiveSweepProgress(samples=samples)
    return PlainSweepProgress()


def sweep(source: str, *, out: str | None = None, parallel: int | None = None, ray: str | None = None,
          table: bool = False, quiet: bool = False, judge: str | None = None) -> int:
    from functools import partial

    from eqforge.sweep.report import write_outputs as _write

    write_outputs = partial(_write, judge=judge)

    src = Path(source)
    if src.is_dir():
        sweep_file = src / "sweep.toml"
        if not sweep_file.is_file():
            raise ConfigError(f"{src}: no sweep.toml here; give a sweep file or a sweep directory")
        dest = Path(out) if out else src
        if table:
            return _print_outputs(write_outputs(dest if (dest / "plan.jsonl").is_file() else src))
        if dest.resolve() != src.resolve() and (src / "cache").is_dir():
            shutil.copytree(src / "cache", dest / "cache", dirs_exist_ok=True)
    else:
        sweep_file = src
        if not out:
            raise ConfigError(f"{src}: give the sweep directory with --out DIR")
        dest = Path(out)
        if table:
            return _print_outputs(write_outputs(dest))
    from eqforge.sweep.execute import LocalExecutor, cpu_count, run_sweep
    from eqforge.sweep.spec import load_sweep_file, resolve

    resolved = resolve(load_sweep_file(sweep_file), base=sweep_file.parent.resolve(), source=str(sweep_file))
    user_workers = int(resolved.file.overrides.get("evaluator", {}).get("workers", 0) or 0)
    if ray:
        from eqforge.sweep.ray_executor import RayExecutor

        workers = user_workers or 1
        executor: Any = RayExecutor(ray, cpus_per_run=workers, parallel=parallel)
    else:
        cores = cpu_count()
        n = parallel or default_parallel(cores, user_workers)
        n = max(1, min(n, len(resolved.runs)))
        workers = user_workers or max(1, cores // n)
        executor = LocalExecutor(n)
    log.info("sweep: %d runs (%d cells x %d seeds) into %s; %s", len(resolved.runs), len(resolved.cells),
             len(resolved.file.sweep.seeds), dest,
             f"Ray at {ray}" if ray else f"{executor.capacity} at once, {workers} sandbox workers each")
    try:
        state = run_sweep(resolved, dest, executor, workers=workers,
                          progress=_progress(quiet, resolved.file.sweep.samples))
    except KeyboardInterrupt:
        write_outputs(dest)
        print(terminal_safe(f"eqforge: sweep interrupted; continue it with `eqforge sweep {dest}`"),
              file=sys.stderr)
        return 130
    finally:
        close = getattr(executor, "close", None)
        if close is not None:
            close()
    _print_outputs(write_outputs(dest))
    if state.failed or state.busy:
        first = state.failures[0] if state.failures else ""
        raise EqforgeError(f"{state.failed + state.busy} of {state.total} runs did not finish "
                           f"(first: {first}); re-run `eqforge sweep {dest}` to retry them")
    return 0


def _print_outputs(paths: dict[str, Path]) -> int:
    """Print the table and the output paths. The table holds run-derived text (notes,
    strategy and problem names, a failed run's message): shown through ``textsafe`` so a
    control sequence from a model or a program stays inert on the terminal."""
    md = paths["markdown"].read_text(encoding="utf-8", errors="replace")
    print(terminal_safe(md.split("\n# ", 1)[-1].strip()))
    print(terminal_safe("\n" + "\n".join(f"{k}: {p}" for k, p in paths.items())))
    return 0
