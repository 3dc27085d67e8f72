"""Opening a recording for writing: a new one (create) or an existing one (append).

Both take the writer lock first (FORMAT.md "One writer") and hand it to the writer, which
holds it until it is closed; nothing is changed before the lock is held, and a refusal
changes nothing.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr

from ..schemas import Config, DarkFrame, RoiTable, SourceInfo
from ..schemas.errors import RecordingError
from ._attrs import check_compatible, det_dtype, detectors_attr, new_attrs
from ._check import Checked, check_recording
from ._darks import write_dark_group
from ._format import (
    ATTR_KEY,
    RecordingWriteError,
    check_attrs,
    check_path,
    encode_name,
    jsonable,
    open_root,
    remove_temp_files,
)
from ._layout import Layout, truncate
from ._lock import WriterLock
from ._store import SafeStore, refusing_unsafe
from ._versions import check_dark_refs, parse_analysis, without_tail

__all__ = ["Opened", "open_existing", "open_new"]


@dataclass
class Opened:
    """What the writer starts from: the root group, its attributes and the held lock."""

    root: zarr.Group
    attrs: dict[str, Any]
    lock: WriterLock


def open_new(path: Path, *, config: Config, source: SourceInfo, rois: RoiTable, points: Sequence[str],
             darks: Mapping[str, DarkFrame] | None = None) -> Opened:
    """Build a new recording in a hidden sibling directory, locked, and rename it to ``path``.

    ``darks`` (detector -> frame) are its dark versions 1, written before the rename, so
    that the analysis version 1 of ``config`` may name them (``calibration.dark = {det: 1}``)
    and a crash never leaves it naming a dark that is not there.
    """
    if path.exists():
        raise RecordingError(f"{path}: expected a new recording path, found an existing one "
                             "(append to continue it)")
    tmp = path.with_name(f".{path.name}.creating-{uuid.uuid4().hex[:8]}")
    lock: WriterLock | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        lock = WriterLock.acquire(tmp, recording=path)  # held from before anyone can see the recording
        attrs = new_attrs(config, source)
        check_dark_refs(attrs["analysis"][0]["config"], {det: [1] for det in darks or {}}, f"{path}: config")
        root = zarr.create_group(store=SafeStore(tmp), zarr_format=3, attributes={ATTR_KEY: attrs})
        Layout.create_skeleton(root)
        _first_darks(root, tmp, attrs, darks or {})
        layout = Layout.discover(root, path)
        for name in dict.fromkeys(points):
            layout.add_point(name, 0)
        for v in rois.all():
            layout.add_version(v, dtype=det_dtype(attrs, v.detector), capacity=0)
        os.rename(tmp, path)
    except OSError as exc:
        _undo(tmp, lock)
        raise RecordingWriteError(f"{path}: cannot create the recording ({exc})", errno=exc.errno) from exc
    except BaseException:
        _undo(tmp, lock)
        raise
    try:
        root = open_root(path, mode="r+")
        return Opened(root, check_attrs(root, path), lock)
    except BaseException:
        lock.release()
        raise


def _first_darks(root: zarr.Group, tmp: Path, attrs: dict[str, Any], darks: Mapping[str, DarkFrame]) -> None:
    """Each of ``darks`` as its detector's dark version 1 (``dark/<det>/v1``)."""
    if not darks:
        return
    group = root.create_group("dark")
    for det, frame in darks.items():
        info = attrs["detectors"].get(det)
        if not isinstance(info, dict):
            raise ValueError(f"dark of {det}: expected a detector the recording knows "
                             f"({', '.join(sorted(attrs['detectors'])) or 'none'})")
        group.create_group(encode_name(det), attributes={"name": det})
        write_dark_group(tmp / "dark" / encode_name(det) / "v1", det, frame, shape=tuple(info["shape"]),
                         attrs={"time": time.time()})


def open_existing(path: Path, *, config: Config, source: SourceInfo) -> Opened:
    """Check ``path``, lock it, check it again, truncate it to ``committed``, mark it open.

    Every check runs read-only first, so a recording refused for what it is (not a
    recording, another configuration) is left exactly as it was, lock file included; they
    run again once the lock is held, when the attributes are final.

    Raises:
        RecordingError: another process is writing it ("being written by pid N"); not a
            recording, one the reader would refuse, or its configuration differs.
        RecordingWriteError: a write failed.
    """
    check_path(path)
    with refusing_unsafe():
        _checked(open_root(path, mode="r"), path, config, source)
    lock = WriterLock.acquire(path)
    try:
        with refusing_unsafe():
            root = open_root(path, mode="r+")  # after the lock: these attributes are final
            attrs, checked, analysis = _checked(root, path, config, source)
        committed = int(attrs["committed"])
        truncate(root, committed, layout=checked.layout)
        remove_temp_files(path)
        attrs["closed"] = False
        attrs["detectors"] = {**attrs.get("detectors", {}), **detectors_attr(source)}
        attrs["analysis"] = analysis
        root.attrs[ATTR_KEY] = jsonable(attrs)
    except OSError as exc:
        lock.release()
        raise RecordingWriteError(f"{path}: cannot reopen the recording ({exc})", errno=exc.errno) from exc
    except BaseException:
        lock.release()
        raise
    return Opened(root, attrs, lock)


def _checked(root: zarr.Group, path: Path, config: Config,
             source: SourceInfo) -> tuple[dict[str, Any], Checked, list[dict[str, Any]]]:
    """Attributes, checked layout and the analysis versions to keep, of a recording to append to."""
    attrs = check_attrs(root, path)
    committed = int(attrs["committed"])
    checked = check_recording(root, path, attrs, committed)
    first_tag = int(checked.tags[0]) if committed else -1
    analysis = without_tail([v.model_dump(mode="json") for v in
                             parse_analysis(attrs, str(path), first_tag=first_tag)], committed)
    check_compatible(path, attrs, config, source, analysis[-1]["config"])
    return attrs, checked, analysis


def _undo(tmp: Path, lock: WriterLock | None) -> None:
    if lock is not None:
        lock.release()
    shutil.rmtree(tmp, ignore_errors=True)
