"""The zygote's walls: namespaces, an empty read-only root, and what candidates can be given.

As root the zygote enters new network and mount namespaces (no interface is up, so no
connection can be made; mounts made here are invisible outside). As an ordinary user it
first enters a new *user* namespace — where it is root over nothing but itself — together
with network, mount and IPC namespaces, which unprivileged users may create on most
kernels. Either way it then mounts an empty read-only tmpfs as the root candidates are
chrooted into, and (after its probes, which fork) enters a new PID namespace, so that the
factory it forks next is that namespace's init: candidates cannot even name a process
outside it, and every one of them dies with the factory.

``probe`` finds, in throwaway children, which per-candidate confinements the kernel grants:
chroot, a uid change (root only: a user namespace maps one uid), a new IPC namespace and
the seccomp filter. ``layers`` (reported to the main process) says what holds.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any

from eqforge.sandbox import runtime, seccomp

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REC, MS_PRIVATE = 0x4000, 0x40000


def _unshare(flags: int) -> bool:
    return runtime.libc().unshare(flags) == 0


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter(isolate_network: bool = True) -> dict[str, Any]:
    """Enter the zygote's namespaces; what holds, as layer -> state."""
    layers: dict[str, Any] = {"user": "root" if os.geteuid() == 0 else "none"}
    net = CLONE_NEWNET if isolate_network else 0
    if os.geteuid() != 0:
        uid, gid = os.getuid(), os.getgid()
        if _unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC | net):
            try:
                _write("/proc/self/setgroups", "deny")
                _write("/proc/self/uid_map", f"0 {uid} 1")
                _write("/proc/self/gid_map", f"0 {gid} 1")
                layers["user"] = "userns"
            except OSError:
                layers["user"] = "userns (unmapped)"
            layers["network"] = "netns" if net else "off"
            layers["mount"] = _private_mounts()
            return layers
        layers["network"] = "none" if net else "off"
        layers["mount"] = "none"
        return layers
    layers["network"] = ("netns" if _unshare(CLONE_NEWNET) else "none") if net else "off"
    layers["mount"] = _private_mounts() if _unshare(CLONE_NEWNS) else "none"
    return layers


def _private_mounts() -> str:
    libc = runtime.libc()
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return "shared"
    return "private"


@dataclass(frozen=True)
class Jail:
    path: str
    kind: str  # "tmpfs" (an empty read-only mount) or "dir" (an empty mode-0555 directory)


def jail(private_mounts: bool) -> Jail | None:
    """The empty directory candidates are chrooted into, read-only when mounts are private."""
    path = os.path.abspath("jail")
    try:
        os.mkdir(path, 0o555)
    except FileExistsError:
        pass
    except OSError:
        return None
    if private_mounts:
        libc = runtime.libc()
        flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
        if libc.mount(b"none", path.encode(), b"tmpfs", flags, b"size=4k,mode=555") == 0:
            return Jail(path, "tmpfs")
    return Jail(path, "dir")


def probe(jail_path: str | None, uid: int) -> dict[str, bool]:
    """Which candidate confinements the kernel grants here, each tried in a throwaway child."""

    def attempt(body: Any) -> bool:
        pid = os.fork()
        if pid == 0:
            try:
                body()
                os._exit(0)
            except BaseException:  # noqa: BLE001 - the probe only reports yes/no
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0

    parent = os.getpid()

    def chroot_only() -> None:
        runtime.confine(jail_path, None, parent)

    def uid_change() -> None:
        runtime.confine(None, uid, parent)

    def ipc() -> None:
        if not _unshare(CLONE_NEWIPC):
            raise OSError("unshare(CLONE_NEWIPC)")

    return {
        "chroot": bool(jail_path) and attempt(chroot_only),
        "uid": attempt(uid_change),
        "ipc": attempt(ipc),
        "seccomp": seccomp.available() and attempt(seccomp.install),
    }


def new_pid_namespace() -> bool:
    """Make the next child of this process init of a new PID namespace (call after forking
    anything else: once that init exits, this process can fork no more)."""
    return _unshare(CLONE_NEWPID)
