"""Length-prefixed pickle frames between the main process and its trusted zygotes.

Only trusted processes speak this protocol (the zygote never runs candidate code itself;
the forked child that does closes these descriptors first), so pickle is acceptable here.
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

_HEADER = struct.Struct("!Q")


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


def send(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


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
            buf[:] = bytes(n)
