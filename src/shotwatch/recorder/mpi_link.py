"""Messages between the ranks of ``record --mpi``: a msgpack header and raw array buffers.

DESIGN.md ("What an untrusted peer cannot do"): ranks exchange buffers with ``Isend``/``Irecv``
of bytes, never mpi4py's pickling lower-case calls. A message is one MPI message on
:data:`TAG`: an 8-byte little-endian header length, the msgpack header
``{"kind", "fields", "arrays": [[dtype, shape], ...]}``, then each array's raw bytes, each
part starting at a multiple of 8 bytes. One MPI message per envelope, not one per array:
each large message costs a rendezvous (both sides must poll), and rank 0 sleeps between polls.

Nothing blocks: a sender starts its send and tests it later (:class:`Outbox`), a receiver
probes and receives only what has arrived (:class:`Inbox`). Waiting is polling with a sleep
in between (:func:`nap`): MPICH's blocking calls spin a core.

Every message is checked before it is used: its size (bounded before anything is
allocated), the header's kind, dtypes (a whitelist, no objects) and shapes, and that the
arrays fill the message exactly (:class:`LinkError`). A block travels as the console
wire's block message (``link.wire``, validated the same way) plus its full frames.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt
from mpi4py import MPI

from ..link import wire
from ..link.messages import BlockMsg
from ..schemas import Frames, Roi, RoiVersion, ShotBlock, split_roi_key

__all__ = [
    "TAG", "Envelope", "Inbox", "LinkError", "Outbox", "block_envelope", "nap", "open_block",
    "versions_fields", "versions_from_fields",
]

TAG = 7101
MAX_HEADER = 1 << 20
MAX_ARRAYS = 8192
MAX_BYTES = 1 << 32  # one message: a block of full frames stays far below
_DTYPES = frozenset({"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f4", "<f8"})
KINDS = frozenset({
    # worker -> rank 0
    "hello", "failed", "block", "progress", "status", "image", "info", "held", "bye",
    # rank 0 -> worker
    "open", "start", "ack", "hold", "change", "rois", "frames", "tick", "stop", "exit",
})
_LEN = struct.Struct("<Q")
_Desc = tuple[str, tuple[int, ...]]


class LinkError(ValueError):
    """A message between ranks that is not what this module sends (one line)."""


def nap(seconds: float) -> None:
    """Sleep between polls (never a busy wait)."""
    time.sleep(seconds)


@dataclass(frozen=True)
class Envelope:
    """One message: its kind, msgpack-able fields, and arrays sent as raw bytes."""

    kind: str
    fields: Mapping[str, Any]
    arrays: tuple[npt.NDArray[Any], ...] = ()

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)


def _up8(n: int) -> int:
    return (n + 7) & ~7


def _le(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a = np.asarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    if a.dtype.str not in _DTYPES:
        raise LinkError(f"send: expected a dtype in {sorted(_DTYPES)}, found {a.dtype.str}")
    return a


def pack(env: Envelope) -> npt.NDArray[np.uint8]:
    """The bytes of one message (see the module docstring)."""
    if env.kind not in KINDS:
        raise LinkError(f"send: expected a kind in {sorted(KINDS)}, found {env.kind!r}")
    arrays = [_le(a) for a in env.arrays]
    head = msgpack.packb({"kind": env.kind, "fields": dict(env.fields),
                          "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]}, use_bin_type=True)
    offsets, at = [], _up8(_LEN.size + len(head))
    for a in arrays:
        offsets.append(at)
        at = _up8(at + a.nbytes)
    out = np.zeros(at, np.uint8)
    out[:_LEN.size] = np.frombuffer(_LEN.pack(len(head)), np.uint8)
    out[_LEN.size:_LEN.size + len(head)] = np.frombuffer(head, np.uint8)
    for a, off in zip(arrays, offsets, strict=True):
        out[off:off + a.nbytes] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    return out


def unpack(buf: npt.NDArray[np.uint8], source: int) -> Envelope:
    """The envelope in one received message (views of ``buf``); LinkError if malformed."""
    where = f"rank {source}"
    if buf.nbytes < _LEN.size:
        raise LinkError(f"{where}: expected a message of at least {_LEN.size} bytes, found {buf.nbytes}")
    (hlen,) = _LEN.unpack(buf[:_LEN.size].tobytes())
    if not 0 < hlen <= min(MAX_HEADER, buf.nbytes - _LEN.size):
        raise LinkError(f"{where}: expected a header of 1 to {MAX_HEADER} bytes within the message, found {hlen}")
    kind, fields, descs = _header(buf[_LEN.size:_LEN.size + hlen].tobytes(), where)
    at, arrays = _up8(_LEN.size + hlen), []
    for dtype, shape in descs:
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if at + nbytes > buf.nbytes:
            raise LinkError(f"{where}: expected arrays within the {buf.nbytes}-byte message, found them longer")
        arrays.append(_typed(buf[at:at + nbytes], (dtype, shape)))
        at = _up8(at + nbytes)
    if at != buf.nbytes:
        raise LinkError(f"{where}: expected a {at}-byte message for its header, found {buf.nbytes} bytes")
    return Envelope(kind, fields, tuple(arrays))


class Outbox:
    """Sends to one rank; keeps each message's bytes alive until its send completes."""

    def __init__(self, comm: MPI.Comm, dest: int) -> None:
        self._comm, self._dest = comm, dest
        self._flight: list[tuple[MPI.Request, npt.NDArray[np.uint8]]] = []

    def send(self, env: Envelope) -> None:
        """Start sending ``env`` (returns at once)."""
        buf = pack(env)
        self._flight.append((self._comm.Isend([buf, MPI.BYTE], self._dest, TAG), buf))

    def progress(self) -> int:
        """Test the sends in flight (MPI moves data only while we call it); how many remain."""
        self._flight = [(req, buf) for req, buf in self._flight if not req.Test()]
        return len(self._flight)

    def flush(self, timeout: float, *, poll: float = 0.001) -> bool:
        """Wait (sleeping) until every send completed; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while self.progress():
            if time.monotonic() >= deadline:
                return False
            nap(poll)
        return True

    def abandon(self) -> None:
        """Forget the sends in flight (their receiver is gone)."""
        self._flight = []


class Inbox:
    """Receives from one rank without ever blocking."""

    def __init__(self, comm: MPI.Comm, source: int) -> None:
        self._comm, self._source = comm, source
        self._pending: tuple[MPI.Request, npt.NDArray[np.uint8]] | None = None

    def poll(self, limit: int = 64) -> list[Envelope]:
        """The messages complete now (at most ``limit``), oldest first.

        Raises:
            LinkError: a message that is not what :class:`Outbox` sends.
        """
        out: list[Envelope] = []
        while len(out) < limit:
            if self._pending is not None:
                req, buf = self._pending
                try:
                    if not req.Test():
                        break
                except MPI.Exception as exc:
                    raise LinkError(f"rank {self._source}: expected a message as probed, found {exc}") from None
                self._pending = None
                out.append(unpack(buf, self._source))
                continue
            status = MPI.Status()
            if not self._comm.Iprobe(source=self._source, tag=TAG, status=status):
                break
            size = status.Get_count(MPI.BYTE)
            if not _LEN.size <= size <= MAX_BYTES:
                raise LinkError(f"rank {self._source}: expected a message of {_LEN.size} to {MAX_BYTES} bytes, "
                                f"found {size}")
            buf = np.empty(size, np.uint8)
            self._pending = (self._comm.Irecv([buf, MPI.BYTE], self._source, TAG), buf)
        return out


def _header(raw: bytes, where: str) -> tuple[str, dict[str, Any], list[_Desc]]:
    try:
        head = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for corrupt input
        raise LinkError(f"{where}: expected a msgpack header, found undecodable bytes ({type(exc).__name__})") from None
    if not isinstance(head, dict) or set(head) != {"kind", "fields", "arrays"}:
        raise LinkError(f"{where}: expected a header with kind, fields and arrays, found {str(head)[:60]}")
    kind, fields, descs = head["kind"], head["fields"], head["arrays"]
    if kind not in KINDS or not isinstance(fields, dict) or not isinstance(descs, list) or len(descs) > MAX_ARRAYS:
        raise LinkError(f"{where}: expected a known kind, a field map and at most {MAX_ARRAYS} arrays, "
                        f"found kind {str(kind)[:40]!r}")
    parsed: list[_Desc] = []
    for i, d in enumerate(descs):
        ok = (isinstance(d, list) and len(d) == 2 and d[0] in _DTYPES and isinstance(d[1], list)
              and 1 <= len(d[1]) <= 4 and all(isinstance(n, int) and 0 <= n < MAX_BYTES for n in d[1]))
        if not ok:
            raise LinkError(f"{where}: arrays[{i}]: expected [dtype, shape] with a known dtype, found {str(d)[:60]}")
        parsed.append((d[0], tuple(d[1])))
    return kind, dict(fields), parsed


def _typed(buf: npt.NDArray[np.uint8], desc: _Desc) -> npt.NDArray[Any]:
    dtype, shape = desc
    a = buf.view(np.dtype(dtype)).reshape(shape) if buf.nbytes else np.zeros(shape, np.dtype(dtype))
    if a.dtype == np.bool_ and a.size and int(buf.max()) > 1:
        raise LinkError("arrays: expected bools as bytes 0/1, found other values")
    return a


# --- blocks ------------------------------------------------------------------------------


def block_envelope(block: ShotBlock, fields: Mapping[str, Any]) -> Envelope:
    """A block as the console wire's block message (cutouts, points) plus its full frames."""
    frames = wire.encode(BlockMsg(0, block.with_(frames={})))
    arrays: list[npt.NDArray[Any]] = [np.frombuffer(f, np.uint8) for f in frames[1:]]
    dets = []
    for det, fr in block.frames.items():
        dets.append(det)
        arrays += [fr.pixels, fr.shot.astype(np.int64)]
    return Envelope("block", {**fields, "wire": len(frames) - 1, "frames": dets}, tuple(arrays))


def open_block(env: Envelope) -> ShotBlock:
    """The block in a ``block`` envelope, validated (LinkError naming what is wrong)."""
    n_wire, dets = env.fields.get("wire"), env.fields.get("frames")
    if not isinstance(n_wire, int) or not isinstance(dets, list) or n_wire + 2 * len(dets) != len(env.arrays):
        raise LinkError(f"block: expected wire frames and 2 arrays per frame detector, found {len(env.arrays)} arrays")
    try:
        msg = wire.decode([b"block", *(a.data for a in env.arrays[:n_wire])])
    except wire.WireError as exc:
        raise LinkError(f"block: {exc}") from None
    if not isinstance(msg, BlockMsg):
        raise LinkError(f"block: expected a block message, found {type(msg).__name__}")
    frames: dict[str, Frames] = {}
    rest: Sequence[npt.NDArray[Any]] = env.arrays[n_wire:]
    for k, det in enumerate(dets):
        if not isinstance(det, str):
            raise LinkError(f"block.frames: expected detector names, found {str(det)[:40]}")
        frames[det] = Frames(rest[2 * k], rest[2 * k + 1])
    try:
        return msg.block.with_(frames=frames).validate()
    except ValueError as exc:
        raise LinkError(f"block: {exc}") from None


# --- ROI versions --------------------------------------------------------------------------


def versions_fields(active: Mapping[str, RoiVersion]) -> dict[str, dict[str, Any]]:
    """Active ROI versions (key -> version) as msgpack-able fields (rectangles only)."""
    return {key: {"name": v.name, "version": v.version, "detector": v.detector, "x": list(v.x), "y": list(v.y)}
            for key, v in active.items()}


def versions_from_fields(fields: Any) -> dict[str, RoiVersion]:
    """The versions of :func:`versions_fields` (LinkError where they are not that)."""
    if not isinstance(fields, dict):
        raise LinkError(f"rois: expected a map of ROI keys, found {type(fields).__name__}")
    out: dict[str, RoiVersion] = {}
    for key, f in fields.items():
        try:
            if not isinstance(f, dict):
                raise ValueError("expected a map")
            version = f.get("version")
            roi = Roi.model_validate({k: v for k, v in f.items() if k != "version"})
            if not isinstance(version, int) or version < 1 or split_roi_key(str(key)) != (roi.name, version):
                raise ValueError(f"expected the key {roi.name}/v{version} and a version >= 1")
        except ValueError as exc:
            raise LinkError(f"rois[{str(key)[:40]!r}]: {str(exc).splitlines()[0]}") from None
        out[key] = RoiVersion(roi.name, version, roi.detector, roi.x, roi.y, 0, 0)
    return out
