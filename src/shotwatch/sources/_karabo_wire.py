"""The karabo bridge's wire, read by us: ZeroMQ frames -> (data, meta) of one train.

``karabo_bridge.Client`` hands protocol 1.0 messages to ``msgpack_numpy``, whose decoder
unpickles any map that says it holds an object array: a bridge (or anyone who can reach the
port) could run code in the recorder. So the frames are read here, with msgpack's safe
settings (``raw=False``, ``strict_map_key``, no hook that unpickles), sizes bounded before
anything is kept, and only the documented protocol accepted (FACILITY.md, DESIGN.md "What an
untrusted peer cannot do"):

- **2.2**: pairs of frames: a msgpack header ``{"source", "content": "msgpack", "metadata"}``
  followed by the source's msgpack map of properties, or a header ``{"source", "content":
  "array", "path", "dtype", "shape"}`` followed by the raw array buffer.
- **1.0**: one msgpack frame ``{source: {key: value, "metadata": {...}}}`` whose arrays are
  msgpack-numpy maps ``{b"nd": True, b"type", b"kind", b"shape", b"data"}`` of a numeric dtype.

Anything else (an object or structured dtype, a size that does not match its buffer, an
unknown content, a stray frame) is a :class:`BadMessage`, which the source counts and skips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import zmq

__all__ = ["MAX_MESSAGE_BYTES", "MAX_PARTS", "BadMessage", "BridgeSocket", "Train", "decode"]

Train = tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]

MAX_MESSAGE_BYTES = 8 << 30
"""A train larger than this is refused (AGIPD 1M, 352 pulses, corrected with mask and gain,
is about 3.3 GB); one frame larger than it makes ZeroMQ drop the connection."""
MAX_PARTS = 20_000
"""Frames in one message at most (a source has a few arrays; a train a few hundred sources)."""

_KINDS = frozenset("biufc")  # bool, int, uint, float, complex: never object (pickles) or void
_SOCKETS = {"REQ": zmq.REQ, "SUB": zmq.SUB, "PULL": zmq.PULL}


class BadMessage(ValueError):
    """A message that is not the documented karabo-bridge protocol (refused, counted)."""


def _unpack(buf: bytes | memoryview, *, hook: Any = None) -> Any:
    # strict_map_key: only str/bytes keys; no ext types are given meaning; no object_hook
    # except ours, which builds numeric arrays only.
    try:
        return msgpack.unpackb(buf, raw=False, strict_map_key=True, object_hook=hook,
                               ext_hook=_refuse_ext, use_list=True)
    except BadMessage:
        raise
    except Exception as exc:
        raise BadMessage(f"expected msgpack, found undecodable bytes ({type(exc).__name__}: {exc})") from None


def _refuse_ext(code: int, data: bytes) -> Any:
    raise BadMessage(f"expected plain msgpack, found extension type {code}")


def _dtype(text: Any) -> np.dtype[Any]:
    if not isinstance(text, str) or len(text) > 16:
        raise BadMessage(f"expected a numeric dtype string, found {text!r:.40}")
    try:
        dt = np.dtype(text)
    except TypeError:
        raise BadMessage(f"expected a numeric dtype, found {text!r}") from None
    if dt.kind not in _KINDS or dt.fields is not None or dt.subdtype is not None:
        raise BadMessage(f"expected a numeric dtype, found {text!r} (kind {dt.kind!r})")
    return dt


def _array(dtype: Any, shape: Any, buf: bytes | memoryview) -> np.ndarray:
    """A read-only view of ``buf`` as ``shape``, after checking that the sizes agree."""
    dt = _dtype(dtype)
    if not isinstance(shape, (list, tuple)) or len(shape) > 8 or not all(
            type(n) is int and 0 <= n < 1 << 40 for n in shape):
        raise BadMessage(f"expected a shape of at most 8 non-negative ints, found {shape!r:.60}")
    need = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if need != len(buf):
        raise BadMessage(f"expected {need} bytes for {dt.str}{list(shape)}, found {len(buf)}")
    return np.frombuffer(buf, dtype=dt).reshape(shape)


def _numpy_map(obj: dict[Any, Any]) -> Any:
    """msgpack-numpy's encoding of arrays and numpy scalars (protocol 1.0), numeric only."""
    if b"nd" not in obj:
        if b"complex" in obj:
            raise BadMessage("expected numeric values, found a msgpack-numpy complex")
        return obj
    if obj.get(b"kind", b"") != b"":  # b"O" would be unpickled by msgpack_numpy; b"V" structured
        raise BadMessage(f"refused a msgpack-numpy array of kind {obj.get(b'kind')!r:.10} "
                         "(object arrays are pickles)")
    data = obj.get(b"data")
    if not isinstance(data, bytes):
        raise BadMessage("expected msgpack-numpy data as bytes, found none")
    if obj[b"nd"] is True:
        return _array(obj.get(b"type"), obj.get(b"shape"), data)
    if obj[b"nd"] is False:
        dt = _dtype(obj.get(b"type"))
        if len(data) != dt.itemsize:
            raise BadMessage(f"expected {dt.itemsize} bytes for a {dt.str} scalar, found {len(data)}")
        return np.frombuffer(data, dtype=dt)[0]
    raise BadMessage("expected msgpack-numpy 'nd' to be true or false")


def _source_map(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise BadMessage(f"{where}: expected a map of property names, found {type(value).__name__}")
    return value


def decode(parts: Sequence[bytes | memoryview]) -> Train:
    """One message's frames -> (data, meta), keyed by karabo source name.

    Raises:
        BadMessage: anything that is not protocol 1.0 or 2.2 with numeric arrays.
    """
    if len(parts) == 1:
        top = _source_map(_unpack(parts[0], hook=_numpy_map), "protocol 1.0 message")
        out = {src: _source_map(props, f"source {src!r:.80}") for src, props in top.items()}
        md = {src: props.get("metadata") for src, props in out.items()}
        return out, {src: dict(m) if isinstance(m, Mapping) else {} for src, m in md.items()}
    if len(parts) % 2:
        raise BadMessage(f"expected header/payload pairs (protocol 2.2), found {len(parts)} frames")
    data: dict[str, dict[str, Any]] = {}
    meta: dict[str, dict[str, Any]] = {}
    for i in range(0, len(parts), 2):
        head = _source_map(_unpack(parts[i]), f"frame {i} header")
        src, content = head.get("source"), head.get("content")
        if not isinstance(src, str):
            raise BadMessage(f"frame {i} header: expected a source name, found {src!r:.40}")
        if content == "msgpack":
            data[src] = _source_map(_unpack(parts[i + 1]), f"source {src!r:.80}")
            md = head.get("metadata") or {}
            meta[src] = dict(md) if isinstance(md, Mapping) else {}
        elif content == "array":
            path = head.get("path")
            if src not in data or not isinstance(path, str):
                raise BadMessage(f"frame {i}: expected an array of a source already described, "
                                 f"found {src!r:.80} / {path!r:.40}")
            data[src][path] = _array(head.get("dtype"), head.get("shape"), parts[i + 1])
        else:
            raise BadMessage(f"frame {i} header: expected content 'msgpack' or 'array', found {content!r:.40}")
    return data, meta


@dataclass
class Received:
    """The frames of one message, or why it was refused before decoding."""

    parts: list[memoryview]
    refused: str | None = None


class BridgeSocket:
    """A REQ, SUB or PULL socket on a bridge that reads whole messages within bounds.

    Args:
        ctx: the ZeroMQ context.
        endpoint: ``tcp://host:port``.
        kind: ``"REQ"`` (asks ``b"next"`` for each train), ``"SUB"`` or ``"PULL"``.
        max_bytes: a message larger than this is drained and refused, never kept.
    """

    def __init__(self, ctx: zmq.Context[Any], endpoint: str, kind: str, *, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.kind, self.max_bytes = kind, max_bytes
        self.sock = ctx.socket(_SOCKETS[kind])
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, max(1, max_bytes))  # a larger frame: ZeroMQ drops the peer
        self.sock.setsockopt(zmq.RCVHWM, 2)  # trains are large: a slow reader drops, never hoards
        if kind == "SUB":
            self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)
        self._asked = False

    def receive(self, timeout: float) -> Received | None:
        """The next message's frames within ``timeout`` seconds, or None."""
        if self.kind == "REQ" and not self._asked:
            self.sock.send(b"next")
            self._asked = True
        if not self.sock.poll(max(0, int(timeout * 1000)), zmq.POLLIN):
            return None
        self._asked = False
        parts: list[memoryview] = []
        total, refused = 0, None
        while True:  # a multipart message arrives whole: its frames are all here already
            frame = self.sock.recv(copy=False)
            total += len(frame.buffer)
            if refused is None and (len(parts) >= MAX_PARTS or total > self.max_bytes):
                refused = f"expected at most {MAX_PARTS} frames and {self.max_bytes} bytes, found more"
                parts = []  # drop what was kept; read the rest without keeping it
            if refused is None:
                parts.append(frame.buffer)
            if not frame.more:
                return Received(parts, refused)

    def close(self) -> None:
        self.sock.close(linger=0)
