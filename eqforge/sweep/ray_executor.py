"""Running a sweep's runs as Ray tasks (``eqforge sweep … --ray ADDRESS``).

Each run is one task declaring the CPUs its sandbox workers use (``num_cpus``), in a fresh
worker process (``max_calls=1``: a run's sandbox pool and model client never outlive it),
never retried by Ray (an interrupted run is resumed from its records by the next
``eqforge sweep``, which is exact; a blind retry would not be). The task runs the same
``worker.run_planned`` as a local process, writing into the run's directory, so results land
in the same sweep layout and table. On a multi-node cluster the sweep directory must be on a
filesystem every node sees at the same path (the task says so when it does not).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from eqforge.sandbox.distributed import connect, import_ray


def _run_task(run_dir: str, workers: int) -> tuple[int, str]:
    from eqforge.errors import EqforgeError
    from eqforge.sweep.worker import BUSY, FAILED, OK, PLAN, RunBusy, run_planned

    if not (Path(run_dir) / PLAN).is_file():
        return FAILED, (f"{run_dir} is not visible on node {socket.gethostname()}: put the sweep "
                        "directory on a filesystem every node shares")
    try:
        run_planned(run_dir, workers=workers)
    except RunBusy as exc:
        return BUSY, str(exc)
    except EqforgeError as exc:
        return FAILED, str(exc)
    except Exception as exc:  # noqa: BLE001 - report, do not lose the sweep
        return FAILED, f"{type(exc).__name__}: {exc}"
    return OK, ""


class RayExecutor:
    """The ``execute.Executor`` interface over Ray tasks."""

    def __init__(self, address: str, *, cpus_per_run: int = 1, parallel: int | None = None,
                 num_cpus: int | None = None) -> None:
        self.ray = import_ray()
        self.address = address
        self._owns = connect(address, num_cpus=num_cpus)
        cluster_cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.capacity = parallel or max(1, cluster_cpus // max(1, cpus_per_run))
        self._remote = self.ray.remote(num_cpus=cpus_per_run, max_calls=1, max_retries=0)(_run_task)
        self.refs: dict[Any, Path] = {}

    def start(self, run_dir: Path, workers: int) -> None:
        self.refs[self._remote.remote(str(run_dir), workers)] = run_dir

    def poll(self, timeout: float) -> list[tuple[Path, int, str]]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=timeout)
        out = []
        for ref in ready:
            run_dir = self.refs.pop(ref)
            try:
                rc, message = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a lost worker or node fails this run only
                rc, message = 1, f"Ray task failed: {type(exc).__name__}: {exc}"
            out.append((run_dir, rc, message))
        return out

    def stop(self) -> None:
        for ref in list(self.refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - it is going away either way
                pass
        self.refs.clear()

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
