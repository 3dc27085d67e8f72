"""Reading an array's rows chunk file by chunk file: bounded, checked, and fast.

Every read of data shotwatch does (reader, append, repair, darks) comes here, not through
zarr's asynchronous codec pipeline, for two reasons:

* **Bounds.** A chunk is read with :func:`~._store.read_regular` (regular files only, at most
  what one chunk can take encoded) and decoded straight into a buffer of exactly the chunk's
  size, so no header in a crafted file decides how much memory a decoder allocates (blosc
  and zstd size their output from the header; gzip has no bound at all). A chunk decodes
  to at most :data:`MAX_CHUNK_BYTES`; an array whose chunks would be larger, or whose codecs
  are not FORMAT.md's (``bytes``, then at most one of ``blosc``, ``zstd``, ``gzip``), is
  refused when the recording is opened.
* **Speed.** The writer's chunks are whole rows (``chunks[1:] == shape[1:]``), so a chunk
  inside the rows asked for decodes in place into the result: no temporary, no copy, and
  none of zarr's per-chunk bookkeeping (a few hundred microseconds per chunk).

A chunk file that is missing reads as the fill value (zarr's rule); one that is not a regular
file or larger than a chunk can be encoded is refused (RecordingError, exit 2: something put
it there); one that cannot be read or decoded raises RecordingReadError naming the array and
the chunk (exit 1: the recording is damaged).
"""

from __future__ import annotations

import itertools
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numcodecs.blosc
import numcodecs.zstd
import numpy as np
import numpy.typing as npt
import zarr
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec
from zarr.core.metadata import ArrayV3Metadata
from zarr.types import AnyArray

from ..schemas.errors import RecordingError
from ._format import RecordingReadError
from ._store import SafeStore, UnsafeFile, read_regular

__all__ = ["MAX_CHUNK_BYTES", "ChunkSpec", "chunk_spec", "read_rows", "require_chunks", "rows_on_disk"]

Array = npt.NDArray[Any]
MAX_CHUNK_BYTES = 256 << 20
"""Most bytes one chunk may decode to (the writer's are <= 4 MiB; a full AGIPD frame is 4 MiB)."""
_BLOSC_HEADER = struct.Struct("<BBBBIII")


@dataclass(frozen=True)
class ChunkSpec:
    """How the chunk files of one array are found, bounded and decoded."""

    directory: Path | None
    """The array's directory (None: not in a local store, read through zarr)."""
    chunks: tuple[int, ...]
    stored: np.dtype[Any]
    """The dtype of the decoded bytes (with the stored byte order)."""
    compressor: str
    """``""`` (bytes only), ``"blosc"``, ``"zstd"`` or ``"gzip"``."""
    nbytes: int
    """Bytes of one decoded chunk."""
    max_file: int
    """Most bytes one chunk file may have."""


def chunk_spec(array: AnyArray, where: str | os.PathLike[str]) -> ChunkSpec:
    """The ChunkSpec of ``array``; RecordingError naming it if FORMAT.md does not allow it.

    Registers the cap of its chunk files with the array's store when it is a SafeStore.
    """
    meta = array.metadata
    if not isinstance(meta, ArrayV3Metadata):
        raise RecordingError(f"{where}: {array.path}: expected a zarr v3 array, found zarr format {meta.zarr_format}")
    codecs = list(meta.codecs)
    found = ", ".join(type(c).__name__ for c in codecs) or "none"
    if not codecs or not isinstance(codecs[0], BytesCodec) or len(codecs) > 2 or (
            len(codecs) == 2 and not isinstance(codecs[1], BloscCodec | ZstdCodec | GzipCodec)):
        raise RecordingError(f"{where}: {array.path}: expected the codecs bytes and at most one of blosc, zstd, "
                             f"gzip (FORMAT.md), found {found}")
    dtype = np.dtype(array.dtype)
    endian = codecs[0].endian
    if endian is not None and dtype.itemsize > 1:
        dtype = dtype.newbyteorder("<" if endian.value == "little" else ">")
    chunks = tuple(int(c) for c in array.chunks)
    nbytes = math.prod(chunks) * dtype.itemsize
    if nbytes > MAX_CHUNK_BYTES or min(chunks, default=1) < 1:
        raise RecordingError(f"{where}: {array.path}: expected chunks of at most {MAX_CHUNK_BYTES >> 20} MiB, "
                             f"found chunks of {list(chunks)} {dtype.name} ({nbytes} bytes)")
    compressor = {BloscCodec: "blosc", ZstdCodec: "zstd", GzipCodec: "gzip"}.get(
        type(codecs[1]), "") if len(codecs) == 2 else ""
    # Encoded size bound: raw bytes plus the worst expansion of each compressor on
    # incompressible data (blosc: a 16-byte header; zstd and gzip: well under 1 %).
    max_file = nbytes if not compressor else nbytes + nbytes // 64 + 4096
    store = array.store
    directory = Path(store.root) / array.path if isinstance(store, zarr.storage.LocalStore) else None
    if isinstance(store, SafeStore):
        store.register(array.path, max_file)
    return ChunkSpec(directory, chunks, dtype, compressor, nbytes, max_file)


def read_rows(array: AnyArray, a: int, b: int, where: str | os.PathLike[str],
              spec: ChunkSpec | None = None) -> Array:
    """Rows ``[a, b)`` of ``array`` (``b`` clipped to its length) in native byte order.

    Raises:
        RecordingError: a chunk file is not a regular file, or larger than one chunk can
            be encoded.
        RecordingReadError: a chunk file cannot be read or does not decode to exactly one
            chunk; the message names the array and the chunk.
    """
    spec = spec or chunk_spec(array, where)
    shape = tuple(int(n) for n in array.shape)
    b = min(b, shape[0])
    out = np.empty((max(b - a, 0), *shape[1:]), dtype=np.dtype(array.dtype))
    if b <= a:
        return out
    if spec.directory is None:  # pragma: no cover - recordings are always local stores
        out[...] = array[a:b]
        return out
    whole_rows = spec.chunks[1:] == shape[1:] and spec.stored == out.dtype
    c = spec.chunks[0]
    for coords in _chunk_coords(shape, spec.chunks, a // c, -(-b // c)):
        lo = coords[0] * c
        key = array.metadata.encode_chunk_key(coords)
        try:
            data = read_regular(spec.directory / key, spec.max_file)
        except (FileNotFoundError, NotADirectoryError):
            _region(out, coords, spec.chunks, a, b)[0][...] = array.fill_value
            continue
        except UnsafeFile as exc:  # planted, not decayed: bad input (exit 2), unlike a damaged chunk
            raise RecordingError(f"{where}: {array.path}: expected a regular file of at most "
                                 f"{spec.max_file} bytes as chunk {key}, found {exc.what}") from None
        except OSError as exc:
            raise _damaged(where, array, key, exc) from None
        try:
            if whole_rows and a <= lo and lo + c <= b:
                _decode(data, out[lo - a:lo - a + c], spec)  # in place: the chunk is inside the result
            else:
                tmp = np.empty(spec.chunks, dtype=spec.stored)
                _decode(data, tmp, spec)
                dst, src = _region(out, coords, spec.chunks, a, b)
                dst[...] = tmp[src]
        except (ValueError, RuntimeError, TypeError, zlib.error) as exc:
            raise _damaged(where, array, key, exc) from None
    return out


def rows_on_disk(array: AnyArray, spec: ChunkSpec) -> int:
    """Rows up to the end of the last chunk file on disk (at most the array's length).

    Rows past it read as the fill value: a reader that only wants written rows (the frames'
    ``shot``, repair's tags) reads no further, whatever length the metadata claims.
    """
    last = -1
    for coords in _present(array, spec):
        last = max(last, coords[0])
    return min(int(array.shape[0]), (last + 1) * spec.chunks[0])


def require_chunks(array: AnyArray, rows: int, spec: ChunkSpec, where: str | os.PathLike[str],
                   what: str) -> None:
    """RecordingError unless every chunk file holding rows ``[0, rows)`` is on disk.

    For arrays whose every row is written (``tag``, a dark): a claim of more rows than the
    files hold (``committed`` = 4e8 over a few chunk files) is refused from a directory
    listing, before anything that size is allocated or read.
    """
    if rows <= 0:
        return
    shape = (rows, *(int(n) for n in array.shape[1:]))
    need = math.prod(-(-n // c) for n, c in zip(shape, spec.chunks, strict=True))
    present = set(_present(array, spec))
    if len(present) < need:
        raise RecordingError(f"{where}: {array.path}: expected {need} chunk file(s) for {what}, found "
                             f"{len(present)} (chunk files missing?)")
    for coords in _chunk_coords(shape, spec.chunks, 0, -(-rows // spec.chunks[0])):
        if coords not in present:
            raise RecordingError(f"{where}: {array.path}: expected chunk file {array.metadata.encode_chunk_key(coords)} "
                                 f"for {what}, found none (chunk files missing?)")


# --- internals --------------------------------------------------------------------------


def _chunk_coords(shape: tuple[int, ...], chunks: tuple[int, ...], k0: int, k1: int) -> Iterator[tuple[int, ...]]:
    tails = [range(-(-n // c)) for n, c in zip(shape[1:], chunks[1:], strict=True)]
    for k in range(k0, k1):
        for rest in itertools.product(*tails):
            yield (k, *rest)


def _region(out: Array, coords: tuple[int, ...], chunks: tuple[int, ...], a: int,
            b: int) -> tuple[Array, tuple[slice, ...]]:
    """The part of ``out`` (rows a..b) that chunk ``coords`` covers, and the chunk's slice of it."""
    dst: list[slice] = []
    src: list[slice] = []
    for axis, (k, c) in enumerate(zip(coords, chunks, strict=True)):
        start, n = (a, b - a) if axis == 0 else (0, out.shape[axis])
        lo, hi = max(k * c, start), min((k + 1) * c, start + n)
        dst.append(slice(lo - start, hi - start))
        src.append(slice(lo - k * c, hi - k * c))
    return out[tuple(dst)], tuple(src)


def _decode(data: memoryview, dest: Array, spec: ChunkSpec) -> None:
    """Decode one chunk file into ``dest`` (C-contiguous, exactly one chunk)."""
    if spec.compressor == "blosc":
        # Check the header first: blosc trusts its sizes (cbytes past the buffer would read
        # out of bounds), and we decode into a buffer of exactly one chunk.
        if len(data) < _BLOSC_HEADER.size:
            raise ValueError(f"{len(data)} bytes, fewer than a blosc header")
        nbytes, cbytes = _BLOSC_HEADER.unpack_from(data)[4], _BLOSC_HEADER.unpack_from(data)[6]
        if nbytes != spec.nbytes or cbytes != len(data):
            raise ValueError(f"a blosc header for {nbytes} bytes in {cbytes}, expected {spec.nbytes} bytes "
                             f"in {len(data)}")
        numcodecs.blosc.decompress(data, dest)
    elif spec.compressor == "zstd":
        numcodecs.zstd.decompress(data, dest)  # bounded by dest; a shorter frame fails
    elif spec.compressor == "gzip":
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        raw = inflate.decompress(bytes(data), spec.nbytes + 1)
        if len(raw) != spec.nbytes or not inflate.eof:
            raise ValueError(f"gzip data of {len(raw)}{'+' if not inflate.eof else ''} bytes, expected {spec.nbytes}")
        dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(raw, np.uint8)
    else:
        if len(data) != spec.nbytes:
            raise ValueError(f"{len(data)} bytes, expected {spec.nbytes}")
        dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8)


def _damaged(where: str | os.PathLike[str], array: AnyArray, key: str, exc: BaseException) -> RecordingReadError:
    why = " ".join(str(exc).split())[:200]
    return RecordingReadError(f"{where}: {array.path}: expected a readable chunk {key}, found it damaged "
                              f"({type(exc).__name__}: {why})")


def _present(array: AnyArray, spec: ChunkSpec) -> Iterator[tuple[int, ...]]:
    """Coordinates of the chunk files on disk (regular files with a valid key)."""
    if spec.directory is None:  # pragma: no cover - recordings are always local stores
        return
    meta = array.metadata
    assert isinstance(meta, ArrayV3Metadata)  # chunk_spec refused anything else
    decode = _key_decoder(meta.chunk_key_encoding)
    ndim = len(spec.chunks)
    for dirpath, dirs, files in os.walk(spec.directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = os.path.relpath(dirpath, spec.directory)
        for name in files:
            if name == "zarr.json" or name.endswith(".partial") or name.startswith("."):
                continue
            try:
                coords = decode(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
            except (ValueError, IndexError):
                continue
            if len(coords) == ndim and all(k >= 0 for k in coords):
                yield coords


def _key_decoder(encoding: Any) -> Callable[[str], tuple[int, ...]]:
    """Chunk key -> coordinates (zarr 3.1's own decoder mis-reads ``c.0.0``); ValueError if not one."""
    sep, prefix = str(encoding.separator), "c" if encoding.name == "default" else ""

    def decode(key: str) -> tuple[int, ...]:
        if prefix:
            if not key.startswith(prefix + sep):
                raise ValueError(key)
            key = key[len(prefix) + len(sep):]
        parts = key.split(sep)
        if not all(p.isascii() and p.isdigit() for p in parts):
            raise ValueError(key)
        return tuple(int(p) for p in parts)

    return decode
