"""Dark frames on disk: a recording's dark versions (``dark/<det>/v<k>``) and dark files.

Both hold, per detector, a group with float32 arrays ``mean`` and ``std`` of shape (y, x)
(``dimension_names`` ``("y", "x")``) and the attributes ``name`` (the detector), ``frames``,
``first_tag``, ``last_tag`` (and ``time`` in a recording). A dark is written whole into a
hidden directory, fsynced, and renamed into place, so a reader never sees half of one.
Reading checks the metadata first (dtype, shapes, the shape the caller expects), then that
every chunk file is on disk (a dark has no fill values), and only then reads.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from pydantic import ValidationError

from ..schemas import DarkFrame, DarkVersion
from ..schemas.errors import RecordingError
from ._decode import chunk_spec, read_rows, require_chunks
from ._durable import fsync_dir, fsync_file
from ._format import CHUNK_KEYS, codecs_for, decode_name, jsonable, pixel_chunk
from ._store import SafeStore, reading_metadata

__all__ = ["check_frame", "dark_versions", "read_dark", "write_dark_group"]

_F32 = np.dtype(np.float32)
_ATTRS = '{"name": str, "frames": int >= 1, "first_tag": int, "last_tag": int, "time": float}'


def check_frame(det: str, frame: DarkFrame, shape: tuple[int, ...] | None) -> tuple[np.ndarray[Any, Any], ...]:
    """``frame``'s mean and std as float32 (ValueError unless they fit ``shape`` and each other)."""
    arrays = []
    for which, data in (("mean", frame.mean), ("std", frame.std)):
        a = np.asarray(data)
        if a.dtype.kind != "f" or a.ndim != 2 or min(a.shape) < 1:
            raise ValueError(f"dark of {det}: {which}: expected a 2-D float array, found {a.dtype}{list(a.shape)}")
        if shape is not None and tuple(a.shape) != tuple(shape):
            raise ValueError(f"dark of {det}: {which}: expected the detector's shape {list(shape)}, "
                             f"found {list(a.shape)}")
        arrays.append(np.ascontiguousarray(a, dtype=_F32))
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(f"dark of {det}: expected mean and std of one shape, found {list(arrays[0].shape)} "
                         f"and {list(arrays[1].shape)}")
    if frame.frames < 1 or frame.first_tag > frame.last_tag:
        raise ValueError(f"dark of {det}: expected frames >= 1 and first_tag <= last_tag, found frames = "
                         f"{frame.frames}, tags {frame.first_tag} .. {frame.last_tag}")
    return tuple(arrays)


def write_dark_group(target: Path, det: str, frame: DarkFrame, *, shape: tuple[int, ...] | None,
                     attrs: Mapping[str, Any]) -> None:
    """Write the dark group of ``det`` at directory ``target`` (which must not exist), atomically.

    Raises:
        ValueError: ``frame`` does not fit ``shape`` (see :func:`check_frame`).
        FileExistsError, OSError: as the file system says.
    """
    mean, std = check_frame(det, frame, shape)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    try:
        group = zarr.create_group(store=SafeStore(tmp), zarr_format=3, attributes=jsonable(
            {"name": det, "frames": frame.frames, "first_tag": frame.first_tag, "last_tag": frame.last_tag, **attrs}))
        rows = pixel_chunk(mean.shape[1:], _F32)
        for which, data in (("mean", mean), ("std", std)):
            arr = group.create_array(which, shape=data.shape, dtype=_F32, chunks=(min(rows, data.shape[0]),
                                                                                 data.shape[1]),
                                     compressors=codecs_for(_F32), fill_value=np.nan, dimension_names=("y", "x"),
                                     chunk_key_encoding=CHUNK_KEYS)
            arr[...] = data
        sync_tree(tmp)
        os.rename(tmp, target)  # an existing target: ENOTEMPTY/EEXIST, never a merge
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def dark_versions(root: zarr.Group, where: str) -> list[tuple[DarkVersion, zarr.Group]]:
    """Every ``dark/<det>/v<k>`` group of a recording with its validated attributes."""
    with reading_metadata(root):
        dark = root.get("dark")
    if not isinstance(dark, zarr.Group):
        return []
    out = []
    with reading_metadata(dark):
        per_dets = list(dark.groups())
    for enc, per_det in per_dets:
        det = per_det.attrs.get("name", decode_name(enc))
        with reading_metadata(per_det):
            versions = list(per_det.groups())
        for vname, group in versions:
            if not (vname.startswith("v") and vname[1:].isascii() and vname[1:].isdigit()):
                continue  # not a version group written by us: ignore
            attrs = dict(group.attrs)
            try:
                v = DarkVersion.model_validate({**{k: v for k, v in attrs.items() if k != "name"},
                                                "detector": attrs.get("name"), "version": int(vname[1:])},
                                               strict=True)
            except ValidationError as exc:
                first = exc.errors()[0]
                loc = ".".join(str(p) for p in first["loc"]).replace("detector", "name")
                raise RecordingError(f"{where}: dark/{enc}/{vname}: expected attributes {_ATTRS}, found "
                                     f"{_short(attrs)} ({loc}: {first['msg']})") from None
            if v.detector != det or v.first_tag > v.last_tag:
                raise RecordingError(f"{where}: dark/{enc}/{vname}: expected name = {det!r} and first_tag <= "
                                     f"last_tag, found name = {v.detector!r}, tags {v.first_tag} .. {v.last_tag}")
            out.append((v, group))
    return sorted(out, key=lambda item: (item[0].detector, item[0].version))


def read_dark(group: zarr.Group, where: str, *, frames: int, first_tag: int, last_tag: int,
              shape: tuple[int, ...] | None) -> DarkFrame:
    """The mean and std of one dark group, after checking them against ``shape`` and the disk.

    Raises:
        RecordingError: missing arrays, not float32 (y, x), mean and std of different
            shapes, not ``shape``, or fewer chunk files than the arrays claim.
        RecordingReadError: a chunk file cannot be read (not a regular file, damaged).
    """
    path = group.path or "."
    arrays = []
    for which in ("mean", "std"):
        with reading_metadata(group):
            arr = group.get(which)
        if not isinstance(arr, zarr.Array):
            raise RecordingError(f"{where}: {path}/{which}: expected a float32 (y, x) array, found "
                                 f"{'none' if arr is None else 'a group'}")
        if arr.dtype != _F32 or arr.ndim != 2:
            raise RecordingError(f"{where}: {path}/{which}: expected a float32 (y, x) array, found "
                                 f"{arr.dtype}{list(arr.shape)}")
        arrays.append(arr)
    mean, std = arrays
    if mean.shape != std.shape:
        raise RecordingError(f"{where}: {path}: expected mean and std of one shape, found {list(mean.shape)} "
                             f"and {list(std.shape)}")
    if shape is not None and tuple(mean.shape) != tuple(shape):
        raise RecordingError(f"{where}: {path}: expected the detector's shape {list(shape)}, found "
                             f"{list(mean.shape)}")
    if min(mean.shape) < 1:
        raise RecordingError(f"{where}: {path}: expected a non-empty dark, found shape {list(mean.shape)}")
    data = []
    for arr in arrays:
        spec = chunk_spec(arr, where)
        require_chunks(arr, int(arr.shape[0]), spec, where, f"a dark of {arr.shape[0]} x {arr.shape[1]} pixels")
        data.append(read_rows(arr, 0, int(arr.shape[0]), where, spec))
    return DarkFrame(data[0], data[1], frames, first_tag, last_tag)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def sync_tree(path: Path) -> None:
    """fsync every file and directory under ``path`` (files first)."""
    dirs = []
    for dirpath, _, files in os.walk(path):
        dirs.append(Path(dirpath))
        for name in files:
            fsync_file(Path(dirpath, name))
    for d in reversed(dirs):
        fsync_dir(d)
