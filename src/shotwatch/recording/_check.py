"""Checking a recording when it is opened: what the reader, append and repair rely on.

Everything here runs once per open and reads no data but ``tag[:committed]`` (8 bytes a shot)
and the frames' ``shot`` arrays (a few values a frame): metadata, lengths and dtypes are in the
arrays' ``zarr.json``, which zarr has already parsed. A recording that fails a check is refused
with one line naming it and the array (RecordingError, exit 2), never read half-way into a
traceback; a chunk that cannot be decoded raises RecordingReadError (exit 1).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr
from pydantic import ValidationError
from zarr.types import AnyArray

from ..schemas import DetectorInfo
from ..schemas.errors import RecordingError
from ._decode import require_chunks, rows_on_disk
from ._layout import Layout

__all__ = ["Checked", "check_meta", "check_recording", "check_tags", "recover_length", "shot_arrays"]

Array = npt.NDArray[Any]
_DETECTOR = '{"shape": [H, W], "dtype": str, "ev_per_adu": float}'


@dataclass
class Checked:
    """What opening a recording established."""

    layout: Layout
    detectors: dict[str, DetectorInfo]
    tags: Array
    """``int64`` tags of ``[0, committed)``, strictly increasing."""
    frame_counts: dict[str, int]
    """Detector -> frames belonging to committed shots."""


def check_recording(root: zarr.Group, path: str | os.PathLike[str], attrs: dict[str, Any], committed: int,
                    *, layout: Layout | None = None) -> Checked:
    """Check a recording for reading ``[0, committed)``; RecordingError naming what is wrong.

    The root attributes ``detectors``, ``source`` and ``marks``; the arrays (Layout.discover:
    presence, dimensions, kinds of dtype, ROI version attributes); every per-shot array holds
    at least ``committed`` shots; ROI versions lie inside their detector and match their
    cutout arrays; tags are strictly increasing; frame arrays hold their committed frames.
    """
    where = str(path)
    detectors = check_meta(attrs, where)
    layout = layout or Layout.discover(root, where)
    _check_versions(layout, detectors, committed, where)
    for arr in shot_arrays(layout, committed):
        if int(arr.shape[0]) < committed:
            raise RecordingError(f"{where}: {arr.path}: expected at least {committed} shots (committed), "
                                 f"found {int(arr.shape[0])}")
    # Every tag of a committed shot was written, so its chunk files are all there: a
    # `committed` that the files cannot hold is refused before 8 bytes a shot are allocated.
    require_chunks(layout.tag, committed, layout.spec(layout.tag), where, f"{committed} committed shots")
    tags = np.asarray(layout.read(layout.tag, 0, committed), dtype=np.int64)
    check_tags(tags, where)
    frame_counts = {}
    for det, fa in layout.frames.items():
        shots = layout.read(fa.shot, 0, rows_on_disk(fa.shot, layout.spec(fa.shot)))
        ok = (shots >= 0) & (shots < committed)
        n = len(shots) if bool(ok.all()) else int(np.argmin(ok))
        if n > 1 and bool((np.diff(shots[:n]) < 0).any()):
            raise RecordingError(f"{where}: {fa.shot.path}: expected shot indices in increasing order, "
                                 f"found {shots[:n].tolist()[:8]}…")
        if int(fa.pixels.shape[0]) < n:
            raise RecordingError(f"{where}: {fa.pixels.path}: expected at least {n} frames (committed), "
                                 f"found {int(fa.pixels.shape[0])}")
        frame_counts[det] = n
    return Checked(layout, detectors, tags, frame_counts)


def shot_arrays(layout: Layout, committed: int) -> list[AnyArray]:
    """The per-shot arrays that must hold ``committed`` shots.

    ``tag``, ``time``, every point, and the cutouts of the ROI versions that started by
    ``committed`` (a version started later belongs to a crashed tail and is ignored).
    """
    out = [layout.tag, layout.time, *layout.points.values()]
    for va in layout.versions.values():
        if va.version.first_shot <= committed:
            out += [a for a in (va.pixels, va.valid) if a is not None]
    return out


def check_tags(tags: Array, where: str) -> None:
    """RecordingError unless ``tags`` is strictly increasing (FORMAT.md)."""
    if len(tags) < 2:
        return
    bad = np.flatnonzero(np.diff(tags) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        hint = " (the fill value: chunk files missing?)" if tags[i] == 0 else ""
        raise RecordingError(f"{where}: tag: expected strictly increasing tags, found tag[{i}] = {int(tags[i])} "
                             f"after {int(tags[i - 1])}{hint}")


def recover_length(layout: Layout, committed: int, where: str) -> tuple[int, dict[str, int]]:
    """For repair: the longest prefix every array really holds, when ``committed`` overstates it.

    Returns ``(n, short)``: ``short`` maps every per-shot array shorter than ``committed`` to
    its length (empty, and ``n == committed``, when nothing is short). ``n`` is the shortest
    length, less any trailing shots whose tag is still the fill value (never written). Tags
    inside ``[0, n)`` that are not strictly increasing are refused (RecordingError): trimming
    would then throw away shots that were written.
    """
    short = {a.path: int(a.shape[0]) for a in shot_arrays(layout, committed) if int(a.shape[0]) < committed}
    if not short:
        return committed, {}
    n = min(min(short.values()), rows_on_disk(layout.tag, layout.spec(layout.tag)))
    tags = np.asarray(layout.read(layout.tag, 0, n), dtype=np.int64)
    written = np.flatnonzero(tags != 0)  # 0: the fill value of tag, a shot never written
    n = int(written[-1]) + 1 if written.size else 0
    check_tags(tags[:n], where)
    return n, short


def check_meta(attrs: dict[str, Any], where: str) -> dict[str, DetectorInfo]:
    """The ``detectors`` attribute as DetectorInfo; checks ``source`` and ``marks`` too."""
    dets = attrs.get("detectors", {})
    if not isinstance(dets, Mapping):
        raise RecordingError(f"{where}: attribute detectors: expected an object, detector id -> {_DETECTOR}, "
                             f"found {_short(dets)}")
    out = {}
    for det, info in dets.items():
        try:
            d = DetectorInfo.model_validate(info)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = "".join(f".{p}" for p in first["loc"])
            raise RecordingError(f"{where}: attribute detectors.{det}{loc}: expected {_DETECTOR}, "
                                 f"found {_short(info)} ({first['msg']})") from None
        problem = _detector_problem(d)
        if problem:
            raise RecordingError(f"{where}: attribute detectors.{det}: expected {_DETECTOR} with a positive "
                                 f"shape, a numpy dtype and ev_per_adu > 0, found {problem}")
        out[str(det)] = d
    source = attrs.get("source", {})
    if not isinstance(source, Mapping):
        raise RecordingError(f"{where}: attribute source: expected an object, found {_short(source)}")
    marks = attrs.get("marks", [])
    if not isinstance(marks, list):
        raise RecordingError(f"{where}: attribute marks: expected a list, found {_short(marks)}")
    for i, m in enumerate(marks):
        if not (isinstance(m, Mapping) and all(k in m for k in ("shot", "tag", "text"))):
            raise RecordingError(f"{where}: attribute marks[{i}]: expected "
                                 '{"shot": int, "tag": int, "time": float, "text": str}, '
                                 f"found {_short(m)}")
    return out


def _detector_problem(d: DetectorInfo) -> str | None:
    if min(d.shape) < 1:
        return f"shape {list(d.shape)}"
    try:
        np.dtype(d.dtype)
    except TypeError:
        return f"dtype {d.dtype!r}"
    if not (math.isfinite(d.ev_per_adu) and d.ev_per_adu > 0):
        return f"ev_per_adu {d.ev_per_adu!r}"
    return None


def _check_versions(layout: Layout, detectors: dict[str, DetectorInfo], committed: int, where: str) -> None:
    """Every ROI version with committed shots lies inside its detector and has its arrays."""
    by_name: dict[str, list[Any]] = {}
    for va in layout.versions.values():
        by_name.setdefault(va.version.name, []).append(va.version)
    for versions in by_name.values():
        versions.sort(key=lambda v: v.version)
        for prev, v in zip(versions, versions[1:], strict=False):
            if v.first_shot < prev.first_shot:
                raise RecordingError(f"{where}: roi/{v.name}/v{v.version}: expected first_shot >= "
                                     f"{prev.first_shot} (that of v{prev.version}), found {v.first_shot}")
    for va in layout.versions.values():
        v = va.version
        if v.first_shot > committed:
            continue  # a crashed tail: ignored by readers, deleted by repair and append
        group = f"roi/{v.name}/v{v.version}"
        det = detectors.get(v.detector)
        if det is not None and (v.x[1] > det.shape[1] or v.y[1] > det.shape[0]):
            raise RecordingError(f"{where}: {group}: expected x within the {det.shape[1]} columns and y within "
                                 f"the {det.shape[0]} rows of {v.detector}, found x = {list(v.x)}, y = {list(v.y)}")
        if v.first_shot < committed and (va.pixels is None or va.valid is None):
            # Arrays are made with the group when the detector's dtype is known (always, for
            # detectors in `detectors`), else with the first cutout, pixels before valid: a
            # crash between the two leaves pixels alone, and then no shot of it is committed.
            if det is not None or va.pixels is None and va.valid is not None:
                missing = "pixels" if va.pixels is None else "valid"
                raise RecordingError(f"{where}: {group}/{missing}: expected an array (the version has shots "
                                     f"from {v.first_shot} on), found none")
        if va.pixels is not None:
            tail = (v.y[1] - v.y[0], v.x[1] - v.x[0])
            if tuple(int(n) for n in va.pixels.shape[1:]) != tail:
                raise RecordingError(f"{where}: {group}: expected pixels of {tail[0]} x {tail[1]} (from its "
                                     f"attributes y = {list(v.y)}, x = {list(v.x)}), found "
                                     f"{' x '.join(str(n) for n in va.pixels.shape[1:])}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
