"""The wire format between the recorder and its consoles: msgpack header + raw array frames.

A published message is ``[topic, header, buf0, buf1, ...]``. ``topic`` is the message type
(``block``, ``status``, ``notice``, ``rois``, ``image``, ``reset``, ``analysis``, ``state``,
``dark``) so that a console may subscribe to some only. ``header`` is a msgpack map
``{"version", "type", "fields", "arrays"}`` where ``arrays`` lists ``{"dtype", "shape", "buf"}``
descriptors and ``fields`` refers to arrays by their index in that list; ``buf`` is the
index of the array's raw frame after the header. A *tree* (reducer states in ``state``, a
reply's data) holds its arrays as msgpack extension values (``_frames``). A control request
is one msgpack frame (no arrays); a reply is ``[header, *buffers]`` like a message, so it can
carry arrays (``get_dark`` answers with a dark frame), at most :data:`MAX_REPLY_BYTES` of them.

Nothing here trusts its input: every decode validates types, sizes, dtypes (a whitelist, no
object arrays, never pickle), that shape x itemsize equals the buffer length, and that tags
strictly increase; anything wrong raises :class:`WireError` (a ``ValueError``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, Field

from ..schemas import (
    ROI_NAME,
    AnalysisVersion,
    Config,
    Cutout,
    DarkFrame,
    RoiVersion,
    ShotBlock,
    split_roi_key,
)
from ._frames import (
    MAX_ARRAYS,
    MAX_HEADER_BYTES,
    MAX_NAME,
    MAX_SHOTS,
    MAX_TEXT,
    ArrayDesc,
    Arrays,
    Buffer,
    HasBuffer,
    Index,
    Name,
    Strict,
    WireError,
    as_view,
    only_wire_errors,
    pack,
    parse_arrays,
    take,
    tree_in,
    tree_out,
    typed,
    unpack,
    validate,
)
from ._frames import decode_tree as _decode_tree
from ._frames import encode_tree as _encode_tree
from .messages import (
    AnalysisMsg,
    BlockMsg,
    DarkMsg,
    ImageMsg,
    Message,
    NoticeMsg,
    ResetMsg,
    RoisMsg,
    StateMsg,
    Status,
    StatusMsg,
)
from .ops import (
    CHANGING_OPS,
    MAX_REPLY_BYTES,
    OPS,
    VERSION,
    DarkArgs,
    DeleteArgs,
    GetDarkArgs,
    GrabArgs,
    MarkArgs,
    NoArgs,
    Op,
    PauseArgs,
    Request,
    SeekArgs,
    SetAnalysisArgs,
    SpeedArgs,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)

__all__ = [
    "CHANGING_OPS", "DEFAULT_CONTROL", "DEFAULT_PUBLISH", "DarkArgs", "DeleteArgs", "GetDarkArgs", "GrabArgs",
    "MAX_HEADER_BYTES", "MAX_REPLY_BYTES", "MarkArgs", "NoArgs", "OPS", "Op", "PauseArgs", "READ_ONLY_ERROR",
    "STARTING_ERROR", "SeekArgs", "SetAnalysisArgs", "SpeedArgs", "TOPICS", "VERSION", "Request", "WireError",
    "decode", "decode_reply", "decode_request", "decode_tree", "encode", "encode_reply", "encode_request",
    "encode_tree",
]

TOPICS = ("block", "status", "notice", "rois", "image", "reset", "analysis", "state", "dark")
DEFAULT_PUBLISH = "tcp://127.0.0.1:5560"
DEFAULT_CONTROL = "tcp://127.0.0.1:5561"
READ_ONLY_ERROR = "read-only: this request needs the control token from the run file"
STARTING_ERROR = "starting: the recorder is still opening its source; try again"
MAX_TAG_RANGES = 1 << 16
"""Tag ranges one state may list (a recording with more gaps than this is not a recording)."""
MAX_STATES = 64
"""Reducer states one StateMsg may carry."""


# --- header models -----------------------------------------------------------------------


class _Header(Strict):
    version: int
    type: Literal["block", "status", "notice", "rois", "image", "reset", "analysis", "state", "dark"]
    fields: dict[str, Any]
    arrays: Annotated[list[ArrayDesc], Field(max_length=MAX_ARRAYS)] = []


class _CutoutRef(Strict):
    detector: Annotated[str, Field(max_length=MAX_NAME)]
    pixels: Index
    valid: Index


class _BlockFields(Strict):
    seq: Annotated[int, Field(ge=0)]
    run: int | None = None
    hightag: int | None = None
    tags: Index
    time: Index
    points: Annotated[dict[Name, Index], Field(max_length=MAX_ARRAYS)] = {}
    cutouts: Annotated[dict[Name, _CutoutRef], Field(max_length=MAX_ARRAYS)] = {}


class _NoticeFields(Strict):
    time: float
    text: Annotated[str, Field(max_length=MAX_TEXT)]
    level: Literal["info", "warning", "error"] = "warning"


class _RoiVersionFields(Strict):
    name: Annotated[str, Field(pattern=ROI_NAME)]
    version: Annotated[int, Field(ge=1)]
    detector: Name
    x: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]
    y: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]
    first_shot: Annotated[int, Field(ge=0)]
    first_tag: int
    end_shot: int | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)  # msgpack gives lists


class _RoisFields(Strict):
    versions: Annotated[list[_RoiVersionFields], Field(max_length=MAX_ARRAYS)]


class _ResetFields(Strict):
    time: float
    reason: Annotated[str, Field(max_length=MAX_TEXT)]


class _ImageFields(Strict):
    detector: Name
    count: Annotated[int, Field(ge=0)]
    kind: Literal["running", "grab"] = "running"
    image: Index


class _AnalysisFields(Strict):
    version: dict[str, Any]
    config: dict[str, Any]
    epoch: Annotated[int, Field(ge=0)]
    boundary_shot: Annotated[int, Field(ge=0)]
    boundary_tag: int | None
    reason: Annotated[str, Field(max_length=MAX_TEXT)]


_Range = Annotated[list[int], Field(min_length=2, max_length=2)]


class _StateFields(Strict):
    epoch: Annotated[int, Field(ge=0)]
    analysis_version: Annotated[int, Field(ge=1)]
    boundary_shot: Annotated[int, Field(ge=0)]
    shots: Annotated[int, Field(ge=0)]
    seconds: Annotated[float, Field(ge=0)]
    tag_ranges: Annotated[list[_Range], Field(max_length=MAX_TAG_RANGES)]
    states: Annotated[dict[Name, Any], Field(max_length=MAX_STATES)]


class _DarkFields(Strict):
    detector: Name
    version: Annotated[int, Field(ge=1)]
    frames: Annotated[int, Field(ge=1)]
    first_tag: int
    last_tag: int
    mean: Index
    std: Index


# --- encode ------------------------------------------------------------------------------


def encode(msg: Message) -> list[Buffer]:
    """Frames ``[topic, header, *buffers]`` for one published message.

    Raises:
        WireError: the message holds something the wire cannot carry (e.g. an object array).
    """
    arrays = Arrays()
    kind, fields = _fields(msg, arrays)
    header = pack({"version": VERSION, "type": kind, "fields": fields, "arrays": arrays.descs})
    return [kind.encode(), header, *arrays.bufs]


def _fields(msg: Message, arrays: Arrays) -> tuple[str, dict[str, Any]]:
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
    return _fields_analysis(msg, arrays)


def _fields_analysis(msg: Message, arrays: Arrays) -> tuple[str, dict[str, Any]]:
    """The messages of analysis changes: AnalysisMsg, StateMsg, DarkMsg."""
    if isinstance(msg, AnalysisMsg):
        return "analysis", {"version": msg.version.model_dump(mode="json"),
                            "config": msg.config.model_dump(mode="json"), "epoch": msg.epoch,
                            "boundary_shot": msg.boundary_shot, "boundary_tag": msg.boundary_tag,
                            "reason": msg.reason}
    if isinstance(msg, StateMsg):
        return "state", {"epoch": msg.epoch, "analysis_version": msg.analysis_version,
                         "boundary_shot": msg.boundary_shot, "shots": msg.shots, "seconds": float(msg.seconds),
                         "tag_ranges": [[int(a), int(b)] for a, b in msg.tag_ranges],
                         "states": {str(k): tree_out(v, arrays) for k, v in msg.states.items()}}
    if isinstance(msg, DarkMsg):
        f = msg.frame
        return "dark", {"detector": msg.detector, "version": msg.version, "frames": f.frames,
                        "first_tag": f.first_tag, "last_tag": f.last_tag,
                        "mean": arrays.add(f.mean, np.float32), "std": arrays.add(f.std, np.float32)}
    raise WireError(f"encode: expected one of {', '.join(t.__name__ for t in _MESSAGE_TYPES)}, "
                    f"found {type(msg).__name__}")


_MESSAGE_TYPES = (BlockMsg, StatusMsg, NoticeMsg, RoisMsg, ImageMsg, ResetMsg, AnalysisMsg, StateMsg, DarkMsg)


# --- decode ------------------------------------------------------------------------------


def decode(frames: Sequence[Buffer | HasBuffer]) -> Message:
    """The message in ``[topic, header, *buffers]`` (arrays are read-only views of the frames).

    Raises:
        WireError: anything malformed, truncated, oversized or inconsistent (nothing else).
    """
    return only_wire_errors("message", lambda: _decode(frames))


def _decode(frames: Sequence[Buffer | HasBuffer]) -> Message:
    if len(frames) < 2 or len(frames) > MAX_ARRAYS + 2:
        raise WireError(f"message: expected 2 to {MAX_ARRAYS + 2} frames, found {len(frames)}")
    views = [as_view(f) for f in frames]
    topic = bytes(views[0][:16]).decode("ascii", "replace") if len(views[0]) <= 16 else "(long)"
    head: _Header = validate(_Header, unpack(views[1], "header"), "header")
    if head.version != VERSION:
        raise WireError(f"header.version: expected {VERSION}, found {head.version}")
    if topic != head.type:
        raise WireError(f"topic: expected {head.type!r} (the header's type), found {topic!r}")
    arrays = parse_arrays(head.arrays, views[2:])
    return _DECODERS[head.type](head.fields, arrays)


def _decode_block(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> BlockMsg:
    f: _BlockFields = validate(_BlockFields, fields, "block")
    used: set[int] = set()
    tags = typed(take(arrays, used, f.tags, "block.tags"), "<i8", 1, "block.tags")
    n = tags.shape[0]
    if n > MAX_SHOTS:
        raise WireError(f"block.tags: expected at most {MAX_SHOTS} shots, found {n}")
    if n > 1 and not bool(np.all(tags[1:] > tags[:-1])):
        raise WireError("block.tags: expected strictly increasing tags, found a step <= 0")
    time = typed(take(arrays, used, f.time, "block.time"), "<f8", 1, "block.time")
    points = {name: typed(take(arrays, used, i, f"block.points[{name!r}]"), "<f8", 1, f"block.points[{name!r}]")
              for name, i in f.points.items()}
    cutouts = {}
    for key, ref in f.cutouts.items():
        try:
            name, version = split_roi_key(key)
        except ValueError as exc:
            raise WireError(f"block.cutouts: {exc}") from None
        if version < 1 or not re.match(ROI_NAME, name):
            raise WireError(f"block.cutouts[{key!r}]: expected 'name/vK' with a valid ROI name and K >= 1")
        pixels = take(arrays, used, ref.pixels, f"block.cutouts[{key!r}].pixels")
        if pixels.ndim != 3 or pixels.dtype == np.bool_:
            raise WireError(f"block.cutouts[{key!r}].pixels: expected numeric [n, h, w], found "
                            f"{pixels.dtype.str}{list(pixels.shape)}")
        valid = typed(take(arrays, used, ref.valid, f"block.cutouts[{key!r}].valid"), "|b1", 1,
                      f"block.cutouts[{key!r}].valid")
        cutouts[key] = Cutout(pixels, valid, ref.detector)
    _all_used(arrays, used, "block")
    try:
        block = ShotBlock(tags, time, points, cutouts, {}, f.run, f.hightag).validate()
    except ValueError as exc:
        raise WireError(f"block: {exc}") from None
    return BlockMsg(f.seq, block)


def _decode_status(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> StatusMsg:
    _no_arrays(arrays, "status")
    return StatusMsg(validate(Status, fields, "status"))


def _decode_notice(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> NoticeMsg:
    _no_arrays(arrays, "notice")
    f: _NoticeFields = validate(_NoticeFields, fields, "notice")
    return NoticeMsg(f.time, f.text, f.level)


def _decode_rois(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> RoisMsg:
    _no_arrays(arrays, "rois")
    f: _RoisFields = validate(_RoisFields, fields, "rois")
    return RoisMsg(tuple(RoiVersion(**v.model_dump()) for v in f.versions))


def _decode_image(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> ImageMsg:
    f: _ImageFields = validate(_ImageFields, fields, "image")
    if len(arrays) != 1:
        raise WireError(f"image: expected exactly 1 array, found {len(arrays)}")
    image = typed(take(arrays, set(), f.image, "image.image"), "<f4", 2, "image.image")
    return ImageMsg(f.detector, image, f.count, f.kind)


def _decode_reset(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> ResetMsg:
    _no_arrays(arrays, "reset")
    f: _ResetFields = validate(_ResetFields, fields, "reset")
    return ResetMsg(f.time, f.reason)


def _decode_analysis(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> AnalysisMsg:
    _no_arrays(arrays, "analysis")
    f: _AnalysisFields = validate(_AnalysisFields, fields, "analysis")
    version: AnalysisVersion = validate(AnalysisVersion, f.version, "analysis.version")
    config: Config = validate(Config, f.config, "analysis.config")
    return AnalysisMsg(version, config, f.epoch, f.boundary_shot, f.boundary_tag, f.reason)


def _decode_state(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> StateMsg:
    f: _StateFields = validate(_StateFields, fields, "state")
    ranges = tuple((a, b) for a, b in f.tag_ranges)
    for i, (a, b) in enumerate(ranges):
        if a >= b or (i and a < ranges[i - 1][1]):
            raise WireError(f"state.tag_ranges[{i}]: expected increasing ranges (A, B) with A < B, found ({a}, {b})")
    used: set[int] = set()
    states = {name: tree_in(tree, arrays, used, f"state.states.{name[:40]}") for name, tree in f.states.items()}
    _all_used(arrays, used, "state")
    return StateMsg(f.epoch, f.analysis_version, f.boundary_shot, f.shots, f.seconds, ranges, states)


def _decode_dark(fields: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> DarkMsg:
    f: _DarkFields = validate(_DarkFields, fields, "dark")
    used: set[int] = set()
    mean = typed(take(arrays, used, f.mean, "dark.mean"), "<f4", 2, "dark.mean")
    std = typed(take(arrays, used, f.std, "dark.std"), "<f4", 2, "dark.std")
    _all_used(arrays, used, "dark")
    if mean.shape != std.shape:
        raise WireError(f"dark: expected mean and std of one shape, found {list(mean.shape)} and {list(std.shape)}")
    return DarkMsg(f.detector, f.version, DarkFrame(mean, std, f.frames, f.first_tag, f.last_tag))


def _no_arrays(arrays: list[npt.NDArray[Any]], what: str) -> None:
    if arrays:
        raise WireError(f"{what}: expected no arrays, found {len(arrays)}")


def _all_used(arrays: list[npt.NDArray[Any]], used: set[int], what: str) -> None:
    if len(used) != len(arrays):
        raise WireError(f"{what}: expected every array to be used, found {len(arrays) - len(used)} unused")


_DECODERS: dict[str, Callable[[dict[str, Any], list[npt.NDArray[Any]]], Message]] = {
    "block": _decode_block, "status": _decode_status, "notice": _decode_notice,
    "rois": _decode_rois, "image": _decode_image, "reset": _decode_reset,
    "analysis": _decode_analysis, "state": _decode_state, "dark": _decode_dark,
}


# --- trees on their own --------------------------------------------------------------------


def encode_tree(tree: Any) -> list[Buffer]:
    """Frames ``[header, *buffers]`` of a :data:`~.messages.Tree` on its own (a reducer state
    between processes: the recorder's recomputation workers, MPI ranks). Never pickle.

    Raises:
        WireError: a node that is not a tree node, or an array the wire cannot carry.
    """
    return _encode_tree(tree, version=VERSION)


def decode_tree(frames: Sequence[Buffer | HasBuffer], *, max_bytes: int = 1 << 30) -> Any:
    """The tree of :func:`encode_tree`'s frames, validated (arrays at most ``max_bytes`` in all).

    Raises:
        WireError: anything malformed, oversized or inconsistent, nothing else.
    """
    return _decode_tree(frames, version=VERSION, max_bytes=max_bytes)


