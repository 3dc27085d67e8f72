"""The arrays of a recording: creating them (writer) and finding them (writer, reader, repair)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr
from zarr.types import AnyArray

from ..schemas import RoiTable, RoiVersion, ShotBlock
from ..schemas.errors import RecordingError
from ._decode import ChunkSpec, chunk_spec, read_rows, rows_on_disk
from ._format import CHUNK_KEYS, SHOT_CHUNK, codecs_for, decode_name, encode_name, pixel_chunk, trim_array
from ._store import reading_metadata

__all__ = ["FrameArrays", "Layout", "VersionArrays", "check_block", "committed_frames", "roi_table", "truncate"]

# Array fill values: what a shot that was never written reads as.
_FILL: dict[str, Any] = {"i": 0, "u": 0, "f": np.nan, "b": False}


@dataclass
class VersionArrays:
    """One ROI version group; arrays are None until the first cutout (unknown dtype)."""

    version: RoiVersion
    pixels: AnyArray | None = None
    valid: AnyArray | None = None


@dataclass
class FrameArrays:
    """``frame/<det>``: pixels (frame, y, x) and the shot index of each frame."""

    pixels: AnyArray
    shot: AnyArray


@dataclass
class Layout:
    """Every array of an open recording, keyed as the rest of shotwatch keys them."""

    root: zarr.Group
    tag: AnyArray
    time: AnyArray
    points: dict[str, AnyArray] = field(default_factory=dict)
    versions: dict[str, VersionArrays] = field(default_factory=dict)
    frames: dict[str, FrameArrays] = field(default_factory=dict)
    specs: dict[str, ChunkSpec] = field(default_factory=dict)
    """Array path -> how its chunk files are read (see ``_decode``); filled by :meth:`spec`."""
    where: str = ""
    """The recording, for messages."""

    def spec(self, array: AnyArray) -> ChunkSpec:
        """How ``array``'s chunks are read (computed once; RecordingError if FORMAT.md forbids it)."""
        spec = self.specs.get(array.path)
        if spec is None:
            spec = self.specs[array.path] = chunk_spec(array, self.where or _where(self.root))
        return spec

    def read(self, array: AnyArray, a: int, b: int) -> np.ndarray[Any, Any]:
        """Rows ``[a, b)`` of ``array`` (RecordingReadError naming a damaged chunk)."""
        return read_rows(array, a, b, self.where or _where(self.root), self.spec(array))

    # --- finding ----------------------------------------------------------------------

    @classmethod
    def discover(cls, root: zarr.Group, where: str | os.PathLike[str] | None = None) -> Layout:
        """Find the arrays of an existing recording.

        Checks what can be checked without reading data: ``tag`` and ``time`` exist, every
        array has the dimensionality and kind of dtype FORMAT.md gives it, and every ROI
        version group (``roi/<name>/v<k>``) has readable attributes. Lengths, and what depends
        on ``committed`` or the ``detectors`` attribute, are ``_check``'s.

        Raises:
            RecordingError: naming ``where`` (default: the store's directory) and the array.
        """
        where = _where(root) if where is None else str(where)
        tag, time = (_required(root, name, where) for name in ("tag", "time"))
        layout = cls(root, tag, time, where=where)
        _check_dtype(layout.tag, where, "iu", 1, "int64")
        _check_dtype(layout.time, where, "f", 1, "float64")
        for enc, arr in _arrays(_child(root, "point")):
            _check_dtype(arr, where, "f", 1, "float64")
            layout.points[str(arr.attrs.get("name", decode_name(enc)))] = arr
        for roi_name, per_name in _groups(_child(root, "roi")):
            for vname, group in _groups(per_name):
                if not (vname.startswith("v") and vname[1:].isdigit()):
                    continue  # not a version group written by us: ignore
                v = _version_from_attrs(f"{where}: roi/{roi_name}/{vname}", roi_name, int(vname[1:]),
                                        dict(group.attrs))
                va = VersionArrays(v, _array(group, "pixels"), _array(group, "valid"))
                if va.pixels is not None:
                    _check_dtype(va.pixels, where, "iuf", 3, "a number type")
                if va.valid is not None:
                    _check_dtype(va.valid, where, "b", 1, "bool")
                layout.versions[v.key] = va
        for enc, group in _groups(_child(root, "frame")):
            pix, shot = _array(group, "pixels"), _array(group, "shot")
            if pix is not None and shot is not None:  # one alone: a crash while creating them
                _check_dtype(pix, where, "iuf", 3, "a number type")
                _check_dtype(shot, where, "iu", 1, "int64")
                layout.frames[str(group.attrs.get("name", decode_name(enc)))] = FrameArrays(pix, shot)
        for arr in layout.all_arrays():
            layout.spec(arr)  # refuses what FORMAT.md does not allow, before any read
        return layout

    def all_arrays(self) -> list[AnyArray]:
        """Every array of the layout (per-shot and frame arrays)."""
        out = self.shot_arrays()
        for fa in self.frames.values():
            out += [fa.pixels, fa.shot]
        return out

    def shot_arrays(self) -> list[AnyArray]:
        """Every array whose first axis is the shot axis."""
        out = [self.tag, self.time, *self.points.values()]
        for va in self.versions.values():
            out += [a for a in (va.pixels, va.valid) if a is not None]
        return out

    # --- creating ---------------------------------------------------------------------

    @staticmethod
    def create_skeleton(root: zarr.Group) -> None:
        """``tag``, ``time`` and the empty ``point``/``roi``/``frame`` groups of a new recording."""
        _new_array(root, "tag", np.dtype(np.int64), capacity=0, chunk=SHOT_CHUNK)
        _new_array(root, "time", np.dtype(np.float64), capacity=0, chunk=SHOT_CHUNK)
        for name in ("point", "roi", "frame"):
            root.create_group(name)

    def add_point(self, name: str, capacity: int) -> AnyArray:
        """A NaN-filled ``point/<key>`` array with attribute ``name``."""
        arr = _new_array(_child(self.root, "point"), encode_name(name), np.dtype(np.float64),
                         capacity=capacity, chunk=SHOT_CHUNK, attributes={"name": name})
        self.points[name] = arr
        return arr

    def add_version(self, version: RoiVersion, *, dtype: str | None, capacity: int) -> VersionArrays:
        """The ``roi/<name>/v<k>`` group; its arrays too when the pixel dtype is known."""
        roi = _child(self.root, "roi")
        per_name = roi[version.name] if version.name in roi else roi.create_group(version.name)
        assert isinstance(per_name, zarr.Group)
        per_name.create_group(f"v{version.version}", attributes=version.attrs())
        va = VersionArrays(version)
        self.versions[version.key] = va
        if dtype is not None:
            self.add_version_arrays(va, np.dtype(dtype), capacity)
        return va

    def add_version_arrays(self, va: VersionArrays, dtype: np.dtype[Any], capacity: int) -> None:
        """``pixels`` (shot, y, x) and ``valid`` (shot,) of one version."""
        v = va.version
        group = self.root[f"roi/{v.name}/v{v.version}"]
        assert isinstance(group, zarr.Group)
        tail = (v.y[1] - v.y[0], v.x[1] - v.x[0])
        # FORMAT.md: zero where `valid` is false, also on shots outside this version's time
        va.pixels = _new_array(group, "pixels", dtype, capacity=capacity, tail=tail,
                               chunk=pixel_chunk(tail, dtype), fill=0)
        va.valid = _new_array(group, "valid", np.dtype(np.bool_), capacity=capacity, chunk=SHOT_CHUNK)

    def add_frames(self, det: str, *, shape: tuple[int, int], dtype: np.dtype[Any]) -> FrameArrays:
        """``frame/<det>/pixels`` (frame, y, x), chunked like cutouts, and ``shot`` (fill -1)."""
        group = _child(self.root, "frame").create_group(encode_name(det), attributes={"name": det})
        pixels = group.create_array(
            "pixels", shape=(0, *shape), dtype=dtype, chunks=(pixel_chunk(shape, dtype), *shape),
            compressors=codecs_for(dtype),
            fill_value=_FILL[dtype.kind], dimension_names=("frame", "y", "x"), chunk_key_encoding=CHUNK_KEYS)
        shot = group.create_array(
            "shot", shape=(0,), dtype=np.int64, chunks=(SHOT_CHUNK,),
            compressors=codecs_for(np.dtype(np.int64)), fill_value=-1, dimension_names=("frame",),
            chunk_key_encoding=CHUNK_KEYS)
        self.frames[det] = FrameArrays(pixels, shot)
        return self.frames[det]


def truncate(root: zarr.Group, committed: int, *, layout: Layout | None = None) -> dict[str, int]:
    """Trim every per-shot array to ``committed`` and frame arrays to the committed frames.

    Also deletes ROI version groups that started after ``committed`` (a crashed tail).
    Returns array path -> old length for what changed.
    """
    layout = layout or Layout.discover(root)
    changed: dict[str, int] = {}
    for key, va in list(layout.versions.items()):
        if va.version.first_shot > committed:
            del root[f"roi/{va.version.name}/v{va.version.version}"]
            del layout.versions[key]
            changed[f"roi/{va.version.name}/v{va.version.version}"] = -1
    targets = [(a, committed) for a in layout.shot_arrays()]
    for fa in layout.frames.values():
        n = committed_frames(layout, fa.shot, committed)
        targets += [(fa.pixels, n), (fa.shot, n)]
    for arr, n in targets:
        old = trim_array(arr, n)
        if old is not None:
            changed[arr.path] = old
    return changed


def check_block(block: ShotBlock, layout: Layout, *, last_tag: int | None) -> None:
    """ValueError unless ``block`` can be written after ``last_tag`` into ``layout``'s arrays."""
    if last_tag is not None and int(block.tags[0]) <= last_tag:
        raise ValueError(f"tags: expected > {last_tag}, found {int(block.tags[0])}")
    for key, cut in block.cutouts.items():
        va = layout.versions.get(key)
        if va is None:
            known = ", ".join(sorted(layout.versions)) or "none"
            raise ValueError(f"cutouts[{key!r}]: expected a ROI version given to set_rois ({known})")
        v = va.version
        shape = (v.y[1] - v.y[0], v.x[1] - v.x[0])
        if tuple(cut.pixels.shape[1:]) != shape:
            raise ValueError(f"cutouts[{key!r}].pixels: expected [n, {shape[0]}, {shape[1]}], "
                             f"found {list(cut.pixels.shape)}")
        if va.pixels is not None and not np.can_cast(cut.pixels.dtype, va.pixels.dtype, casting="safe"):
            raise ValueError(f"cutouts[{key!r}].pixels: expected {va.pixels.dtype} (the recorded dtype), "
                             f"found {cut.pixels.dtype}")
    for det, fr in block.frames.items():
        fa = layout.frames.get(det)
        if fa is not None and tuple(fr.pixels.shape[1:]) != tuple(fa.pixels.shape[1:]):
            raise ValueError(f"frames[{det!r}]: expected [k, {', '.join(map(str, fa.pixels.shape[1:]))}], "
                             f"found {list(fr.pixels.shape)}")


def roi_table(versions: Iterable[RoiVersion], committed: int) -> RoiTable:
    """The RoiTable of the versions that started by ``committed``.

    A version ends where the next version of its name starts; a version that started after
    ``committed`` belongs to a crashed, uncommitted tail and is left out.
    """
    kept = sorted((v for v in versions if v.first_shot <= committed), key=lambda v: (v.name, v.version))
    out: list[RoiVersion] = []
    for v, nxt in zip(kept, [*kept[1:], None], strict=False):  # kept may be empty (no ROIs)
        end = nxt.first_shot if nxt is not None and nxt.name == v.name else None
        out.append(RoiVersion(v.name, v.version, v.detector, v.x, v.y, v.first_shot, v.first_tag, end))
    return RoiTable.from_versions(out)


def committed_frames(layout: Layout, shot: AnyArray, committed: int) -> int:
    """How many leading frames belong to committed shots (their ``shot`` is in [0, committed)).

    Reads no further than the chunk files on disk: past them ``shot`` is its fill value -1.
    """
    s = layout.read(shot, 0, rows_on_disk(shot, layout.spec(shot)))
    ok = (s >= 0) & (s < committed)
    return len(s) if bool(ok.all()) else int(np.argmin(ok))


_VERSION_KEYS = ("name", "detector", "x", "y", "first_shot", "first_tag")


def _version_from_attrs(where: str, roi_name: str, number: int, attrs: dict[str, Any]) -> RoiVersion:
    """The RoiVersion of group ``roi/<roi_name>/v<number>``; RecordingError naming ``where``."""
    missing = [k for k in _VERSION_KEYS if k not in attrs]
    if missing:
        found = "none" if len(missing) == len(_VERSION_KEYS) else "no " + ", ".join(missing)
        raise RecordingError(f"{where}: expected attributes {', '.join(_VERSION_KEYS)} of an ROI version, "
                             f"found {found}")
    if attrs["name"] != roi_name:
        raise RecordingError(f"{where}: expected attribute name = {roi_name!r} (the group's name), "
                             f"found {attrs['name']!r}")
    if not isinstance(attrs["detector"], str) or not attrs["detector"]:
        raise RecordingError(f"{where}: expected attribute detector to be a detector id, found {attrs['detector']!r}")
    ranges = []
    for axis in ("x", "y"):
        r = attrs[axis]
        if not (isinstance(r, list) and len(r) == 2 and all(_is_int(i) for i in r) and 0 <= r[0] < r[1]):
            raise RecordingError(f"{where}: expected attribute {axis} = [{axis}0, {axis}1] with "
                                 f"0 <= {axis}0 < {axis}1, found {r!r}")
        ranges.append((int(r[0]), int(r[1])))
    for key in ("first_shot", "first_tag"):
        if not _is_int(attrs[key]) or (key == "first_shot" and attrs[key] < 0):
            raise RecordingError(f"{where}: expected attribute {key} to be a whole number"
                                 + (" >= 0" if key == "first_shot" else "") + f", found {attrs[key]!r}")
    return RoiVersion(roi_name, number, attrs["detector"], ranges[0], ranges[1],
                      int(attrs["first_shot"]), int(attrs["first_tag"]))


def _required(root: zarr.Group, name: str, where: str) -> AnyArray:
    with reading_metadata(root):
        node = root.get(name)
    if not isinstance(node, zarr.Array):
        found = "none" if node is None else "a group"
        raise RecordingError(f"{where}: expected array {name!r} of a recording, found {found}")
    return node


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_dtype(arr: AnyArray, where: str, kinds: str, ndim: int, expected: str) -> None:
    if arr.dtype.kind not in kinds:
        raise RecordingError(f"{where}: {arr.path}: expected dtype {expected}, found {arr.dtype}")
    if arr.ndim != ndim:
        raise RecordingError(f"{where}: {arr.path}: expected {ndim} dimension(s), found shape {list(arr.shape)}")


def _where(root: zarr.Group) -> str:
    """The recording's directory, for messages."""
    return str(getattr(root.store, "root", None) or "recording")


def _new_array(group: zarr.Group, name: str, dtype: np.dtype[Any], *, capacity: int, chunk: int,
               tail: tuple[int, ...] = (), attributes: dict[str, Any] | None = None,
               fill: Any = None) -> AnyArray:
    return group.create_array(
        name, shape=(capacity, *tail), dtype=dtype, chunks=(chunk, *tail), compressors=codecs_for(dtype),
        fill_value=_FILL[dtype.kind] if fill is None else fill, dimension_names=("shot", "y", "x")[: 1 + len(tail)],
        attributes=attributes or {}, chunk_key_encoding=CHUNK_KEYS)


def _child(group: zarr.Group, name: str) -> zarr.Group:
    with reading_metadata(group):
        child = group.get(name)
    if child is None:
        return group.create_group(name) if not group.store.read_only else zarr.create_group(
            store=zarr.storage.MemoryStore(), zarr_format=3)
    if not isinstance(child, zarr.Group):
        raise RecordingError(f"{_where(group)}: {name}: expected a group, found an array")
    return child


def _groups(group: zarr.Group) -> list[tuple[str, zarr.Group]]:
    with reading_metadata(group):
        return [(n, g) for n, g in group.groups()]


def _arrays(group: zarr.Group) -> list[tuple[str, AnyArray]]:
    with reading_metadata(group):
        return [(n, a) for n, a in group.arrays()]


def _array(group: zarr.Group, name: str) -> AnyArray | None:
    with reading_metadata(group):
        arr = group.get(name)
    return arr if isinstance(arr, zarr.Array) else None
