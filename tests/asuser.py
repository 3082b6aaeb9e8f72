"""Run a command as an ordinary user (``nobody``): how the sandbox is tested without root.

CI runs as root, and root's interpreter often lives where other users cannot reach it
(``/root/.pyenv``). In a private mount namespace this helper lays the interpreter's tree over
an open copy of the blocking directory, then drops every privilege (groups, gid, uid — no
capability survives) and execs the command. The command sees the same paths as root does.

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


def reachable_interpreter() -> None:
    """Make sys.executable's real path traversable by others, in this mount namespace only."""
    real = os.path.realpath(sys.executable)
    path, blocked = "/", None
    for part in real.split(os.sep)[1:-1]:
        path = os.path.join(path, part)
        if not os.stat(path).st_mode & 0o001:
            blocked = path
            break
    if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    if blocked is None:
        return
    keep = os.path.join(blocked, os.path.relpath(real, blocked).split(os.sep)[0])
    fd = os.open(keep, os.O_PATH)
    stash = tempfile.mkdtemp(prefix="eqforge-asuser-")
    _mount(f"/proc/self/fd/{fd}", stash, None, MS_BIND | MS_REC)
    _mount("tmpfs", blocked, "tmpfs", 0, b"mode=755")
    os.mkdir(keep)
    _mount(stash, keep, None, MS_BIND | MS_REC)


def main() -> None:
    reachable_interpreter()
    home = tempfile.mkdtemp(prefix="eqforge-nobody-")
    os.chown(home, NOBODY, NOBODY)
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    os.environ.update(HOME=home, TMPDIR=home, EQFORGE_AS_NOBODY="1")
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
