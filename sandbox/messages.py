"""Every message that crosses into or out of the sandbox: a few frozen, versioned types.

Two boundaries, two encodings:

* **trusted ↔ candidate** (the zygote and the confined child that runs a program): ``Call``
  going in, ``Reply`` coming out, as a frame the untrusted side can neither bloat nor
  bend — never pickle::

      b"EQF" | version (1 byte) | header length (4 bytes) | JSON header | float64 bytes

  The header names the message type, its scalar fields and, for each array, its name and
  shape; the bytes that follow hold exactly the arrays' elements, in order. ``decode``
  checks the header size (``MAX_HEADER_BYTES``), every shape entry (Python ints, computed
  without overflow), the total element count (``MAX_ELEMENTS``), that the frame is exactly
  as long as its header says, and — given ``expect`` — that each array has the shape that
  was asked for. Any failure, whatever exception it would have been, is ``BadMessage``.

* **main process ↔ zygote ↔ factory** (all trusted, none runs candidate code): ``Setup``,
  ``TrustedData``, ``Job``, ``Outcome`` and the factory's ``Spawn``/``Reap``, pickled by
  ``protocol``. The sandbox reads only these fields; what the evaluator puts in ``options``
  and ``payload`` is the evaluator's business, typed there (``evaluator.fit_job``).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_ELEMENTS = 8 * 1024 * 1024  # 64 MiB of float64 in one frame
MAX_FRAME_BYTES = 8 + MAX_HEADER_BYTES + 8 * MAX_ELEMENTS
MAX_TEXT = 16 * 1024
_PREFIX = struct.Struct("!3sBI")
_MAGIC = b"EQF"
_SCALARS = (bool, int, float, str)


class BadMessage(ValueError):
    """A frame that is not a well-formed message of the expected type and shape."""


# -- trusted <-> candidate ------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """A request to the candidate's process: an operation, small scalars, float arrays."""

    op: str
    args: Mapping[str, bool | int | float | str] = field(default_factory=dict)
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """The candidate process's answer: arrays on success, a reason when it failed."""

    ok: bool
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    text: str = ""
    reason: str = ""
    detail: str = ""


_TYPES: dict[str, type] = {"Call": Call, "Reply": Reply}


_ENCODED: dict[tuple, bytes] = {}  # header bytes by content: a fit repeats a few headers thousands of times
_PARSED: dict[bytes, tuple] = {}  # checked header contents by header bytes, likewise
_CACHE_LIMIT = 512


def encode(msg: Call | Reply) -> bytes:
    kind = type(msg).__name__
    arrays = [(str(k), np.ascontiguousarray(v, dtype=np.float64)) for k, v in msg.arrays.items()]
    if isinstance(msg, Call):
        args = tuple((str(k), v) for k, v in msg.args.items() if isinstance(v, _SCALARS))
        fields_key: tuple = ("op", msg.op, args)
    else:
        fields_key = (msg.ok, msg.text, msg.reason, msg.detail)
    key = (kind, fields_key, tuple((k, a.shape) for k, a in arrays))
    header = _ENCODED.get(key)
    if header is None:
        if isinstance(msg, Call):
            fields_: dict[str, Any] = {"op": msg.op, "args": dict(args)}
        else:
            fields_ = {"ok": msg.ok, "text": msg.text, "reason": msg.reason, "detail": msg.detail}
        header = json.dumps({"type": kind, "fields": fields_,
                             "arrays": [[k, [int(s) for s in a.shape]] for k, a in arrays]},
                            allow_nan=True).encode()
        if len(header) > MAX_HEADER_BYTES:
            raise BadMessage(f"header of {len(header)} bytes")
        if len(_ENCODED) < _CACHE_LIMIT:
            _ENCODED[key] = header
    return b"".join([_PREFIX.pack(_MAGIC, VERSION, len(header)), header, *(a.tobytes() for _, a in arrays)])


def check_prefix(data: bytes | bytearray | memoryview) -> None:
    """Check a frame's first bytes (magic, version, header length) before reading the rest."""
    if len(data) < _PREFIX.size:
        return
    magic, version, n = _PREFIX.unpack_from(data, 0)
    if magic != _MAGIC or version != VERSION:
        raise BadMessage("not an eqforge message of this version")
    if n > MAX_HEADER_BYTES:
        raise BadMessage(f"oversized header ({n} bytes)")


def decode(data: bytes | bytearray | memoryview, kind: type, expect: Mapping[str, tuple[int, ...]] | None = None,
           ) -> Any:
    """The ``kind`` message in ``data``, checked; ``expect`` fixes the arrays' names and shapes."""
    try:
        return _decode(memoryview(data), kind, expect)
    except BadMessage:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a hostile frame provokes is a bad message
        raise BadMessage(f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _decode(data: memoryview, kind: type, expect: Mapping[str, tuple[int, ...]] | None) -> Any:
    if len(data) > MAX_FRAME_BYTES:
        raise BadMessage(f"frame of {len(data)} bytes")
    if len(data) < _PREFIX.size:
        raise BadMessage("short frame")
    magic, version, n = _PREFIX.unpack_from(data, 0)
    if magic != _MAGIC or version != VERSION:
        raise BadMessage("not an eqforge message of this version")
    if n > MAX_HEADER_BYTES or _PREFIX.size + n > len(data):
        raise BadMessage(f"header of {n} bytes")
    raw = bytes(data[_PREFIX.size:_PREFIX.size + n])
    parsed = _PARSED.get(raw)
    if parsed is None:
        parsed = _parse_header(raw)
        if len(_PARSED) < _CACHE_LIMIT:
            _PARSED[raw] = parsed
    type_name, fields_, shapes, total = parsed
    if _TYPES.get(type_name) is not kind:
        raise BadMessage(f"expected a {kind.__name__}")
    body = data[_PREFIX.size + n:]
    if len(body) != 8 * total:
        raise BadMessage("array bytes do not match the header")
    if expect is not None:
        got = {name: shape for name, shape, _ in shapes}
        if got != dict(expect):
            raise BadMessage(f"arrays {got} where {dict(expect)} were asked for")
    arrays, offset = {}, 0
    for name, shape, count in shapes:
        # a view of this frame's own buffer (a fresh one per frame): no copy of the bytes
        arrays[name] = np.frombuffer(body, np.float64, count, offset).reshape(shape)
        offset += 8 * count
    if kind is Call:
        return Call(op=fields_["op"], args=dict(fields_["args"]), arrays=arrays)
    return Reply(ok=fields_["ok"], arrays=arrays, text=fields_["text"], reason=fields_["reason"],
                 detail=fields_["detail"])


def _parse_header(raw: bytes) -> tuple[str, dict[str, Any], tuple, int]:
    """Checked (type, fields, array shapes, element count) of a header; BadMessage if malformed."""
    header = json.loads(raw.decode("utf-8"))
    if not isinstance(header, dict) or header.get("type") not in _TYPES:
        raise BadMessage("not a known message type")
    specs, fields_ = header.get("arrays"), header.get("fields")
    if not isinstance(specs, list) or not isinstance(fields_, dict) or len(specs) > 64:
        raise BadMessage("malformed header")
    total, shapes = 0, []
    for spec in specs:
        if not (isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], str)
                and isinstance(spec[1], list) and len(spec[1]) <= 4
                and all(type(s) is int and 0 <= s <= MAX_ELEMENTS for s in spec[1])):
            raise BadMessage("malformed array entry")
        count = math.prod(spec[1])  # Python ints: no overflow
        total += count
        if total > MAX_ELEMENTS:
            raise BadMessage("too many elements")
        shapes.append((spec[0], tuple(spec[1]), count))
    if header["type"] == "Call":
        args = fields_.get("args", {})
        if not isinstance(args, dict) or not all(isinstance(v, _SCALARS) for v in args.values()):
            raise BadMessage("malformed args")
        checked: dict[str, Any] = {"op": _text(fields_.get("op"), 64), "args": args}
    else:
        ok = fields_.get("ok")
        if type(ok) is not bool:
            raise BadMessage("malformed reply")
        checked = {"ok": ok, "text": _text(fields_.get("text"), MAX_TEXT), "reason": _text(fields_.get("reason"), 64),
                   "detail": _text(fields_.get("detail"), 500)}
    return header["type"], checked, tuple(shapes), total


def _text(value: Any, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadMessage("a text field is not text")
    return value[:limit]


# -- trusted processes ----------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    """What every zygote is started with. Nothing here is secret from candidates.

    ``inputs`` are the arrays candidate processes may see (by name; the evaluator passes
    input columns per split). ``runners`` are ``"module:function"`` paths imported into the
    factory before any candidate runs: the code that runs *inside* a candidate process,
    ``runner(fn, inputs, call, state) -> Reply``. ``drivers`` are imported into the zygote
    after the factory is forked: trusted code that runs a job by talking to candidate
    processes, ``driver(host, job) -> payload``.
    """

    inputs: Mapping[str, tuple[np.ndarray, ...]]
    runners: tuple[str, ...]
    drivers: tuple[str, ...] = ()
    allowed_imports: tuple[str, ...] = ()
    memory_bytes: int | None = None
    address_space_limit: bool = True
    harden: bool = True
    isolate_network: bool = True
    audit_hook: bool = True  # off only in tests that show what the kernel layers hold alone
    seccomp: bool = True  # off only in tests that show what the other layers hold alone
    warmup: str | None = None  # a driver-side "module:function" run once, in the zygote
    version: int = VERSION


@dataclass(frozen=True)
class Boot:
    """What a zygote needs before any data exists: so it can be started while the main
    process is still importing and loading (``pool.prestart``). Must match the ``Setup``."""

    runners: tuple[str, ...]
    drivers: tuple[str, ...] = ()
    harden: bool = True
    isolate_network: bool = True
    version: int = VERSION

    @classmethod
    def of(cls, setup: Setup) -> Boot:
        return cls(tuple(setup.runners), tuple(setup.drivers), setup.harden, setup.isolate_network)


@dataclass(frozen=True)
class TrustedData:
    """Data only trusted code may hold (targets), sent after the factory has been forked."""

    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """One program to run. ``driver`` None: one candidate process answers one ``Call``
    made of ``op``/``args``/``arrays`` with ``runner`` (a one-shot job such as analysis
    code, whose output is its printed text); else the named trusted driver runs it."""

    id: Any
    program: str
    entry: str
    runner: str
    driver: str | None = None
    options: object = None  # the driver's own job description (frozen, picklable); never read here
    op: str = "run"
    args: Mapping[str, bool | int | float | str] = field(default_factory=dict)
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    timeout: float = 30.0


@dataclass(frozen=True)
class Outcome:
    """The fate of one job, from the zygote to the main process."""

    id: Any
    ok: bool
    reason: str = ""
    detail: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)  # the driver's result, e.g. a TypedDict
    output: str = ""
    seconds: float = 0.0
    cpu: float = 0.0


@dataclass(frozen=True)
class Spawn:
    """Zygote → factory: fork a confined candidate process for this compiled program."""

    code: bytes  # marshal of the guarded code object, compiled by the zygote
    entry: str
    runner: str
    imports: tuple[str, ...]
    uid: int | None
    cpu_seconds: int


@dataclass(frozen=True)
class Reap:
    """Zygote → factory: kill this candidate process (and its group) and reap it."""

    pid: int
