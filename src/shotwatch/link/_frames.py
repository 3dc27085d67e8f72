"""The wire's building blocks: bounds, msgpack headers, raw array frames, trees with arrays.

A message on the wire is a msgpack header plus raw array buffers (one frame each); the header
describes every array (``{"dtype", "shape", "buf"}``) and refers to it by its index in that
list. A *tree* (:data:`~shotwatch.link.messages.Tree`) is JSON-able data with arrays among its
leaves: in a header its arrays are msgpack extension values (type :data:`ARRAY_EXT`, the
array's index as 4 big-endian bytes), so no string a peer sends can pass for an array.

Nothing here trusts its input: every decode validates types, sizes, dtypes (a whitelist, no
object arrays, never pickle) and that shape x itemsize equals the buffer length; anything
wrong raises :class:`WireError` (a ``ValueError``). :mod:`.wire` builds the messages on these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import fields, is_dataclass
from typing import Annotated, Any, Protocol, TypeVar

import msgpack
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ARRAY_EXT", "MAX_ARRAYS", "MAX_ARRAY_BYTES", "MAX_DIM", "MAX_HEADER_BYTES", "MAX_NAME", "MAX_SHOTS",
    "MAX_TEXT", "MAX_TREE_DEPTH", "Arrays", "ArrayDesc", "Buffer", "HasBuffer", "Index", "Name", "Strict",
    "WireError", "as_view", "decode_tree", "encode_tree", "only_wire_errors", "pack", "parse_arrays", "take",
    "tree_in", "tree_out", "typed", "unpack", "validate",
]

# Bounds: generous for real data (a 1,200-shot block of 100x100 uint16 cutouts is 24 MB),
# small enough that a hostile or corrupt message cannot make a console allocate gigabytes.
MAX_HEADER_BYTES = 1 << 20
MAX_ARRAYS = 4096
MAX_ARRAY_BYTES = 1 << 30
MAX_DIM = 1 << 31
MAX_SHOTS = 1 << 20
MAX_NAME = 256
MAX_TEXT = 10_000
MAX_TREE_DEPTH = 32
"""Nesting a tree may have (a reducer state is 4 deep; the depth bounds the decoder's recursion)."""
ARRAY_EXT = 1
"""msgpack extension type of an array reference in a tree."""
_DTYPES = frozenset({"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f4", "<f8"})

Buffer = bytes | bytearray | memoryview
_T = TypeVar("_T")


class WireError(ValueError):
    """A message that is not what the wire format allows (says what was expected and found)."""


class HasBuffer(Protocol):
    """A zmq.Frame received with ``copy=False``."""

    @property
    def buffer(self) -> memoryview: ...


class Strict(BaseModel):
    """A header model: no extra keys, no coercion (msgpack gives exact types)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Index = Annotated[int, Field(ge=0, lt=MAX_ARRAYS)]


class ArrayDesc(Strict):
    """One array of a message: its dtype, shape and buffer frame."""

    dtype: str
    shape: Annotated[list[Annotated[int, Field(ge=0, le=MAX_DIM)]], Field(min_length=1, max_length=3)]
    buf: Index


def pack(obj: dict[str, Any]) -> bytes:
    """msgpack bytes of a header (WireError for a value msgpack cannot carry)."""
    try:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"encode: expected msgpack-serialisable values, found {exc}") from exc


def unpack(frame: Buffer, what: str) -> dict[str, Any]:
    """The msgpack map in ``frame`` (at most :data:`MAX_HEADER_BYTES`)."""
    if len(frame) > MAX_HEADER_BYTES:
        raise WireError(f"{what}: expected at most {MAX_HEADER_BYTES} bytes, found {len(frame)}")
    try:
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for corrupt input
        raise WireError(f"{what}: expected a msgpack map, found undecodable bytes ({type(exc).__name__})") from exc
    if not isinstance(obj, dict):
        raise WireError(f"{what}: expected a msgpack map, found {type(obj).__name__}")
    return obj


def validate(model: type[BaseModel], data: Any, what: str) -> Any:
    """``model`` validated from ``data``; its first error as one WireError line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top)"
        found = repr(err.get("input"))
        found = found if len(found) <= 60 else found[:57] + "..."
        raise WireError(f"{what}.{where}: {err['msg']}, found {found}") from None


def as_view(frame: Buffer | HasBuffer) -> memoryview:
    """A flat byte view of a frame (a zmq.Frame received with copy=False: zero-copy)."""
    view = memoryview(frame) if isinstance(frame, bytes | bytearray | memoryview) else frame.buffer
    return view if view.ndim == 1 and view.itemsize == 1 else view.cast("B")


class Arrays:
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
        if not 1 <= a.ndim <= 3:
            raise WireError(f"encode: expected an array of 1 to 3 dimensions, found {a.ndim}")
        self.descs.append({"dtype": a.dtype.str, "shape": list(a.shape), "buf": len(self.bufs)})
        # memoryview keeps the array alive and lets zmq send without copying
        self.bufs.append(a.reshape(-1).view(np.uint8).data)
        return len(self.descs) - 1

    @property
    def nbytes(self) -> int:
        return sum(memoryview(b).nbytes for b in self.bufs)


def parse_arrays(descs: list[ArrayDesc], bufs: Sequence[memoryview]) -> list[npt.NDArray[Any]]:
    """The arrays the descriptors describe, as read-only views of their frames."""
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


def only_wire_errors(what: str, decode: Callable[[], _T]) -> _T:
    """Run a decoder so that nothing but :class:`WireError` escapes it.

    The checks are meant to catch everything; this is the guarantee that a case they missed
    (numpy or pydantic refusing something in its own words) is still counted and dropped by
    the receiver, not raised through it.
    """
    try:
        return decode()
    except WireError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, MemoryError, RecursionError) as exc:
        raise WireError(f"{what}: expected a well-formed message, found one that fails to decode "
                        f"({type(exc).__name__}: {str(exc)[:80]})") from None


def take(arrays: list[npt.NDArray[Any]], used: set[int], i: int, what: str) -> npt.NDArray[Any]:
    """Array ``i``, which nothing else of the message may use."""
    if i >= len(arrays) or i in used:
        raise WireError(f"{what}: expected an unused array index below {len(arrays)}, found {i}")
    used.add(i)
    return arrays[i]


def typed(a: npt.NDArray[Any], dtype: str, ndim: int, what: str) -> npt.NDArray[Any]:
    """``a`` if it has this dtype and number of dimensions."""
    if a.dtype.str != dtype or a.ndim != ndim:
        raise WireError(f"{what}: expected {dtype} with {ndim} dimension(s), found {a.dtype.str}{list(a.shape)}")
    return a


# --- trees with arrays --------------------------------------------------------------------


def tree_out(obj: Any, arrays: Arrays, *, lenient: bool = False, depth: int = 0) -> Any:
    """``obj`` as msgpack-ready data, its arrays added to ``arrays`` (references in their place).

    numpy scalars become Python numbers, tuples and sets lists, pydantic models their JSON
    dump, dataclasses dicts of their fields. Anything else is a WireError, or its ``str``
    when ``lenient`` (a reply's data: whatever the recorder answers reaches the console).
    """
    if depth > MAX_TREE_DEPTH:
        raise WireError(f"encode: expected a tree at most {MAX_TREE_DEPTH} deep, found a deeper one")
    if obj is None or isinstance(obj, bool | int | float | str | bytes):
        return obj
    if isinstance(obj, np.ndarray):
        return msgpack.ExtType(ARRAY_EXT, arrays.add(obj).to_bytes(4, "big"))
    if isinstance(obj, np.generic):
        return tree_out(obj.item(), arrays, lenient=lenient, depth=depth)
    if isinstance(obj, dict):
        return {str(k): tree_out(v, arrays, lenient=lenient, depth=depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [tree_out(v, arrays, lenient=lenient, depth=depth + 1) for v in obj]
    if isinstance(obj, BaseModel):
        return tree_out(obj.model_dump(mode="json"), arrays, lenient=lenient, depth=depth)
    if is_dataclass(obj) and not isinstance(obj, type):
        return tree_out({f.name: getattr(obj, f.name) for f in fields(obj)}, arrays, lenient=lenient, depth=depth)
    if lenient:
        return str(obj)
    raise WireError(f"encode: expected a tree of None, bool, numbers, str, lists, dicts and arrays, "
                    f"found {type(obj).__name__}")


def tree_in(node: Any, arrays: list[npt.NDArray[Any]], used: set[int], what: str, depth: int = 0) -> Any:
    """The tree ``node`` (from a header) with its array references resolved, each array once."""
    if depth > MAX_TREE_DEPTH:
        raise WireError(f"{what}: expected a tree at most {MAX_TREE_DEPTH} deep, found a deeper one")
    if node is None or isinstance(node, bool | int | float | str | bytes):
        return node
    if isinstance(node, msgpack.ExtType):
        if node.code != ARRAY_EXT or len(node.data) != 4:
            raise WireError(f"{what}: expected an array reference (extension {ARRAY_EXT}, 4 bytes), "
                            f"found extension {node.code} of {len(node.data)} bytes")
        return take(arrays, used, int.from_bytes(node.data, "big"), what)
    if isinstance(node, dict):
        if not all(isinstance(k, str) for k in node):
            raise WireError(f"{what}: expected str keys, found {sorted({type(k).__name__ for k in node})}")
        return {k: tree_in(v, arrays, used, f"{what}.{k[:40]}", depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [tree_in(v, arrays, used, f"{what}[{i}]", depth + 1) for i, v in enumerate(node)]
    raise WireError(f"{what}: expected a tree node, found {type(node).__name__}")


class _TreeHeader(Strict):
    version: int
    type: str
    tree: Any = None
    arrays: Annotated[list[ArrayDesc], Field(max_length=MAX_ARRAYS)] = []


def encode_tree(tree: Any, *, version: int) -> list[Buffer]:
    """Frames ``[header, *buffers]`` of a tree on its own (e.g. a reducer state between processes).

    Raises:
        WireError: something in the tree that is not a tree node, or an array the wire cannot carry.
    """
    arrays = Arrays()
    body = tree_out(tree, arrays)
    return [pack({"version": version, "type": "tree", "tree": body, "arrays": arrays.descs}), *arrays.bufs]


def decode_tree(frames: Sequence[Buffer | HasBuffer], *, version: int,
                max_bytes: int = MAX_ARRAY_BYTES) -> Any:
    """The tree in ``[header, *buffers]`` (arrays are read-only views of the frames).

    Raises:
        WireError: anything malformed, oversized (arrays beyond ``max_bytes`` in all) or
            inconsistent, nothing else.
    """
    return only_wire_errors("tree", lambda: _decode_tree(frames, version, max_bytes))


def _decode_tree(frames: Sequence[Buffer | HasBuffer], version: int, max_bytes: int) -> Any:
    if not 1 <= len(frames) <= MAX_ARRAYS + 1:
        raise WireError(f"tree: expected 1 to {MAX_ARRAYS + 1} frames, found {len(frames)}")
    views = [as_view(f) for f in frames]
    if sum(len(v) for v in views[1:]) > max_bytes:
        raise WireError(f"tree: expected at most {max_bytes} bytes of arrays, found {sum(len(v) for v in views[1:])}")
    head: _TreeHeader = validate(_TreeHeader, unpack(views[0], "tree"), "tree")
    if head.version != version or head.type != "tree":
        raise WireError(f"tree: expected version {version} and type 'tree', found {head.version} and {head.type!r}")
    arrays = parse_arrays(head.arrays, views[1:])
    used: set[int] = set()
    tree = tree_in(head.tree, arrays, used, "tree")
    if len(used) != len(arrays):
        raise WireError(f"tree: expected every array to be used, found {len(arrays) - len(used)} unused")
    return tree
