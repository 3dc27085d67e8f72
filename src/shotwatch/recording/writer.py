"""RecordingWriter: buffers ShotBlocks and commits them to a FORMAT.md v1 recording.

Commit protocol (FORMAT.md): grow every array first (capacity doubling, one burst), write
all array data of the commit concurrently, and only then rewrite the root attributes with
the new ``committed``. A crash at any point leaves the previous commit readable.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from ..schemas import Config, Frames, RoiTable, ShotBlock, SourceInfo
from ..schemas.errors import RecordingError
from ._attrs import check_compatible, det_dtype, detectors_attr, new_attrs
from ._check import check_recording
from ._chunks import ChunkAppender
from ._format import (
    ATTR_KEY,
    SHOT_CHUNK,
    RecordingWriteError,
    check_attrs,
    disk_bytes,
    jsonable,
    open_root,
    remove_temp_files,
)
from ._layout import FrameArrays, Layout, check_block, committed_frames, roi_table, truncate

__all__ = ["RecordingWriter"]

_MAX_BUFFER_BYTES = 128 << 20
_WORKERS = 4
_MIN_FRAMES = 16


class RecordingWriter:
    """Writes one recording; single-threaded use (the recorder's acquire loop).

    Create with :meth:`create` or :meth:`append`. Blocks given to :meth:`write` are buffered
    and committed once ``commit_seconds`` of wall time passed since the last commit (or the
    buffer holds ``max_buffer_bytes``, so a fast source cannot exhaust memory).
    A failed write raises :class:`RecordingWriteError`; the recording then keeps its last
    commit and this writer refuses further writes.
    """

    def __init__(self, path: Path, root: zarr.Group, attrs: dict[str, Any], *,
                 commit_seconds: float, max_buffer_bytes: int) -> None:
        self._path = path
        self._root = root
        self._attrs = attrs
        self._layout = Layout.discover(root)
        self._committed = int(attrs["committed"])
        self._capacity = int(self._layout.tag.shape[0])
        self._frames_done = {d: committed_frames(f.shot, self._committed) for d, f in self._layout.frames.items()}
        self._commit_seconds = commit_seconds
        self._max_buffer = max_buffer_bytes
        self._pending: list[ShotBlock] = []
        self._pending_bytes = 0
        self._committed_tag = int(np.asarray(self._layout.tag[self._committed - 1])) if self._committed else -1
        self._last_tag: int | None = self._committed_tag if self._committed else None
        self._last_commit = time.monotonic()
        self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="recording")
        self._failed: RecordingWriteError | None = None
        self._closed = False
        self._bytes: int | None = None
        self._apps: dict[str, ChunkAppender] = {}

    # --- opening ----------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, config: Config, source: SourceInfo, rois: RoiTable,
               points: Sequence[str], commit_seconds: float = 2.0,
               max_buffer_bytes: int = _MAX_BUFFER_BYTES) -> RecordingWriter:
        """A new recording at ``path`` (RecordingError if something is there already).

        The skeleton is built in a hidden sibling directory and renamed into place, so a
        crash during creation never leaves a half-made recording at ``path``.
        """
        path = Path(path)
        if path.exists():
            raise RecordingError(f"{path}: expected a new recording path, found an existing one "
                                 "(append to continue it)")
        tmp = path.with_name(f".{path.name}.creating-{uuid.uuid4().hex[:8]}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            attrs = new_attrs(config, source)
            root = zarr.create_group(store=LocalStore(tmp), zarr_format=3, attributes={ATTR_KEY: attrs})
            Layout.create_skeleton(root)
            layout = Layout.discover(root)
            for name in dict.fromkeys(points):
                layout.add_point(name, 0)
            for v in rois.all():
                layout.add_version(v, dtype=det_dtype(attrs, v.detector), capacity=0)
            os.rename(tmp, path)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RecordingWriteError(f"{path}: cannot create the recording ({exc})", errno=exc.errno) from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(path, open_root(path, mode="r+"), _load_attrs(path), commit_seconds=commit_seconds,
                   max_buffer_bytes=max_buffer_bytes)

    @classmethod
    def append(cls, path: str | os.PathLike[str], *, config: Config, source: SourceInfo, points: Sequence[str],
               commit_seconds: float = 2.0, max_buffer_bytes: int = _MAX_BUFFER_BYTES) -> RecordingWriter:
        """Continue an existing recording after truncating every array to ``committed``.

        Raises:
            RecordingError: not a recording, one the reader would refuse (see
                RecordingReader; ``shotwatch repair`` first if ``committed`` overstates the
                arrays), or its configuration (ROIs aside) or the shape or dtype of a
                detector differs; the message names what differs.
        """
        path = Path(path)
        root = open_root(path, mode="r+")
        attrs = check_attrs(root, path)
        checked = check_recording(root, path, attrs, int(attrs["committed"]))  # before any change
        check_compatible(path, attrs, config, source)
        try:
            truncate(root, int(attrs["committed"]), layout=checked.layout)
            remove_temp_files(path)
            attrs["closed"] = False
            attrs["detectors"] = {**attrs.get("detectors", {}), **detectors_attr(source)}
            root.attrs[ATTR_KEY] = jsonable(attrs)
        except OSError as exc:
            raise RecordingWriteError(f"{path}: cannot reopen the recording ({exc})", errno=exc.errno) from exc
        writer = cls(path, root, attrs, commit_seconds=commit_seconds, max_buffer_bytes=max_buffer_bytes)
        writer._guard(lambda: [writer._layout.add_point(p, writer._capacity)
                               for p in dict.fromkeys(points) if p not in writer._layout.points])
        return writer

    # --- properties ---------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def committed(self) -> int:
        """Shots on disk and promised to readers."""
        return self._committed

    @property
    def rois(self) -> RoiTable:
        """The ROI versions recorded so far (a copy; append seeds the recorder's table from it)."""
        return roi_table([va.version for va in self._layout.versions.values()], self._written())

    def bytes(self) -> int:
        """Bytes on disk (recomputed at most once per commit)."""
        if self._bytes is None:
            self._bytes = disk_bytes(self._path)
        return self._bytes

    # --- writing ------------------------------------------------------------------------

    def set_rois(self, table: RoiTable) -> None:
        """Create groups for versions in ``table`` not yet recorded (call at a block boundary).

        Raises:
            RecordingError: a version already recorded under the same key has another
                rectangle, detector or first shot, or a new version starts before the shots
                already written (after :meth:`append`, continue the recording's own table,
                :attr:`rois`, and count shots from :attr:`committed`).
        """
        self._usable()
        for v in table.all():
            known = self._layout.versions.get(v.key)
            if known is None:
                if v.first_shot < self._written():  # its shots are already written under other keys
                    raise RecordingError(f"{self._path}: roi/{v.name}/v{v.version}: expected first_shot >= "
                                         f"{self._written()} (shots written so far), found {v.first_shot}")
                dtype = det_dtype(self._attrs, v.detector)
                self._guard(lambda v=v, dtype=dtype: self._layout.add_version(  # type: ignore[misc]
                    v, dtype=dtype, capacity=self._capacity))
            elif (known.version.detector, known.version.x, known.version.y, known.version.first_shot) != (
                    v.detector, v.x, v.y, v.first_shot):
                raise RecordingError(f"{self._path}: roi/{v.name}/v{v.version}: expected the recorded version "
                                     f"{known.version.attrs()}, found {v.attrs()}")

    def set_detectors(self, source: SourceInfo) -> None:
        """Record array detectors first seen after the start (FACILITY.md, call at a block boundary).

        Their shape, dtype and eV/ADU go into the ``detectors`` attribute at once, so before
        any of their cutouts are committed; ROI versions on them whose arrays waited for the
        dtype get their arrays. A detector already recorded keeps its entry.

        Raises:
            RecordingWriteError: the attributes or arrays could not be written.
        """
        self._usable()
        known = dict(self._attrs.get("detectors", {}))
        new = {d: info for d, info in detectors_attr(source).items() if d not in known}
        if not new:
            return
        attrs = {**self._attrs, "detectors": {**known, **new}}
        self._guard(lambda: self._write_attrs(attrs))
        self._attrs = attrs
        for va in self._layout.versions.values():
            info = new.get(va.version.detector)
            if info is not None and va.pixels is None:
                self._guard(functools.partial(self._layout.add_version_arrays, va, np.dtype(info["dtype"]),
                                              self._capacity))

    def write(self, block: ShotBlock) -> None:
        """Buffer ``block``; commit if ``commit_seconds`` passed or the buffer is full.

        Raises:
            ValueError: a cutout key not set with :meth:`set_rois`, a wrong cutout shape, or
                tags not increasing past those already written.
            RecordingWriteError: the commit failed.
        """
        self._usable()
        if len(block):
            check_block(block, self._layout, last_tag=self._last_tag)
            self._pending.append(block)
            self._pending_bytes += _nbytes(block)
            self._last_tag = int(block.tags[-1])
        if self._pending_bytes >= self._max_buffer or time.monotonic() - self._last_commit >= self._commit_seconds:
            self.commit()

    def commit(self) -> None:
        """Write the buffered blocks and advance ``committed`` (RecordingWriteError on failure)."""
        self._usable()
        self._last_commit = time.monotonic()
        if not self._pending:
            return
        pending = self._pending
        start, stop = self._committed, self._written()
        frames_done = dict(self._frames_done)
        attrs = {**self._attrs, "committed": stop}
        self._guard(lambda: self._write_data(pending, start, frames_done))
        self._guard(lambda: self._write_attrs(attrs))
        self._attrs, self._committed, self._frames_done = attrs, stop, frames_done
        self._committed_tag = int(pending[-1].tags[-1])
        self._pending, self._pending_bytes, self._bytes = [], 0, None

    def mark(self, text: str, *, tag: int | None, time: float | None) -> dict[str, Any]:
        """Record an operator mark now (root attributes rewritten at once); returns it.

        ``shot`` is the first written shot with a tag >= ``tag`` (the next shot if none);
        without a tag, the last shot written (its tag is used).
        """
        self._usable()
        if tag is None:
            shot, tag = max(self._written() - 1, 0), self._last_tag
        else:
            shot = self._shot_of_tag(int(tag))
        mark = jsonable({"shot": shot, "tag": tag, "time": time, "text": str(text)})
        attrs = {**self._attrs, "marks": [*self._attrs.get("marks", []), mark]}
        self._guard(lambda: self._write_attrs(attrs))
        self._attrs = attrs
        return dict(mark)

    def close(self) -> None:
        """Commit what is buffered, trim every array to ``committed`` and set ``closed``.

        After a failed write this only releases resources: the recording stays as the last
        commit left it (``closed`` false; ``shotwatch repair`` trims it). Idempotent.
        """
        if self._closed:
            return
        try:
            if self._failed is None:
                self.commit()
                self._guard(lambda: truncate(self._root, self._committed, layout=self._layout))
                self._guard(lambda: self._write_attrs({**self._attrs, "closed": True}))
                self._attrs["closed"] = True
        finally:
            self._closed = True
            self._pool.shutdown(wait=True)

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------

    def _usable(self) -> None:
        if self._failed is not None:
            raise RecordingWriteError(f"{self._path}: not writable after an earlier failure "
                                      f"({self._failed}); last commit {self._committed} shots",
                                      errno=self._failed.errno)
        if self._closed:
            raise RecordingWriteError(f"{self._path}: the writer is closed")

    def _guard(self, action: Callable[[], object]) -> None:
        """Run ``action``; any failure makes this writer unusable and raises RecordingWriteError."""
        try:
            action()
        except Exception as exc:
            errno = exc.errno if isinstance(exc, OSError) else None
            self._failed = RecordingWriteError(
                f"{self._path}: write failed ({type(exc).__name__}: {exc}); the recording keeps its "
                f"last commit, {self._committed} shots", errno=errno)
            raise self._failed from exc

    def _written(self) -> int:
        return self._committed + sum(len(b) for b in self._pending)

    def _write_data(self, blocks: Sequence[ShotBlock], start: int, frames_done: dict[str, int]) -> None:
        """Grow, then write every array of one commit concurrently; updates ``frames_done``.

        Each array gets the blocks' pieces as segments (no concatenated copy of the commit);
        a piece a block lacks (a point or cutout it did not carry) reads as the fill value.
        """
        segments: dict[str, tuple[zarr.Array, list[tuple[int, np.ndarray[Any, Any]]]]] = {}

        def add(array: zarr.Array, row: int, data: np.ndarray[Any, Any]) -> None:
            segments.setdefault(array.path, (array, []))[1].append((row, data))

        frame_needs: dict[str, int] = {}
        layout, row = self._layout, start
        for b in blocks:
            add(layout.tag, row, b.tags)
            add(layout.time, row, b.time)
            for name, values in b.points.items():
                add(self._point_array(name), row, values)
            for key, cut in b.cutouts.items():
                pixels, valid = self._version_arrays(key, cut.pixels.dtype)
                add(pixels, row, cut.pixels)
                add(valid, row, cut.valid)
            for det, fr in b.frames.items():
                if not len(fr.shot):
                    continue
                fa, f0 = self._frame_arrays(det, fr), frames_done.get(det, 0)
                add(fa.pixels, f0, fr.pixels)
                add(fa.shot, f0, fr.shot.astype(np.int64) + row)
                frames_done[det] = frame_needs[det] = f0 + len(fr.shot)
            row += len(b)
        self._grow(row, frame_needs)
        self._run([job for array, segs in segments.values()
                   for job in self._appender(array, segs[0][0]).jobs(segs)])

    def _point_array(self, name: str) -> zarr.Array:
        arr = self._layout.points.get(name)
        if arr is None:  # a point that appeared mid-run: NaN before
            arr = self._layout.add_point(name, self._capacity)
        return arr

    def _version_arrays(self, key: str, dtype: np.dtype[Any]) -> tuple[zarr.Array, zarr.Array]:
        va = self._layout.versions[key]
        if va.pixels is None or va.valid is None:  # the detector's dtype was not known at set_rois
            self._layout.add_version_arrays(va, dtype, self._capacity)
        assert va.pixels is not None and va.valid is not None
        return va.pixels, va.valid

    def _frame_arrays(self, det: str, fr: Frames) -> FrameArrays:
        fa = self._layout.frames.get(det)
        if fa is None:
            fa = self._layout.add_frames(det, shape=(fr.pixels.shape[1], fr.pixels.shape[2]), dtype=fr.pixels.dtype)
        return fa

    def _grow(self, shots: int, frames: dict[str, int]) -> None:
        """Resize every array that needs it, all in one burst (FORMAT.md: grow rarely, in steps)."""
        resizes: list[tuple[zarr.Array, tuple[int, ...]]] = []
        if shots > self._capacity:
            cap = -(-max(shots, 2 * self._capacity) // SHOT_CHUNK) * SHOT_CHUNK
            resizes += [(a, (cap, *a.shape[1:])) for a in self._layout.shot_arrays()]
            self._capacity = cap
        for det, need in frames.items():
            fa = self._layout.frames[det]
            have = int(fa.shot.shape[0])
            if need > have:
                cap = max(need, 2 * have, _MIN_FRAMES)
                resizes += [(fa.pixels, (cap, *fa.pixels.shape[1:])), (fa.shot, (cap,))]
        self._run([lambda a=a, s=s: a.resize(s) for a, s in resizes])  # type: ignore[misc]

    def _appender(self, array: zarr.Array, start: int) -> ChunkAppender:
        """The appender of ``array``; a new one starts at ``start`` (all before is final on disk)."""
        app = self._apps.get(array.path)
        if app is None:
            app = self._apps[array.path] = ChunkAppender(array, start)
        return app

    def _run(self, jobs: Sequence[Callable[[], object]]) -> None:
        """Run jobs on the pool; wait for all before raising the first failure."""
        futures = [self._pool.submit(job) for job in jobs]
        errors = [f.exception() for f in futures]
        for err in errors:
            if err is not None:
                raise err

    def _write_attrs(self, attrs: dict[str, Any]) -> None:
        self._root.attrs[ATTR_KEY] = jsonable(attrs)

    def _shot_of_tag(self, tag: int) -> int:
        """Index of the first written shot with a tag >= ``tag`` (the next shot if none)."""
        if self._committed and tag <= self._committed_tag:
            return int(np.searchsorted(np.asarray(self._layout.tag[: self._committed]), tag))
        base = self._committed
        for b in self._pending:
            i = int(np.searchsorted(b.tags, tag))
            if i < len(b):
                return base + i
            base += len(b)
        return base


def _nbytes(block: ShotBlock) -> int:
    n = block.tags.nbytes + block.time.nbytes + sum(v.nbytes for v in block.points.values())
    n += sum(c.pixels.nbytes + c.valid.nbytes for c in block.cutouts.values())
    return n + sum(f.pixels.nbytes for f in block.frames.values())


def _load_attrs(path: Path) -> dict[str, Any]:
    return check_attrs(open_root(path, mode="r"), path)
