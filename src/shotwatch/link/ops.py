"""The control path's ops: each op's arguments and bounds, requests and replies on the wire.

A request is one msgpack frame ``{"version", "type": "request", "op", "token", "timeout",
"args"}``, its ``args`` validated against the op's model (:data:`OPS`). A reply is
``[header, *buffers]``: ``{"version", "type": "reply", "ok", "error", "data", "arrays"}``
with ``data`` a tree whose arrays travel as raw frames (``get_dark`` answers with a dark's
mean and std), at most :data:`MAX_REPLY_BYTES` of them. :mod:`.wire` re-exports all of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..schemas import ROI_NAME, Roi
from ._frames import (
    MAX_ARRAYS,
    MAX_NAME,
    MAX_TEXT,
    ArrayDesc,
    Arrays,
    Buffer,
    HasBuffer,
    Name,
    Strict,
    WireError,
    as_view,
    only_wire_errors,
    pack,
    parse_arrays,
    tree_in,
    tree_out,
    unpack,
    validate,
)
from .messages import Reply

__all__ = [
    "CHANGING_OPS", "DarkArgs", "DeleteArgs", "GetDarkArgs", "GrabArgs", "MAX_REPLY_BYTES", "MarkArgs",
    "NoArgs", "OPS", "Op", "PauseArgs", "Request", "SeekArgs", "SetAnalysisArgs", "SpeedArgs", "VERSION",
    "decode_reply", "decode_request", "encode_reply", "encode_request",
]

VERSION = 1
MAX_REPLY_BYTES = 64 << 20
"""Array bytes one reply may carry: a dark's mean and std of a 4-megapixel detector are 32 MB."""


class NoArgs(Strict):
    """The arguments of an op that takes none."""


class DeleteArgs(Strict):
    name: Annotated[str, Field(pattern=ROI_NAME)]


class GrabArgs(Strict):
    detector: Name
    n: Annotated[int, Field(ge=1, le=100_000)]


class MarkArgs(Strict):
    text: Annotated[str, Field(max_length=1000)]


class PauseArgs(Strict):
    """Pause (or resume) a replaying recorder's source."""

    paused: bool


class SeekArgs(Strict):
    """Move a replaying recorder's source by ``seconds`` of recorded time, or to its start."""

    seconds: Annotated[float, Field(ge=-1e9, le=1e9)] = 0.0
    start: bool = False


class SpeedArgs(Strict):
    """A replaying recorder's pace: 1.0 = recorded pace, 0 = as fast as possible."""

    speed: Annotated[float, Field(ge=0, le=10_000)]


class SetAnalysisArgs(Strict):
    """A new analysis: its sections as JSON (every section but source, record and roi; one
    missing is off), validated by the recorder with the configuration's own models."""

    analysis: Annotated[dict[Name, Any], Field(max_length=64)]
    by: Annotated[str, Field(max_length=MAX_NAME)]
    """Who sets it: the console's ``user@host``, recorded with the version."""


class DarkArgs(Strict):
    """Take a dark of ``detector``: the mean and std of its next ``n`` full frames."""

    detector: Name
    n: Annotated[int, Field(ge=1, le=100_000)]
    force: bool = False
    """Take it although the veto named by ``alarm.beam`` says the beam is on."""


class GetDarkArgs(Strict):
    """Fetch dark version ``version`` of ``detector`` (mean and std arrays in the reply)."""

    detector: Name
    version: Annotated[int, Field(ge=1)]


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
    # each change records an analysis version and starts a recomputation of the whole run
    "set_analysis": Op(SetAnalysisArgs, per_s=1.0, burst=5, in_flight=2),
    # no token (it changes nothing stored), but each one reduces the whole run again
    "recompute": Op(NoArgs, changes=False, per_s=0.1, burst=2, in_flight=1),
    # answered when its n frames are in (like a grab), holding two frame-sized sums meanwhile
    "dark": Op(DarkArgs, per_s=0.2, burst=2, in_flight=1),
    # answered with two frame-sized arrays: a console fetches the few the hello names
    "get_dark": Op(GetDarkArgs, changes=False, per_s=2.0, burst=8, in_flight=4),
}
"""Every control operation (the order is the one error messages list)."""
CHANGING_OPS = frozenset(name for name, op in OPS.items() if op.changes)
"""Requests that need the control token."""


class _RequestHeader(Strict):
    version: int
    type: Literal["request"]
    op: str
    token: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    timeout: Annotated[float, Field(gt=0, le=3600)] | None = None
    args: dict[str, Any] = {}

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class _ReplyHeader(Strict):
    version: int
    type: Literal["reply"]
    ok: bool
    error: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    data: dict[str, Any] = {}
    arrays: Annotated[list[ArrayDesc], Field(max_length=MAX_ARRAYS)] = []


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


# --- requests and replies ------------------------------------------------------------------


def encode_request(op: str, *, token: str | None = None, timeout: float | None = None,
                   **args: Any) -> list[bytes]:
    """One frame holding a control request (validated here too, so errors show at the caller).

    Raises:
        WireError: unknown op or bad arguments.
    """
    req = {"version": VERSION, "type": "request", "op": op, "token": token, "timeout": timeout, "args": args}
    frame = pack(req)
    decode_request([frame])
    return [frame]


def decode_request(frames: Sequence[Buffer | HasBuffer]) -> Request:
    """The request in one frame, its arguments validated for its op.

    Raises:
        WireError: not one frame, not msgpack, unknown op, or arguments the op does not take.
    """
    return only_wire_errors("request", lambda: _decode_request(frames))


def _decode_request(frames: Sequence[Buffer | HasBuffer]) -> Request:
    if len(frames) != 1:
        raise WireError(f"request: expected 1 frame, found {len(frames)}")
    head: _RequestHeader = validate(_RequestHeader, unpack(as_view(frames[0]), "request"), "request")
    if head.version != VERSION:
        raise WireError(f"request.version: expected {VERSION}, found {head.version}")
    if head.op not in OPS:
        raise WireError(f"request.op: expected one of {', '.join(OPS)}, found {head.op[:40]!r}")
    # arguments are plain JSON-like data: an array reference there is refused, as is nesting
    # deeper than any configuration has
    tree_in(head.args, [], set(), f"{head.op}")
    args = validate(OPS[head.op].args, head.args, f"{head.op}")
    return Request(head.op, args, head.token, head.timeout)


def encode_reply(reply: Reply) -> list[Buffer]:
    """Frames ``[header, *buffers]`` of a reply: ``data``'s arrays travel as raw frames; values
    msgpack cannot carry are sent as their ``str``.

    Raises:
        WireError: more than :data:`MAX_REPLY_BYTES` of arrays, or an array the wire cannot carry.
    """
    arrays = Arrays()
    data = tree_out(reply.data, arrays, lenient=True)
    if arrays.nbytes > MAX_REPLY_BYTES:
        raise WireError(f"reply: expected at most {MAX_REPLY_BYTES} bytes of arrays, found {arrays.nbytes}")
    msg = {"version": VERSION, "type": "reply", "ok": reply.ok, "error": reply.error, "data": data,
           "arrays": arrays.descs}
    return [pack(msg), *arrays.bufs]


def decode_reply(frames: Sequence[Buffer | HasBuffer]) -> Reply:
    """The reply in ``[header, *buffers]`` (arrays in ``data`` are read-only views of the frames).

    Raises:
        WireError: not msgpack, not a reply, arrays beyond :data:`MAX_REPLY_BYTES`, or
            anything inconsistent.
    """
    return only_wire_errors("reply", lambda: _decode_reply(frames))


def _decode_reply(frames: Sequence[Buffer | HasBuffer]) -> Reply:
    if not 1 <= len(frames) <= MAX_ARRAYS + 1:
        raise WireError(f"reply: expected 1 to {MAX_ARRAYS + 1} frames, found {len(frames)}")
    views = [as_view(f) for f in frames]
    if sum(len(v) for v in views[1:]) > MAX_REPLY_BYTES:
        raise WireError(f"reply: expected at most {MAX_REPLY_BYTES} bytes of arrays, "
                        f"found {sum(len(v) for v in views[1:])}")
    head: _ReplyHeader = validate(_ReplyHeader, unpack(views[0], "reply"), "reply")
    if head.version != VERSION:
        raise WireError(f"reply.version: expected {VERSION}, found {head.version}")
    arrays = parse_arrays(head.arrays, views[1:])
    used: set[int] = set()
    data = tree_in(head.data, arrays, used, "reply.data")
    if len(used) != len(arrays):
        raise WireError(f"reply: expected every array to be used, found {len(arrays) - len(used)} unused")
    return Reply(head.ok, head.error, data)

