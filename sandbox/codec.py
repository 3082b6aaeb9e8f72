"""A small, safe wire format for results coming out of a candidate's process.

The process that ran untrusted code may have been tampered with, so what it sends back is
never unpickled. A message is a JSON header followed by the raw bytes of its float arrays:

    b"EQF2" | header length (8 bytes, big-endian) | JSON header | array bytes ...

In the header each array is ``{"__nd__": [offset, count], "shape": [...]}``, pointing into
the bytes after the header. Predictions are most of what a result carries (tens of
thousands of floats per split), and copying their bytes costs a small fraction of what
base64 inside JSON did, on both ends. Decoding checks the size limit, the magic, that
every array lies inside the message and matches its shape, and nothing else is trusted.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_MAGIC = b"EQF2"
_LENGTH = struct.Struct("!Q")
_ITEM = 8  # float64


def encode(obj: Any) -> bytes:
    chunks: list[bytes] = []
    offset = 0

    def default(value: Any) -> Any:
        nonlocal offset
        if isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value, dtype=np.float64)
            chunks.append(arr.tobytes())
            entry = {"__nd__": [offset, int(arr.size)], "shape": list(arr.shape)}
            offset += arr.size * _ITEM
            return entry
        if isinstance(value, np.floating | np.integer | np.bool_):
            return value.item()
        raise TypeError(f"cannot encode {type(value).__name__}")

    header = json.dumps(obj, default=default, allow_nan=True).encode()
    return b"".join([_MAGIC, _LENGTH.pack(len(header)), header, *chunks])


def decode(data: bytes | bytearray, arrays: bool = True) -> Any:
    """The message in ``data``; with ``arrays`` False, arrays are checked but come back as None.

    Without arrays it reads only the header: how the scorer learns a result's status
    without making (and leaving in its freed memory) a copy of the predictions.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(data)} bytes exceeds the limit")
    start = len(_MAGIC) + _LENGTH.size
    if len(data) < start or data[: len(_MAGIC)] != _MAGIC:
        raise ValueError("not an eqforge result message")
    (n,) = _LENGTH.unpack_from(data, len(_MAGIC))
    if n > len(data) - start:
        raise ValueError("header runs past the end of the message")
    body = memoryview(data)[start + n:]

    def hook(obj: dict[str, Any]) -> Any:
        if "__nd__" not in obj:
            return obj
        ref, shape = obj["__nd__"], obj.get("shape")
        if (not isinstance(ref, list) or len(ref) != 2 or not all(type(v) is int and v >= 0 for v in ref)
                or not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape)):
            raise ValueError("malformed array reference")
        offset, count = ref
        if count != int(np.prod(shape, dtype=np.int64)) or offset + count * _ITEM > len(body):
            raise ValueError("array does not fit the message or its shape")
        if not arrays:
            return None
        return np.frombuffer(body, dtype=np.float64, count=count, offset=offset).reshape(shape).copy()

    return json.loads(bytes(data[start:start + n]).decode(), object_hook=hook)
