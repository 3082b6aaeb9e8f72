"""Reading a GGUF file's metadata without loading its weights.

The backend needs a few facts before it commits to an engine: whether the file carries a
chat template (prompt style), its architecture and size (records, docs/backends.md). A
GGUF header is a flat list of typed key/value pairs; this walks it with ``struct`` and stops
as soon as the wanted keys are read, so asking costs milliseconds even for a 1 GB file and
needs neither ``gguf`` nor an engine installed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def _read_str(fh: BinaryIO) -> bytes:
    (n,) = struct.unpack("<Q", fh.read(8))
    return fh.read(n)


def _value(fh: BinaryIO, t: int, keep: bool) -> Any:
    """Read (``keep``) or skip one value of type ``t``; arrays are skipped, their length kept."""
    if t == _STRING:
        s = _read_str(fh)
        return s.decode("utf-8", "replace") if keep else None
    if t == _ARRAY:
        (et,) = struct.unpack("<I", fh.read(4))
        (n,) = struct.unpack("<Q", fh.read(8))
        if et in _SCALAR:
            fh.seek(n * struct.calcsize("<" + _SCALAR[et]), 1)
        else:
            for _ in range(n):
                _value(fh, et, False)
        return {"array_length": n} if keep else None
    fmt = "<" + _SCALAR[t]
    (v,) = struct.unpack(fmt, fh.read(struct.calcsize(fmt)))
    return v


def gguf_fields(path: Path, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """The header's values for ``keys`` (all scalar and string keys when None; arrays as
    their length). Empty when the file is not GGUF or cannot be read."""
    wanted = None if keys is None else set(keys)
    out: dict[str, Any] = {}
    try:
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                return {}
            version, n_tensors, n_kv = struct.unpack("<IQQ", fh.read(20))
            if wanted is None:
                out.update({"gguf.version": version, "gguf.tensor_count": n_tensors})
            for _ in range(n_kv):
                k = _read_str(fh).decode("utf-8", "replace")
                (t,) = struct.unpack("<I", fh.read(4))
                keep = wanted is None or k in wanted
                v = _value(fh, t, keep)
                if keep:
                    out[k] = v
                if wanted is not None and wanted <= out.keys():
                    break
    except (OSError, struct.error, KeyError):
        return out
    return out


def gguf_metadata(path: Path, key: str) -> Any:
    """One metadata value of a GGUF file, or None."""
    return gguf_fields(path, [key]).get(key)
