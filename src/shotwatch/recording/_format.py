"""FORMAT.md v1 constants and the small pieces writer, reader and repair share.

Layout choices that FORMAT.md leaves to the writer live here, with the reasons:

* **Chunks along ``shot``.** 1-D per-shot arrays use 4096 shots per chunk (32 KiB of float64);
  cutouts use the power of two nearest 4 MiB of raw pixels (64x64 uint16 -> 512 shots), so a
  4096-shot read is always chunk-aligned, and files stay few (each file costs ~1 ms to create
  and rename on ext4, whatever its size). The chunk size is fixed at creation and independent
  of the rate: at 60 Hz a commit (2 s, 120 shots) ends inside a chunk, so the chunk holding
  the end of the last commit is rewritten by the next one (from memory, see ``_chunks``): at
  most one chunk (<= ~4 MiB) per array per commit, far cheaper than tying chunks to an
  estimated rate that is wrong whenever the beam rate changes. Every chunk file is replaced
  atomically (write a temporary, rename), so rewriting a chunk that holds committed shots
  cannot lose them in a crash.
* **Codecs.** Integer pixels: blosc zstd level 1 with byte shuffle (~3.5x on photon-counting
  data at > 2 GB/s per core); everything else: blosc lz4 with shuffle (noisy floats barely
  compress, and lz4 costs almost nothing). Both are standard zarr v3 codecs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.types import AnyArray

from ..schemas.errors import RecordingError, ShotwatchRuntimeError
from ._store import SafeStore, UnsafeFile

__all__ = [
    "CHUNK_KEYS", "FORMAT", "SHOT_CHUNK", "VERSION", "RecordingReadError", "RecordingWriteError", "check_attrs", "check_path",
    "codecs_for", "decode_name", "disk_bytes", "encode_name", "json_object", "jsonable", "open_root", "pixel_chunk",
    "remove_temp_files", "trim_array",
]

FORMAT = "shotwatch.recording"
VERSION = 1
ATTR_KEY = "shotwatch"
SHOT_CHUNK = 4096
_PIXEL_CHUNK_BYTES = 4 << 20
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
# Chunk files "c.<i>.0.0" side by side in the array's directory, not one directory per
# chunk index: on ext4 each new directory cost more than the chunk file itself.
CHUNK_KEYS: dict[str, Any] = {"name": "default", "separator": "."}
# zarr writes every key to "<key>.<uuid hex>.partial" and renames it; a crash leaves these.
TEMP_SUFFIX = ".partial"


class RecordingWriteError(OSError, ShotwatchRuntimeError):
    """Writing a recording failed (disk full, I/O error); the last commit is intact.

    An :class:`OSError` (``errno`` from the underlying failure) and a
    :class:`~shotwatch.schemas.ShotwatchRuntimeError` (exit code 1); ``str()`` is one line
    naming the recording.
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(errno, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class RecordingReadError(ShotwatchRuntimeError):
    """A chunk of a recording cannot be read or decoded: the recording is damaged on disk.

    A :class:`~shotwatch.schemas.ShotwatchRuntimeError` (exit code 1); ``str()`` is one line
    naming the recording, the array and the chunk.
    """


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def encode_name(name: str) -> str:
    """A facility name as an array/group name: every char outside ``[A-Za-z0-9._-]`` as %XX.

    zarr reserves node names starting with ``__`` and the names ``.``/``..``; those get their
    first character encoded too (the ``name`` attribute keeps the original either way).
    """
    out = "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in name)
    if out.startswith("__") or out in (".", ".."):
        out = f"%{ord(out[0]):02X}{out[1:]}"
    return out or "%"  # an empty name cannot be a node; "%" never comes out of a real name


def decode_name(encoded: str) -> str:
    """Inverse of :func:`encode_name` (used only where the ``name`` attribute is missing)."""
    from urllib.parse import unquote

    return unquote(encoded, errors="strict")


def codecs_for(dtype: np.dtype[Any]) -> tuple[BloscCodec]:
    """Compressor for one array (see the module docstring for the choice)."""
    if dtype.kind in "iu" and dtype.itemsize > 1:
        return (BloscCodec(cname="zstd", clevel=1, shuffle="shuffle", typesize=dtype.itemsize),)
    return (BloscCodec(cname="lz4", clevel=1, shuffle="shuffle", typesize=dtype.itemsize),)


def pixel_chunk(shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
    """Shots per chunk for a per-shot image array: the power of two nearest 4 MiB, <= 4096."""
    per_shot = max(1, math.prod(shape) * dtype.itemsize)
    shots = max(1.0, _PIXEL_CHUNK_BYTES / per_shot)
    return int(min(SHOT_CHUNK, 2 ** round(math.log2(shots))))


def jsonable(value: Any) -> Any:
    """``value`` as strict JSON types: numpy values converted, NaN/inf as None.

    zarr would write NaN as a bare ``NaN`` token, which strict JSON readers refuse.
    """
    return _finite(json.loads(json.dumps(value, default=_json_default)))


def json_object(value: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`jsonable` of a mapping, typed as the object it stays."""
    out = jsonable(value)
    assert isinstance(out, dict)
    return out


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def check_path(path: Path, what: str = "a shotwatch recording") -> None:
    """RecordingError (naming ``path``) unless it is a directory holding a ``zarr.json``."""
    if not (path / "zarr.json").is_file():
        found = ("a directory without zarr.json" if path.is_dir() else "a regular file" if path.is_file()
                 else "nothing" if not path.exists() else "something other than a directory")
        raise RecordingError(f"{path}: expected {what} (a zarr v3 group), found {found}")


def open_root(path: Path, *, mode: str, what: str = "a shotwatch recording") -> zarr.Group:
    """The recording's (or dark file's) root group; RecordingError (naming ``path``) if it is not one."""
    check_path(path, what)
    try:
        store = SafeStore(path, read_only=(mode == "r"))
        return zarr.open_group(store=store, mode="r" if mode == "r" else "r+", zarr_format=3)
    except UnsafeFile as exc:
        raise RecordingError(str(exc)) from None
    except (ValueError, TypeError, KeyError, FileNotFoundError, RecursionError) as exc:
        raise RecordingError(f"{path}: expected a zarr v3 group, found {_one_line(str(exc))}") from None


def check_attrs(root: zarr.Group, path: Path) -> dict[str, Any]:
    """The ``shotwatch`` root attributes, after checking format and version."""
    attrs = root.attrs.get(ATTR_KEY)
    if not isinstance(attrs, Mapping):
        raise RecordingError(
            f"{path}: expected root attribute {ATTR_KEY!r} of a shotwatch recording, found none"
        )
    fmt, ver = attrs.get("format"), attrs.get("version")
    if fmt != FORMAT or ver != VERSION or isinstance(ver, bool):
        raise RecordingError(
            f"{path}: expected format {FORMAT!r} version {VERSION}, found format {fmt!r} version {ver!r}"
        )
    committed = attrs.get("committed")
    if not isinstance(committed, int) or isinstance(committed, bool) or committed < 0:
        raise RecordingError(f"{path}: expected attribute 'committed' >= 0, found {committed!r}")
    return dict(attrs)


def disk_bytes(path: Path) -> int:
    """Bytes of all files under ``path``."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass  # a chunk being replaced right now
    return total


def remove_temp_files(path: Path, *, dry: bool = False) -> int:
    """Delete what a crash leaves under ``path`` (``dry``: only count it); returns how many.

    zarr's and our ``*.partial`` files, and hidden directories (a dark version being
    written is built in ``.v<k>.<hex>`` and renamed into place).
    """
    removed = 0
    for dirpath, dirs, files in os.walk(path):
        for name in [d for d in dirs if d.startswith(".")]:
            if not dry:
                shutil.rmtree(Path(dirpath, name), ignore_errors=True)
            dirs.remove(name)
            removed += 1
        for name in files:
            if name.endswith(TEMP_SUFFIX):
                if not dry:
                    Path(dirpath, name).unlink(missing_ok=True)
                removed += 1
    return removed


def trim_array(array: AnyArray, length: int) -> int | None:
    """Trim ``array``'s first axis to exactly ``length``; returns the old length if it changed.

    Never grows an array (ValueError if it is shorter than ``length``).

    Whole chunks past the boundary chunk go first (on a full disk that frees the space the
    rest needs). Then the part of the boundary chunk past ``length`` is reset to the fill
    value: zarr keeps that chunk, and stale values (a crashed commit's frames, say) would
    otherwise reappear when the array grows again.
    """
    old = int(array.shape[0])
    if old == length:
        return None
    if length > old:  # growing would invent shots (fill values): callers check lengths first
        raise ValueError(f"{array.path}: expected at least {length} rows to trim to {length}, found {old}")
    chunk = int(array.chunks[0])
    end = min(old, -(-length // chunk) * chunk)
    if end < old:
        array.resize((end, *array.shape[1:]))
    if end > length:
        fill = np.full((end - length, *array.shape[1:]), array.fill_value, dtype=array.dtype)
        array[length:end] = fill
    array.resize((length, *array.shape[1:]))
    return old
