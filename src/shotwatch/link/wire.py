"""The wire format between the recorder and its consoles: msgpack header + raw array frames.

A published message is ``[topic, header, buf0, buf1, ...]``. ``topic`` is the message type
(``block``, ``status``, ``notice``, ``rois``, ``image``) so that a console may subscribe to
some only. ``header`` is a msgpack map ``{"version", "type", "fields", "arrays"}`` where
``arrays`` lists ``{"dtype", "shape", "buf"}`` descriptors and ``fields`` refers to arrays by
their index in that list; ``buf`` is the index of the array's raw frame after the header.
Control requests and replies are one msgpack frame each (no arrays).

Nothing here trusts its input: every decode validates types, sizes, dtypes (a whitelist, no
object arrays, never pickle), that shape x itemsize equals the buffer length, and that tags
strictly increase; anything wrong raises :class:`WireError` (a ``ValueError``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import Annotated, Any, Literal, Protocol, TypeVar

import msgpack
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..schemas import ROI_NAME, Cutout, Roi, RoiVersion, ShotBlock, split_roi_key
from .messages import BlockMsg, ImageMsg, Message, NoticeMsg, Reply, ResetMsg, RoisMsg, Status, StatusMsg

__all__ = [
    "CHANGING_OPS", "DEFAULT_CONTROL", "DEFAULT_PUBLISH", "DeleteArgs", "GrabArgs", "MarkArgs", "NoArgs", "OPS", "PauseArgs", "SeekArgs", "SpeedArgs",
    "Op", "READ_ONLY_ERROR", "STARTING_ERROR", "TOPICS", "VERSION", "Request", "WireError", "decode",
    "decode_reply", "decode_request", "encode", "encode_reply", "encode_request",
]

VERSION = 1
TOPICS = ("block", "status", "notice", "rois", "image", "reset")
DEFAULT_PUBLISH = "tcp://127.0.0.1:5560"
DEFAULT_CONTROL = "tcp://127.0.0.1:5561"
READ_ONLY_ERROR = "read-only: this request needs the control token from the run file"
STARTING_ERROR = "starting: the recorder is still opening its source; try again"

# Bounds: generous for real data (a 1,200-shot block of 100x100 uint16 cutouts is 24 MB),
# small enough that a hostile or corrupt message cannot make a console allocate gigabytes.
MAX_HEADER_BYTES = 1 << 20
MAX_ARRAYS = 4096
MAX_ARRAY_BYTES = 1 << 30
MAX_DIM = 1 << 31
MAX_SHOTS = 1 << 20
MAX_NAME = 256
MAX_TEXT = 10_000
_DTYPES = frozenset({"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f4", "<f8"})

Buffer = bytes | bytearray | memoryview
_T = TypeVar("_T")


class WireError(ValueError):
    """A message that is not what the wire format allows (says what was expected and found)."""


class _HasBuffer(Protocol):
    @property
    def buffer(self) -> memoryview: ...


# --- header models -----------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Index = Annotated[int, Field(ge=0, lt=MAX_ARRAYS)]


class _ArrayDesc(_Strict):
    dtype: str
    shape: Annotated[list[Annotated[int, Field(ge=0, le=MAX_DIM)]], Field(min_length=1, max_length=3)]
    buf: Index


class _Header(_Strict):
    version: int
    type: Literal["block", "status", "notice", "rois", "image", "reset"]
    fields: dict[str, Any]
    arrays: Annotated[list[_ArrayDesc], Field(max_length=MAX_ARRAYS)] = []


class _CutoutRef(_Strict):
    detector: Annotated[str, Field(max_length=MAX_NAME)]
    pixels: Index
    valid: Index


class _BlockFields(_Strict):
    seq: Annotated[int, Field(ge=0)]
    run: int | None = None
    hightag: int | None = None
    tags: Index
    time: Index
    points: Annotated[dict[Name, Index], Field(max_length=MAX_ARRAYS)] = {}
    cutouts: Annotated[dict[Name, _CutoutRef], Field(max_length=MAX_ARRAYS)] = {}


class _NoticeFields(_Strict):
    time: float
    text: Annotated[str, Field(max_length=MAX_TEXT)]
    level: Literal["info", "warning", "error"] = "warning"


class _RoiVersionFields(_Strict):
    name: Annotated[str, Field(pattern=ROI_NAME)]
    version: Annotated[int, Field(ge=1)]
    detector: Name
    x: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]
    y: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]
    first_shot: Annotated[int, Field(ge=0)]
    first_tag: int
    end_shot: int | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)  # msgpack gives lists


class _RoisFields(_Strict):
    versions: Annotated[list[_RoiVersionFields], Field(max_length=MAX_ARRAYS)]


class _ResetFields(_Strict):
    time: float
    reason: Annotated[str, Field(max_length=MAX_TEXT)]


class _ImageFields(_Strict):
    detector: Name
    count: Annotated[int, Field(ge=0)]
    kind: Literal["running", "grab"] = "running"
    image: Index


# --- control requests ----------------------------------------------------------------------


class NoArgs(_Strict):
    """The arguments of an op that takes none."""


class DeleteArgs(_Strict):
    name: Annotated[str, Field(pattern=ROI_NAME)]


class GrabArgs(_Strict):
    detector: Name
    n: Annotated[int, Field(ge=1, le=100_000)]


class MarkArgs(_Strict):
    text: Annotated[str, Field(max_length=1000)]


class PauseArgs(_Strict):
    """Pause (or resume) a replaying recorder's source."""

    paused: bool


class SeekArgs(_Strict):
    """Move a replaying recorder's source by ``seconds`` of recorded time, or to its start."""

    seconds: Annotated[float, Field(ge=-1e9, le=1e9)] = 0.0
    start: bool = False


class SpeedArgs(_Strict):
    """A replaying recorder's pace: 1.0 = recorded pace, 0 = as fast as possible."""

    speed: Annotated[float, Field(ge=0, le=10_000)]


@dataclass(frozen=True)
class Op:
    """One control operation: its arguments, who may ask, and what it may cost the recorder.

    Adding an op is one entry in :data:`OPS`, one method on the recorder's
    :class:`~shotwatch.link.protocols.Control` protocol returning a ``Future[Reply]``, and
    one branch in :func:`~shotwatch.link.control.forward` (typed: mypy checks the call).

    Attributes:
        args: the pydantic model the arguments must validate against.
        changes: needs the control token (anything that changes the recording or its state).
        per_s: sustained requests per second the network process lets through (a token
            bucket, after the token check, so a peer without the token cannot use it up);
            None = unlimited.
        burst: requests let through at once before ``per_s`` applies.
        in_flight: requests of this op the recorder may hold unfinished at once (a grab
            holds a frame-sized sum until its frames arrived).
        local: answered by the service from the recorder's hello snapshot (no Served method).
    """

    args: type[BaseModel]
    changes: bool = True
    per_s: float | None = None
    burst: int = 1
    in_flight: int = 16
    local: bool = False


OPS: dict[str, Op] = {
    "hello": Op(NoArgs, changes=False, local=True),
    "list_rois": Op(NoArgs, changes=False, local=True),
    # an operator nudging an ROI with a held arrow key sends a burst; thousands are a flood
    "set_roi": Op(Roi, per_s=5.0, burst=60),
    "delete_roi": Op(DeleteArgs, per_s=5.0, burst=60),
    "grab": Op(GrabArgs, per_s=1.0, burst=4, in_flight=2),
    # each mark rewrites the recording's root attributes
    "mark": Op(MarkArgs, per_s=0.5, burst=30),
    "stop": Op(NoArgs),
    # a replaying recorder's pace: cheap, but a seek restarts every console's averages
    "pause": Op(PauseArgs, per_s=5.0, burst=20),
    "seek": Op(SeekArgs, per_s=5.0, burst=20),
    "speed": Op(SpeedArgs, per_s=5.0, burst=20),
}
"""Every control operation (the order is the one error messages list)."""
CHANGING_OPS = frozenset(name for name, op in OPS.items() if op.changes)
"""Requests that need the control token."""


class _RequestHeader(_Strict):
    version: int
    type: Literal["request"]
    op: str
    token: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    timeout: Annotated[float, Field(gt=0, le=3600)] | None = None
    args: dict[str, Any] = {}

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class _ReplyHeader(_Strict):
    version: int
    type: Literal["reply"]
    ok: bool
    error: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    data: dict[str, Any] = {}


@dataclass(frozen=True)
class Request:
    """A validated control request.

    Attributes:
        op: one of :data:`OPS`.
        args: the op's arguments as a validated model (``set_roi``: a :class:`Roi`).
        token: the control token, if sent.
        timeout: seconds the client waits for the reply, if it said.
    """

    op: str
    args: BaseModel
    token: str | None = None
    timeout: float | None = None


# --- helpers -----------------------------------------------------------------------------


def _pack(obj: dict[str, Any]) -> bytes:
    try:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"encode: expected msgpack-serialisable values, found {exc}") from exc


def _unpack(frame: Buffer, what: str) -> dict[str, Any]:
    if len(frame) > MAX_HEADER_BYTES:
        raise WireError(f"{what}: expected at most {MAX_HEADER_BYTES} bytes, found {len(frame)}")
    try:
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for corrupt input
        raise WireError(f"{what}: expected a msgpack map, found undecodable bytes ({type(exc).__name__})") from exc
    if not isinstance(obj, dict):
        raise WireError(f"{what}: expected a msgpack map, found {type(obj).__name__}")
    return obj


def _validate(model: type[BaseModel], data: Any, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top)"
        found = repr(err.get("input"))
        found = found if len(found) <= 60 else found[:57] + "..."
        raise WireError(f"{what}.{where}: {err['msg']}, found {found}") from None


def _as_view(frame: Buffer | _HasBuffer) -> memoryview:
    # a zmq.Frame received with copy=False exposes its message memory: zero-copy
    view = memoryview(frame) if isinstance(frame, bytes | bytearray | memoryview) else frame.buffer
    return view if view.ndim == 1 and view.itemsize == 1 else view.cast("B")


class _Arrays:
    """Collects arrays for encoding: descriptors for the header, buffers for the frames."""

    def __init__(self) -> None:
        self.descs: list[dict[str, Any]] = []
        self.bufs: list[Buffer] = []

    def add(self, array: npt.NDArray[Any], dtype: npt.DTypeLike | None = None) -> int:
        a = np.ascontiguousarray(array, dtype=dtype)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        if a.dtype.str not in _DTYPES:
            raise WireError(f"encode: expected a dtype in {sorted(_DTYPES)}, found {a.dtype.str}")
        self.descs.append({"dtype": a.dtype.str, "shape": list(a.shape), "buf": len(self.bufs)})
        # memoryview keeps the array alive and lets zmq send without copying
        self.bufs.append(a.reshape(-1).view(np.uint8).data)
        return len(self.descs) - 1


def _arrays(descs: list[_ArrayDesc], bufs: Sequence[memoryview]) -> list[npt.NDArray[Any]]:
    if sorted(d.buf for d in descs) != list(range(len(bufs))):
        raise WireError(f"arrays: expected one descriptor per buffer frame ({len(bufs)}), "
                        f"found buffer indices {[d.buf for d in descs][:10]}")
    out = []
    for i, d in enumerate(descs):
        if d.dtype not in _DTYPES:
            raise WireError(f"arrays[{i}].dtype: expected one of {sorted(_DTYPES)}, found {d.dtype!r}")
        dtype = np.dtype(d.dtype)
        nbytes = math.prod(d.shape) * dtype.itemsize
        # an empty array may still declare absurd sides ([2**63, 0]): numpy refuses those
        spread = math.prod(n for n in d.shape if n) * dtype.itemsize
        buf = bufs[d.buf]
        if spread > MAX_ARRAY_BYTES or nbytes != len(buf):
            raise WireError(f"arrays[{i}]: expected {d.shape} x {dtype.itemsize} = {nbytes} bytes "
                            f"(sides at most {MAX_ARRAY_BYTES} bytes), found {len(buf)}")
        if dtype == np.bool_ and nbytes and int(np.frombuffer(buf, np.uint8).max()) > 1:
            raise WireError(f"arrays[{i}]: expected bools as bytes 0/1, found other values")
        a = np.frombuffer(buf, dtype).reshape(d.shape) if nbytes else np.zeros(d.shape, dtype)
        out.append(a)
    return out


def _only_wire_errors(what: str, decode: Callable[[], _T]) -> _T:
    """Run a decoder so that nothing but :class:`WireError` escapes it.

    The checks above are meant to catch everything; this is the guarantee that a case they
    missed (numpy or pydantic refusing something in its own words) is still counted and
    dropped by the receiver, not raised through it.
    """
    try:
        return decode()
    except WireError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, MemoryError, RecursionError) as exc:
        raise WireError(f"{what}: expected a well-formed message, found one that fails to decode "
                        f"({type(exc).__name__}: {str(exc)[:80]})") from None


# --- encode ------------------------------------------------------------------------------


def encode(msg: Message) -> list[Buffer]:
    """Frames ``[topic, header, *buffers]`` for one published message.

    Raises:
        WireError: the message holds something the wire cannot carry (e.g. an object array).
    """
    arrays = _Arrays()
    kind, fields = _fields(msg, arrays)
    header = _pack({"version": VERSION, "type": kind, "fields": fields, "arrays": arrays.descs})
    return [kind.encode(), header, *arrays.bufs]


def _fields(msg: Message, arrays: _Arrays) -> tuple[str, dict[str, Any]]:
    if isinstance(msg, BlockMsg):
        b = msg.block
        n = len(b)
        cutouts = {
            key: {"detector": c.detector, "pixels": arrays.add(c.pixels), "valid": arrays.add(c.valid, np.bool_)}
            for key, c in b.cutouts.items()
        }
        return "block", {
            "seq": msg.seq, "run": b.run, "hightag": b.hightag,
            "tags": arrays.add(b.tags.reshape(n), np.int64), "time": arrays.add(b.time, np.float64),
            "points": {name: arrays.add(v, np.float64) for name, v in b.points.items()},
            "cutouts": cutouts,
        }
    if isinstance(msg, StatusMsg):
        return "status", msg.status.model_dump()
    if isinstance(msg, NoticeMsg):
        return "notice", {"time": msg.time, "text": msg.text, "level": msg.level}
    if isinstance(msg, RoisMsg):
        return "rois", {"versions": [asdict(v) for v in msg.versions]}
    if isinstance(msg, ImageMsg):
        return "image", {"detector": msg.detector, "count": msg.count, "kind": msg.kind,
                         "image": arrays.add(msg.image, np.float32)}
    if isinstance(msg, ResetMsg):
        return "reset", {"time": msg.time, "reason": msg.reason}
    raise WireError(f"encode: expected one of BlockMsg, StatusMsg, NoticeMsg, RoisMsg, ImageMsg, ResetMsg, "
                    f"found {type(msg).__name__}")


# --- decode ------------------------------------------------------------------------------


def decode(frames: Sequence[Buffer | _HasBuffer]) -> Message:
    """The message in ``[topic, header, *buffers]`` (arrays are read-only views of the frames).

    Raises:
        WireError: anything malformed, truncated, oversized or inconsistent (nothing else).
    """
    return _only_wire_errors("message", lambda: _decode(frames))


def _decode(frames: Sequence[Buffer | _HasBuffer]) -> Message:
    if len(frames) < 2 or len(frames) > MAX_ARRAYS + 2:
        raise WireError(f"message: expected 2 to {MAX_ARRAYS + 2} frames, found {len(frames)}")
    views = [_as_view(f) for f in frames]
    topic = bytes(views[0][:16]).decode("ascii", "replace") if len(views[0]) <= 16 else "(long)"
    head: _Header = _validate(_Header, _unpack(views[1], "header"), "header")
    if head.version != VERSION:
        raise WireError(f"header.version: expected {VERSION}, found {head.version}")
    if topic != head.type:
        raise WireError(f"topic: expected {head.type!r} (the header's type), found {topic!r}")
    arrays = _arrays(head.arrays, views[2:])
    return _DECODERS[head.type](head.fields, arrays)


def _take(arrays: list[npt.NDArray[Any]], used: set[int], i: int, what: str) -> npt.NDArray[Any]:
    if i >= len(arrays) or i in used:
        raise WireError(f"{what}: expected an unused array index below {len(arrays)}, found {i}")
    used.add(i)
    return arrays[i]


def _typed(a: npt.NDArray[Any], dtype: str, ndim: int, what: str) -> npt.NDArray[Any]:
    if a.dtype.str != dtype or a.ndim != ndim:
        raise WireError(f"{what}: expected {dtype} with {ndim} dimension(s), found {a.dtype.str}{list(a.shape)}")
    return a


def _decode_block(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> BlockMsg:
    f: _BlockFields = _validate(_BlockFields, fields, "block")
    used: set[int] = set()
    tags = _typed(_take(arrays, used, f.tags, "block.tags"), "<i8", 1, "block.tags")
    n = tags.shape[0]
    if n > MAX_SHOTS:
        raise WireError(f"block.tags: expected at most {MAX_SHOTS} shots, found {n}")
    if n > 1 and not bool(np.all(tags[1:] > tags[:-1])):
        raise WireError("block.tags: expected strictly increasing tags, found a step <= 0")
    time = _typed(_take(arrays, used, f.time, "block.time"), "<f8", 1, "block.time")
    points = {name: _typed(_take(arrays, used, i, f"block.points[{name!r}]"), "<f8", 1, f"block.points[{name!r}]")
              for name, i in f.points.items()}
    cutouts = {}
    for key, ref in f.cutouts.items():
        try:
            name, version = split_roi_key(key)
        except ValueError as exc:
            raise WireError(f"block.cutouts: {exc}") from None
        if version < 1 or not re.match(ROI_NAME, name):
            raise WireError(f"block.cutouts[{key!r}]: expected 'name/vK' with a valid ROI name and K >= 1")
        pixels = _take(arrays, used, ref.pixels, f"block.cutouts[{key!r}].pixels")
        if pixels.ndim != 3 or pixels.dtype == np.bool_:
            raise WireError(f"block.cutouts[{key!r}].pixels: expected numeric [n, h, w], found "
                            f"{pixels.dtype.str}{list(pixels.shape)}")
        valid = _typed(_take(arrays, used, ref.valid, f"block.cutouts[{key!r}].valid"), "|b1", 1,
                       f"block.cutouts[{key!r}].valid")
        cutouts[key] = Cutout(pixels, valid, ref.detector)
    if len(used) != len(arrays):
        raise WireError(f"block: expected every array to be used, found {len(arrays) - len(used)} unused")
    try:
        block = ShotBlock(tags, time, points, cutouts, {}, f.run, f.hightag).validate()
    except ValueError as exc:
        raise WireError(f"block: {exc}") from None
    return BlockMsg(f.seq, block)


def _decode_status(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> StatusMsg:
    _no_arrays(arrays, "status")
    return StatusMsg(_validate(Status, fields, "status"))


def _decode_notice(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> NoticeMsg:
    _no_arrays(arrays, "notice")
    f: _NoticeFields = _validate(_NoticeFields, fields, "notice")
    return NoticeMsg(f.time, f.text, f.level)


def _decode_rois(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> RoisMsg:
    _no_arrays(arrays, "rois")
    f: _RoisFields = _validate(_RoisFields, fields, "rois")
    return RoisMsg(tuple(RoiVersion(**v.model_dump()) for v in f.versions))


def _decode_image(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> ImageMsg:
    f: _ImageFields = _validate(_ImageFields, fields, "image")
    if len(arrays) != 1:
        raise WireError(f"image: expected exactly 1 array, found {len(arrays)}")
    image = _typed(_take(arrays, set(), f.image, "image.image"), "<f4", 2, "image.image")
    return ImageMsg(f.detector, image, f.count, f.kind)


def _decode_reset(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> ResetMsg:
    _no_arrays(arrays, "reset")
    f: _ResetFields = _validate(_ResetFields, fields, "reset")
    return ResetMsg(f.time, f.reason)


def _no_arrays(arrays: list[npt.NDArray[Any]], what: str) -> None:
    if arrays:
        raise WireError(f"{what}: expected no arrays, found {len(arrays)}")


_DECODERS: dict[str, Callable[[dict[str, Any], list[npt.NDArray[Any]]], Message]] = {
    "block": _decode_block, "status": _decode_status, "notice": _decode_notice,
    "rois": _decode_rois, "image": _decode_image, "reset": _decode_reset,
}


# --- control -----------------------------------------------------------------------------


def encode_request(op: str, *, token: str | None = None, timeout: float | None = None,
                   **args: Any) -> list[bytes]:
    """One frame holding a control request (validated here too, so errors show at the caller).

    Raises:
        WireError: unknown op or bad arguments.
    """
    req = {"version": VERSION, "type": "request", "op": op, "token": token, "timeout": timeout, "args": args}
    frame = _pack(req)
    decode_request([frame])
    return [frame]


def decode_request(frames: Sequence[Buffer | _HasBuffer]) -> Request:
    """The request in one frame, its arguments validated for its op.

    Raises:
        WireError: not one frame, not msgpack, unknown op, or arguments the op does not take.
    """
    return _only_wire_errors("request", lambda: _decode_request(frames))


def _decode_request(frames: Sequence[Buffer | _HasBuffer]) -> Request:
    if len(frames) != 1:
        raise WireError(f"request: expected 1 frame, found {len(frames)}")
    head: _RequestHeader = _validate(_RequestHeader, _unpack(_as_view(frames[0]), "request"), "request")
    if head.version != VERSION:
        raise WireError(f"request.version: expected {VERSION}, found {head.version}")
    if head.op not in OPS:
        raise WireError(f"request.op: expected one of {', '.join(OPS)}, found {head.op[:40]!r}")
    args = _validate(OPS[head.op].args, head.args, f"{head.op}")
    return Request(head.op, args, head.token, head.timeout)


def encode_reply(reply: Reply) -> list[bytes]:
    """One frame holding a reply; values msgpack cannot carry are sent as their ``str``."""
    msg = {"version": VERSION, "type": "reply", "ok": reply.ok, "error": reply.error,
           "data": _plain(reply.data)}
    return [_pack(msg)]


def decode_reply(frames: Sequence[Buffer | _HasBuffer]) -> Reply:
    """The reply in one frame.

    Raises:
        WireError: not one frame, not msgpack, or not a reply.
    """
    return _only_wire_errors("reply", lambda: _decode_reply(frames))


def _decode_reply(frames: Sequence[Buffer | _HasBuffer]) -> Reply:
    if len(frames) != 1:
        raise WireError(f"reply: expected 1 frame, found {len(frames)}")
    head: _ReplyHeader = _validate(_ReplyHeader, _unpack(_as_view(frames[0]), "reply"), "reply")
    if head.version != VERSION:
        raise WireError(f"reply.version: expected {VERSION}, found {head.version}")
    return Reply(head.ok, head.error, head.data)


def _plain(obj: Any) -> Any:
    """msgpack-safe copy of ``obj``: numpy scalars and arrays, tuples, models become plain."""
    if obj is None or isinstance(obj, bool | int | float | str | bytes):
        return obj
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic | np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, BaseModel):
        return _plain(obj.model_dump(mode="json"))
    if is_dataclass(obj) and not isinstance(obj, type):
        return _plain(asdict(obj))
    return str(obj)
