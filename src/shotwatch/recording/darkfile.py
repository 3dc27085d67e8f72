"""Dark files, as ``shotwatch dark -o DARK`` writes them (FORMAT.md, last section).

A zarr v3 group with the root attribute ``"shotwatch"`` = ``{"format": "shotwatch.dark",
"version": 1, "source": …, "created": …}`` and, per detector, a group ``<det>`` (the name
percent-encoded like a recording's) with float32 ``mean`` and ``std`` of shape (y, x) and the
attributes ``name``, ``frames``, ``first_tag``, ``last_tag``.

A dark file may come from anywhere (a colleague's directory, another beamtime): reading it
is checked like reading a recording, and refusals are one line (RecordingError, exit 2).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zarr

from ..schemas import DarkFrame
from ..schemas.errors import RecordingError
from ._darks import check_frame, read_dark, sync_tree, write_dark_group
from ._durable import fsync_dir
from ._format import ATTR_KEY, RecordingWriteError, decode_name, encode_name, jsonable, open_root
from ._store import SafeStore, reading_metadata, refusing_unsafe

__all__ = ["DARK_FORMAT", "DARK_VERSION", "read_dark_file", "write_dark_file"]

DARK_FORMAT = "shotwatch.dark"
DARK_VERSION = 1
_WHAT = "a shotwatch dark file"


def write_dark_file(path: str | os.PathLike[str], darks: Mapping[str, DarkFrame], *, source: dict[str, Any]) -> None:
    """Write ``darks`` (detector -> DarkFrame) as a new dark file at ``path``.

    Built in a hidden sibling directory, fsynced, and renamed into place: a crash never
    leaves half a dark file at ``path``.

    Raises:
        RecordingError: ``path`` exists already.
        ValueError: no detector, or a frame whose mean and std are not float arrays of one
            2-D shape, or whose frames/tags are inconsistent.
        RecordingWriteError: the file system refused (exit 1).
    """
    path = Path(path)
    if os.path.lexists(path):
        raise RecordingError(f"{path}: expected a new dark file path, found an existing one")
    if not darks:
        raise ValueError(f"{path}: expected a dark of at least one detector, found none")
    for det, frame in darks.items():
        check_frame(det, frame, None)
    tmp = path.with_name(f".{path.name}.creating-{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        zarr.create_group(store=SafeStore(tmp), zarr_format=3, attributes={ATTR_KEY: jsonable({
            "format": DARK_FORMAT, "version": DARK_VERSION, "source": dict(source),
            "created": datetime.now(UTC).isoformat(timespec="seconds")})})
        for det, frame in darks.items():
            write_dark_group(tmp / encode_name(det), det, frame, shape=None, attrs={})
        sync_tree(tmp)
        os.rename(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RecordingWriteError(f"{path}: cannot write the dark file ({exc})", errno=exc.errno) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_dark_file(path: str | os.PathLike[str]) -> dict[str, DarkFrame]:
    """Every detector's dark in the dark file at ``path``.

    Raises:
        RecordingError: not a dark file (a recording, a foreign zarr group, nothing), an
            unknown format version (naming both), a detector group with missing or
            malformed attributes, mean/std that are not float32 (y, x) or not of one shape,
            a file that is not a regular file, or arrays larger than the chunk files on
            disk; one line naming the file and what is wrong.
        RecordingReadError: a chunk file cannot be decoded (exit 1).
    """
    path = Path(path)
    with refusing_unsafe():
        root = open_root(path, mode="r", what=_WHAT)
        attrs = root.attrs.get(ATTR_KEY)
        if not isinstance(attrs, Mapping):
            raise RecordingError(f"{path}: expected root attribute {ATTR_KEY!r} of a dark file, found none")
        fmt, ver = attrs.get("format"), attrs.get("version")
        if fmt != DARK_FORMAT or ver != DARK_VERSION or isinstance(ver, bool):
            raise RecordingError(f"{path}: expected format {DARK_FORMAT!r} version {DARK_VERSION} (a dark file), "
                                 f"found format {fmt!r} version {ver!r}")
        out: dict[str, DarkFrame] = {}
        with reading_metadata(root):
            groups = list(root.groups())
        for enc, group in groups:
            det, meta = _meta(path, enc, dict(group.attrs))
            if det in out:
                raise RecordingError(f"{path}: {enc}: expected one group per detector, found {det!r} twice")
            out[det] = read_dark(group, str(path), shape=None, **meta)
    if not out:
        raise RecordingError(f"{path}: expected a dark of at least one detector, found none")
    return out


def _meta(path: Path, enc: str, attrs: dict[str, Any]) -> tuple[str, dict[str, int]]:
    """The detector name and ``frames``/``first_tag``/``last_tag`` of group ``enc``."""
    name = attrs.get("name", decode_name(enc))
    values = {k: attrs.get(k) for k in ("frames", "first_tag", "last_tag")}
    ints = {k: v for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)}
    if not (isinstance(name, str) and name and len(ints) == 3 and ints["frames"] >= 1
            and ints["first_tag"] <= ints["last_tag"]):
        raise RecordingError(f"{path}: {enc}: expected attributes name (the detector), frames >= 1 and "
                             f"first_tag <= last_tag (whole numbers), found {({'name': name, **values})}")
    return name, ints
