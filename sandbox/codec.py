"""A small, safe wire format for results coming out of a candidate's process.

The process that ran untrusted code may have been tampered with, so what it sends back is
never unpickled: it is JSON, with float arrays carried as base64 of their raw bytes, and
parsed with a size limit.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj, dtype=np.float64)
        return {"__nd__": base64.b64encode(arr.tobytes()).decode(), "shape": list(arr.shape)}
    if isinstance(obj, np.floating | np.integer | np.bool_):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _hook(obj: dict[str, Any]) -> Any:
    if "__nd__" in obj:
        raw = base64.b64decode(obj["__nd__"])
        shape = tuple(int(s) for s in obj["shape"])
        arr = np.frombuffer(raw, dtype=np.float64)
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError("array size does not match its shape")
        return arr.reshape(shape).copy()
    return obj


def encode(obj: Any) -> bytes:
    return json.dumps(obj, default=_default, allow_nan=True).encode()


def decode(data: bytes) -> Any:
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(data)} bytes exceeds the limit")
    return json.loads(data.decode(), object_hook=_hook)
