"""RecordingReader: the committed shots of a recording as ShotBlocks.

Works on a recording that is still being written: everything is read from ``[0, committed)``
as the root attributes said when the reader opened, and the writer never changes those
shots (every chunk file is replaced atomically).
"""

from __future__ import annotations

import copy
import math
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..schemas import (
    AnalysisVersion,
    Config,
    ConfigError,
    Cutout,
    DarkFrame,
    DarkVersion,
    DetectorInfo,
    Frames,
    RoiTable,
    RoiVersion,
    ShotBlock,
    parse_config,
)
from ..schemas.errors import RecordingError
from ._check import check_recording
from ._darks import dark_versions, read_dark
from ._format import check_attrs, disk_bytes, open_root
from ._layout import Layout, roi_table
from ._store import refusing_unsafe
from ._versions import check_dark_refs, parse_analysis

__all__ = ["RecordingReader"]

Array = npt.NDArray[Any]
_WORKERS = 4
# Most bytes of one block: a detector's rows could be huge in a crafted recording, and a
# block of 4096 such shots must not be allocated whole.
_BLOCK_BYTES = 256 << 20
_BLOCK_TARGET = 16 << 20
_BLOCK_MIN, _BLOCK_MAX = 64, 4096
_AHEAD = 3


class RecordingReader:
    """Read access to one recording (a view over a range of its committed shots).

    Args:
        path: the ``.zarr`` directory.

    Raises:
        RecordingError: nothing there, not a shotwatch recording, a format version this
            reader does not know (the message names the recording and both versions), or a
            recording whose metadata, arrays or tags are not what FORMAT.md says (the
            message names the array).
        RecordingReadError: a chunk cannot be decoded, or is not a regular file (``tag`` at
            open, other arrays while reading them): the recording is damaged on disk (exit
            code 1).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        with refusing_unsafe():
            root = open_root(self._path, mode="r")
            self._attrs = check_attrs(root, self._path)
            self._committed = int(self._attrs["committed"])
            # Everything is checked once, here: metadata, dtypes, lengths, and tag (read once
            # and kept: 8 bytes a shot); blocks() then trusts the layout.
            checked = check_recording(root, self._path, self._attrs, self._committed)
        self._root = root
        self._layout: Layout = checked.layout
        self._detectors = checked.detectors
        self._all_tags, self._frame_counts = checked.tags, checked.frame_counts
        self._start, self._stop = 0, self._committed
        self._rois = roi_table([va.version for va in self._layout.versions.values()], self._committed)
        self._analysis: list[AnalysisVersion] | None = None
        self._darks: dict[str, list[DarkVersion]] | None = None
        self._dark_groups: dict[tuple[str, int], Any] = {}

    # --- metadata -----------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def committed(self) -> int:
        """Shots committed in the whole recording (when this reader opened it)."""
        return self._committed

    @property
    def closed(self) -> bool:
        return bool(self._attrs.get("closed", False))

    @property
    def shots(self) -> tuple[int, int]:
        """``[start, stop)`` of this view on the recording's shot axis."""
        return self._start, self._stop

    def __len__(self) -> int:
        return self._stop - self._start

    @property
    def chunk_shots(self) -> int:
        """Shots per chunk file on the shot axis: the least common multiple over the per-shot
        arrays (the writer's chunk lengths are powers of two, so in practice the longest).

        Shot ranges that start at multiples of it read every chunk file in one range only
        (``reduce --workers`` splits recordings so).
        """
        return math.lcm(*(max(1, int(a.chunks[0])) for a in self._layout.shot_arrays()))

    @property
    def config(self) -> Config:
        """The configuration in force when recording started."""
        config = self._attrs.get("config", {})
        if not isinstance(config, dict):
            raise RecordingError(f"{self._path}: attribute config: expected an object, found {type(config).__name__}")
        origin = f"{self._path}: attribute config"
        try:
            return parse_config(config, origin=origin)
        except ConfigError as exc:  # a config file's wording, the key dotted under the attribute
            raise RecordingError(str(exc).replace(f"{origin}: ", f"{origin}.", 1)) from None

    @property
    def source(self) -> dict[str, Any]:
        return dict(self._attrs.get("source", {}))

    @property
    def detectors(self) -> dict[str, DetectorInfo]:
        return dict(self._detectors)

    @property
    def points(self) -> list[str]:
        """Point detectors recorded (facility names, sorted)."""
        return sorted(self._layout.points)

    @property
    def rois(self) -> RoiTable:
        """All ROI versions that started by ``committed``; each ends where the next starts."""
        return copy.deepcopy(self._rois)

    @property
    def marks(self) -> list[dict[str, Any]]:
        return [dict(m) for m in self._attrs.get("marks", [])]

    # --- data -----------------------------------------------------------------------------

    def tags(self) -> Array:
        """``int64`` tags of the shots in this view."""
        return self._all_tags[self._start:self._stop].copy()

    def select(self, *, tags: tuple[int | None, int | None] = (None, None)) -> RecordingReader:
        """A new view of the shots with ``a <= tag < b`` (either bound None = open)."""
        a, b = tags
        all_tags = self.tags()
        lo = self._start + (0 if a is None else int(np.searchsorted(all_tags, a, side="left")))
        hi = self._start + (len(all_tags) if b is None else int(np.searchsorted(all_tags, b, side="left")))
        view = copy.copy(self)
        view._start, view._stop = lo, max(lo, hi)
        return view

    def blocks(self, *, size: int | None = None, frames: bool = False, pixels: bool = True) -> Iterator[ShotBlock]:
        """The view's shots as consecutive blocks of at most ``size`` shots.

        A block carries cutouts for the ROI versions active for at least one of its shots,
        and (with ``frames=True``) the stored frames of its shots, indexed within the block.
        With ``pixels=False`` no pixel is read: every cutout's pixels are zeros of its shape
        and dtype that take no memory (a read-only zero-stride view), its ``valid`` is read;
        for a caller that has the values of the shots already (the recorder's recomputation).

        Args:
            size: shots per block; default: the power of two nearest ~16 MiB of data (64 to
                4096 shots; 512 for the standard stream in uint16, 256 in float32). Small
                enough that a block the reader just decoded is still in the processor's
                cache when the caller reduces it: against 4096-shot blocks a reduction ran
                1.6x (uint16) to 2x (float32) faster (benchmarks/bench_reduce.py).
        """
        shot_bytes = self._shot_bytes(pixels=pixels)
        if size is None:
            size = _auto_size(shot_bytes)
        if size < 1:
            raise ValueError(f"size: expected >= 1, found {size}")
        size = min(size, max(1, _BLOCK_BYTES // shot_bytes))
        frame_shots = {d: self._frame_shots(d) for d in self._layout.frames} if frames else {}
        caches: dict[tuple[str, str], _RowCache] = {}
        ranges = [(a, min(a + size, self._stop)) for a in range(self._start, self._stop, size)]
        # One block is read ahead on its own thread while the caller works on the current
        # one: decompression releases the GIL, so reading overlaps the reduction.
        with ThreadPoolExecutor(_WORKERS, thread_name_prefix="recording-read") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="recording-ahead") as ahead:
            pending: deque[Future[ShotBlock]] = deque()
            for a, b in ranges[:_AHEAD]:
                pending.append(ahead.submit(self._block, pool, a, b, frame_shots, caches, pixels))
            for a, b in ranges[_AHEAD:]:
                block = pending.popleft().result()
                pending.append(ahead.submit(self._block, pool, a, b, frame_shots, caches, pixels))
                yield block
            while pending:
                yield pending.popleft().result()

    def frames(self, det: str) -> Frames:
        """Every committed frame of ``det`` in this view, ``shot`` indexing :meth:`tags`.

        Loads them all into memory: :meth:`select` a tag range first on long recordings, or
        iterate :meth:`blocks` with ``frames=True``.
        """
        fa = self._layout.frames.get(det)
        if fa is None:
            held = ", ".join(sorted(self._layout.frames)) or "none"
            raise RecordingError(f"{self._path}: frame/{det}: expected one of the recorded detectors ({held})")
        shots = self._frame_shots(det)
        i, j = np.searchsorted(shots, [self._start, self._stop])
        return Frames(self._layout.read(fa.pixels, int(i), int(j)), shots[i:j] - self._start)

    def analysis_versions(self) -> list[AnalysisVersion]:
        """The recording's analysis versions, numbered from 1 (FORMAT.md ``analysis``).

        A version whose ``first_shot`` is at or past ``committed`` was recorded but none of
        its shots is committed yet (a live recording, or a crash right after the change);
        it is listed all the same: it is the analysis the operator chose for the recording.

        Raises:
            RecordingError: the attribute is malformed, or a version names a dark version
                the recording does not hold; one line naming the entry.
        """
        if self._analysis is None:
            first_tag = int(self._all_tags[0]) if len(self._all_tags) else -1
            versions = parse_analysis(self._attrs, str(self._path), first_tag=first_tag)
            held = {det: [v.version for v in vs] for det, vs in self.darks().items()}
            for v in versions:
                check_dark_refs(v.config, held, f"{self._path}: attribute analysis[{v.version - 1}].config")
            self._analysis = versions
        return list(self._analysis)

    def darks(self) -> dict[str, list[DarkVersion]]:
        """Detector -> its dark versions (metadata only), numbered from 1 per detector.

        Raises:
            RecordingError: a ``dark/<det>/v<k>`` group with malformed attributes.
        """
        if self._darks is None:
            with refusing_unsafe():
                found = dark_versions(self._root, str(self._path))
            self._darks = {}
            for v, group in found:
                self._darks.setdefault(v.detector, []).append(v)
                self._dark_groups[(v.detector, v.version)] = group
        return {det: list(vs) for det, vs in self._darks.items()}

    def dark(self, detector: str, version: int) -> DarkFrame:
        """Dark version ``version`` of ``detector``: mean and std, float32 (y, x).

        The shape is checked against the detector's recorded shape and every chunk file
        against the disk before anything is read.

        Raises:
            RecordingError: no such dark version, an unknown detector, a shape that is not
                the detector's, or arrays that are not what FORMAT.md says.
            RecordingReadError: a chunk file is damaged or not a regular file.
        """
        meta = next((v for v in self.darks().get(detector, []) if v.version == version), None)
        if meta is None:
            held = ", ".join(f"{d} v{v.version}" for d, vs in self.darks().items() for v in vs) or "none"
            raise RecordingError(f"{self._path}: dark/{detector}/v{version}: expected a recorded dark version "
                                 f"({held}), found none")
        det = self._detectors.get(detector)
        if det is None:
            raise RecordingError(f"{self._path}: dark/{detector}/v{version}: expected a detector in the recording's "
                                 f"detectors ({', '.join(sorted(self._detectors)) or 'none'}), found none")
        with refusing_unsafe():
            return read_dark(self._dark_groups[(detector, version)], str(self._path), frames=meta.frames,
                             first_tag=meta.first_tag, last_tag=meta.last_tag, shape=tuple(det.shape))

    def info(self) -> dict[str, Any]:
        """INTERFACE.md's ``info --json`` layout for this view."""
        tags = self._all_tags[self._start:self._stop]
        steps = np.diff(tags)
        rois: dict[str, list[dict[str, Any]]] = {}
        for v in self._rois.all():
            rois.setdefault(v.name, []).append(
                {"version": v.version, "detector": v.detector, "x": list(v.x), "y": list(v.y),
                 "first_shot": v.first_shot, "first_tag": v.first_tag})
        frames = {d: int(np.count_nonzero((s >= self._start) & (s < self._stop)))
                  for d in self._layout.frames for s in [self._frame_shots(d)]}
        return {
            "path": str(self._path), "format_version": int(self._attrs["version"]),
            "committed": self._committed, "closed": self.closed,
            "tags": {"first": int(tags[0]) if len(tags) else None, "last": int(tags[-1]) if len(tags) else None,
                     # a gap: a step longer than the run's usual (smallest) step
                     "gaps": int(np.count_nonzero(steps > steps.min())) if len(steps) else 0},
            "source": self.source, "detectors": self._attrs.get("detectors", {}), "points": self.points,
            "rois": rois,
            "analysis": [{"version": v.version, "first_shot": v.first_shot, "first_tag": v.first_tag,
                          "config": v.config} for v in self.analysis_versions()],
            "darks": {det: [{"version": v.version, "frames": v.frames, "first_tag": v.first_tag,
                             "last_tag": v.last_tag} for v in vs] for det, vs in self.darks().items()},
            "frames": frames, "marks": self.marks, "bytes": disk_bytes(self._path),
        }

    # --- internals --------------------------------------------------------------------

    def _shot_bytes(self, *, pixels: bool = True) -> int:
        """Bytes one shot takes in a block (every per-shot array's row; pixels only if read)."""
        return sum(max(1, int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize if pixels else a.dtype.itemsize)
                   for a in self._layout.shot_arrays())

    def _frame_shots(self, det: str) -> Array:
        fa = self._layout.frames[det]
        return np.asarray(self._layout.read(fa.shot, 0, self._frame_counts[det]), dtype=np.int64)

    def _active(self, a: int, b: int) -> list[RoiVersion]:
        """Versions active for at least one shot of ``[a, b)``."""
        return [v for v in self._rois.all()
                if v.first_shot < b and (v.end_shot is None or v.end_shot > a)
                and self._layout.versions[v.key].pixels is not None
                and self._layout.versions[v.key].valid is not None]

    def _block(self, pool: ThreadPoolExecutor, a: int, b: int, frame_shots: dict[str, Array],
               caches: dict[tuple[str, str], _RowCache], pixels: bool = True) -> ShotBlock:
        lay = self._layout
        reads: dict[tuple[str, str], Any] = {("time", ""): lay.time}
        reads.update({("point", n): arr for n, arr in lay.points.items()})
        active = self._active(a, b)
        for v in active:
            va = lay.versions[v.key]
            reads[("valid", v.key)] = va.valid
            if pixels:
                reads[("pixels", v.key)] = va.pixels
        frame_ranges = {}
        for det, shots in frame_shots.items():
            i, j = (int(x) for x in np.searchsorted(shots, [a, b]))
            if j > i:
                frame_ranges[det] = (i, j)
                reads[("frame", det)] = lay.frames[det].pixels
        for k, arr in reads.items():
            if k not in caches:
                caches[k] = _RowCache(arr, len(frame_shots[k[1]]) if k[0] == "frame" else self._committed,
                                      self._layout)
        futures = {k: pool.submit(caches[k].read, *(frame_ranges[k[1]] if k[0] == "frame" else (a, b)))
                   for k in reads}
        got = {k: f.result() for k, f in futures.items()}
        cutouts = {v.key: Cutout(got[("pixels", v.key)] if pixels else _no_pixels(lay.versions[v.key].pixels, b - a),
                                 got[("valid", v.key)], v.detector) for v in active}
        frames = {det: Frames(got[("frame", det)], frame_shots[det][i:j] - a)
                  for det, (i, j) in frame_ranges.items()}
        src = self._attrs.get("source", {})
        return ShotBlock(self._all_tags[a:b].copy(), got[("time", "")], {n: got[("point", n)] for n in lay.points},
                         cutouts, frames, run=src.get("run"), hightag=src.get("hightag"))


def _no_pixels(array: Any, n: int) -> Array:
    """Zeros of ``n`` rows of ``array``'s shape and dtype, without memory (a zero-stride view)."""
    return np.broadcast_to(np.zeros((), array.dtype), (n, *array.shape[1:]))


def _auto_size(shot_bytes: int) -> int:
    """Shots per block when the caller does not say: the power of two nearest _BLOCK_TARGET bytes."""
    shots = max(1.0, _BLOCK_TARGET / max(1, shot_bytes))
    return int(min(_BLOCK_MAX, max(_BLOCK_MIN, 2 ** round(math.log2(shots)))))


class _RowCache:
    """Reads one array whole chunks at a time and keeps the last span read.

    Consecutive small blocks (a replay at 60 Hz reads ~30 shots at a time) then decode each
    chunk once instead of once per block. Spans are replaced, never modified, so arrays
    handed out in earlier blocks stay valid.
    """

    def __init__(self, array: Any, limit: int, layout: Layout) -> None:
        self._array, self._chunk, self._limit, self._layout = array, int(array.chunks[0]), limit, layout
        self._lo = self._hi = 0
        self._data: Array | None = None

    def read(self, a: int, b: int) -> Array:
        """Rows ``[a, b)`` (``b`` <= the limit given at creation)."""
        if self._data is None or a < self._lo or b > self._hi:
            c = self._chunk
            self._lo, self._hi = a // c * c, max(b, min(-(-b // c) * c, self._limit))
            self._data = self._layout.read(self._array, self._lo, self._hi)
        return self._data[a - self._lo:b - self._lo]
