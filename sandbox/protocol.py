"""Length-prefixed pickle frames between the main process and its trusted zygotes.

Only trusted processes speak this protocol (the zygote never runs candidate code itself;
the forked child that does closes these descriptors first), so pickle is acceptable here.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import pickle
import struct
from typing import Any

_HEADER = struct.Struct("!Q")  # pickle length
PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def widen(fd: int, size: int = PIPE_BYTES) -> None:
    """Make a pipe hold a whole typical result (predictions on every split), best effort.

    With the default 64 KiB the writer waits for the reader to drain each piece, a
    round trip of context switches for every 64 KiB of a few hundred.
    """
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
    except OSError:
        pass  # the default size works too, in more steps


def _read_exact(fd: int, n: int) -> bytearray:
    """Read exactly ``n`` bytes into one buffer (no intermediate chunks left on the heap)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if not k:
            raise EOFError("peer closed the pipe")
        got += k
    view.release()
    return buf


def zero(buf: bytearray | memoryview) -> None:
    """Overwrite a buffer in place, so that what it held cannot be found there later."""
    if len(buf):
        ctypes.memset((ctypes.c_char * len(buf)).from_buffer(buf), 0, len(buf))


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def send(fd: int, obj: Any) -> None:
    """One message."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    write_all(fd, _HEADER.pack(len(data)))
    write_all(fd, data)


def recv(fd: int, scrub: bool = False) -> Any:
    """One message. ``scrub`` zeroes the raw frame after decoding it.

    The zygote receives the training targets this way; scrubbing keeps a copy of them from
    lingering in freed heap memory, where a candidate reading uninitialised memory
    (``np.empty``) in a scoring child could find it.
    """
    (n,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    buf = _read_exact(fd, n)
    try:
        return pickle.loads(buf)
    finally:
        if scrub:
            zero(buf)


_FRAME = struct.Struct("!I")


def write_frame(fd: int, data: bytes) -> None:
    """A length-prefixed frame (the candidate boundary; its contents are ``messages``)."""
    write_all(fd, _FRAME.pack(len(data)) + data if len(data) < 1 << 16 else _FRAME.pack(len(data)))
    if len(data) >= 1 << 16:
        write_all(fd, data)


def read_frame(fd: int) -> bytearray | None:
    """One frame, blocking (used inside the candidate process); None at end of file."""
    try:
        (n,) = _FRAME.unpack(_read_exact(fd, _FRAME.size))
        return _read_exact(fd, n)
    except EOFError:
        return None
