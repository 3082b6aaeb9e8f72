"""Run a command as an ordinary user (``nobody``): how the sandbox is tested without root.

CI runs as root, and root's interpreter or checkout often lives where other users cannot
reach it (``/root/.pyenv``, ``/root/src``). In a private mount namespace this helper covers
each blocking directory with an open tmpfs and binds the needed trees back in, then drops
every privilege (groups, gid, uid — no capability survives) and execs the command. The
command sees the same paths as root does.

    python tests/asuser.py COMMAND [ARGS...]
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile

NOBODY = 65534
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: bytes | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(src.encode() if src else None, dst.encode(), fstype.encode() if fstype else None, flags, data):
        raise OSError(ctypes.get_errno(), f"mount {src} on {dst}")


def _blocked(path: str) -> tuple[str, str] | None:
    """(first ancestor others cannot traverse, its child on the way to ``path``), if any."""
    here = "/"
    parts = os.path.realpath(path).split(os.sep)[1:]
    for i, part in enumerate(parts[:-1]):
        here = os.path.join(here, part)
        if not os.stat(here).st_mode & 0o001:
            return here, os.path.join(here, parts[i + 1])
    return None


def reachable(paths: list[str]) -> None:
    """Make ``paths`` (the interpreter, the checkout) traversable by others, in a private
    mount namespace only: over each blocking directory an open tmpfs, with the needed
    children bound back in."""
    if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    needed: dict[str, set[str]] = {}
    for path in paths:
        hit = _blocked(path)
        if hit:
            needed.setdefault(hit[0], set()).add(hit[1])
    for blocked, children in needed.items():
        stashes = []
        for child in sorted(children):
            fd = os.open(child, os.O_PATH)
            stash = tempfile.mkdtemp(prefix="eqforge-asuser-")
            _mount(f"/proc/self/fd/{fd}", stash, None, MS_BIND | MS_REC)
            os.close(fd)
            stashes.append((stash, child))
        _mount("tmpfs", blocked, "tmpfs", 0, b"mode=755")
        for stash, child in stashes:
            os.mkdir(child)
            _mount(stash, child, None, MS_BIND | MS_REC)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    reachable([sys.executable, here, os.environ.get("EQFORGE_SHARED", here)])
    home = tempfile.mkdtemp(prefix="eqforge-nobody-")
    os.chown(home, NOBODY, NOBODY)
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    os.environ.update(HOME=home, TMPDIR=home, EQFORGE_AS_NOBODY="1")
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
