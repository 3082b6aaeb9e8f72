"""Per-zygote control groups: a process-count cap, a memory cap, OOM detection, kill-all.

Rlimits are per process and root ignores ``RLIMIT_NPROC``, so a fork bomb or a process that
escapes its process group would not be contained by them alone. Each zygote (and therefore
every candidate it forks) is put in its own cgroup with a small ``pids.max`` and a memory
limit; the cgroup lets the sandbox tell an out-of-memory kill from other ``SIGKILL``\\ s, and
kill everything a zygote ever started when it is retired, whatever process group or session
those processes moved to.

Both hierarchies are handled: cgroup v1 (separate ``pids`` and ``memory`` controllers, the
common case in containers) and v2 (one unified tree, which needs the controllers enabled in
the parent's ``cgroup.subtree_control``). When neither is writable (not root, read-only
``/sys``, no delegation) ``CgroupSet.create`` returns ``None`` after logging a warning once,
and the sandbox relies on rlimits (``RLIMIT_NPROC`` is effective for the unprivileged uid
candidates run as).
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
PREFIX = "eqforge-"
_warned = False


def _own_path(controller: str | None) -> str:
    """This process's cgroup path for a v1 controller (or the v2 path when None)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controller is None and controllers == "":
            return path
        if controller is not None and controller in controllers.split(","):
            return path
    return "/"


def version() -> int:
    """2 for a pure unified hierarchy, 1 for v1 controllers, 0 when neither is mounted."""
    if (ROOT / "cgroup.controllers").exists():
        return 2
    if (ROOT / "pids" / "tasks").exists() or (ROOT / "memory" / "tasks").exists():
        return 1
    return 0


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read(path: Path) -> str:
    with open(path) as fh:
        return fh.read()


def _procs(directory: Path) -> list[int]:
    try:
        return [int(p) for p in _read(directory / "cgroup.procs").split()]
    except (OSError, ValueError):
        return []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_and_remove(directory: Path, timeout: float = 5.0) -> bool:
    """Kill every process in ``directory`` (a leaf cgroup) and remove it."""
    deadline = time.monotonic() + timeout
    kill_file = directory / "cgroup.kill"
    while True:
        pids = _procs(directory)
        if not pids:
            break
        if kill_file.exists():
            try:
                _write(kill_file, "1")
            except OSError:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    while True:
        try:
            directory.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            # A killed process is removed from the cgroup only once it has been reaped.
            if time.monotonic() > deadline:
                log.warning("could not remove cgroup %s", directory)
                return False
            time.sleep(0.02)


@dataclass
class CgroupSet:
    """The cgroup directories of one zygote (one per v1 controller, or one v2 directory)."""

    version: int
    dirs: dict[str, Path] = field(default_factory=dict)  # "pids"/"memory" (v1) or "unified"

    # creation ----------------------------------------------------------------------------
    @classmethod
    def create(cls, label: str, pids_max: int) -> CgroupSet | None:
        """Make the cgroups for one zygote, or None (with a warning, once) when impossible."""
        global _warned
        ver = version()
        name = f"{PREFIX}{os.getpid()}-{label}-{uuid.uuid4().hex[:8]}"
        made = cls(ver)
        try:
            if ver == 1:
                for ctrl in ("pids", "memory"):
                    parent = ROOT / ctrl / _own_path(ctrl).lstrip("/")
                    _sweep(parent)
                    d = parent / name
                    d.mkdir()
                    made.dirs[ctrl] = d
                _write(made.dirs["pids"] / "pids.max", str(pids_max))
            elif ver == 2:
                parent = ROOT / _own_path(None).lstrip("/")
                _sweep(parent)
                _enable_v2_controllers(parent)
                d = parent / name
                d.mkdir()
                made.dirs["unified"] = d
                _write(d / "pids.max", str(pids_max))
            else:
                raise OSError("no cgroup hierarchy is mounted")
        except OSError as exc:
            made.close()
            if not _warned:
                _warned = True
                log.warning(
                    "sandbox: cgroups unavailable (%s); relying on rlimits for process and "
                    "memory limits", exc,
                )
            return None
        return made

    # use ---------------------------------------------------------------------------------
    def add(self, pid: int) -> None:
        for d in self.dirs.values():
            _write(d / "cgroup.procs", str(pid))

    def set_memory_limit(self, limit: int) -> None:
        """Cap the memory (RAM, and swap where accounted) of everything in the group."""
        if self.version == 1:
            d = self.dirs["memory"]
            _write(d / "memory.limit_in_bytes", str(limit))
            try:
                _write(d / "memory.memsw.limit_in_bytes", str(limit))
            except OSError:
                pass  # no swap accounting: nothing more to cap
        else:
            d = self.dirs["unified"]
            _write(d / "memory.max", str(limit))
            try:
                _write(d / "memory.swap.max", "0")
            except OSError:
                pass

    @property
    def procs_file(self) -> str:
        d = self.dirs.get("pids") or self.dirs.get("unified")
        return str(d / "cgroup.procs") if d else ""

    @property
    def oom_file(self) -> str:
        """The file whose ``oom_kill`` counter grows when the kernel OOM-kills a member."""
        if self.version == 1:
            return str(self.dirs["memory"] / "memory.oom_control")
        return str(self.dirs["unified"] / "memory.events")

    def close(self) -> None:
        """Kill whatever is still inside and remove the directories."""
        for d in self.dirs.values():
            _kill_and_remove(d)
        self.dirs.clear()


def oom_kills(oom_file: str) -> int:
    """The ``oom_kill`` count in a memory.oom_control (v1) or memory.events (v2) file."""
    if not oom_file:
        return 0
    try:
        for line in _read(Path(oom_file)).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _enable_v2_controllers(parent: Path) -> None:
    have = set(_read(parent / "cgroup.subtree_control").split())
    missing = [c for c in ("pids", "memory") if c not in have]
    if missing:
        # Fails with EBUSY when the parent itself holds processes (the "no internal
        # processes" rule); then cgroups are unavailable to us and we degrade.
        _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


def _sweep(parent: Path) -> None:
    """Remove cgroups left by eqforge processes that died without closing their pools."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for d in entries:
        if not d.name.startswith(PREFIX) or not d.is_dir():
            continue
        try:
            owner = int(d.name[len(PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if owner != os.getpid() and not _pid_alive(owner):
            _kill_and_remove(d, timeout=1.0)
