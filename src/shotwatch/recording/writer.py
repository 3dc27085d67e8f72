"""RecordingWriter: buffers ShotBlocks and commits them to a FORMAT.md v1 recording.

Commit protocol (FORMAT.md): grow every array first (capacity doubling, one burst), write
all array data of the commit concurrently, and only then rewrite the root attributes with
the new ``committed``. A crash at any point leaves the previous commit readable. With
``record.fsync`` (and always at a clean close) the data are fsynced before the root
attributes, and those after (``_durable``).

A writer holds the recording's lock (FORMAT.md "One writer", ``_lock``) from before it
changes anything until it is closed.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..schemas import AnalysisVersion, Config, DarkFrame, RoiTable, ShotBlock, SourceInfo
from ..schemas.errors import RecordingError
from ._attrs import det_dtype, detectors_attr
from ._darks import check_frame, dark_versions, write_dark_group
from ._data import ArrayWriter
from ._durable import Durability
from ._format import ATTR_KEY, RecordingWriteError, disk_bytes, encode_name, jsonable
from ._layout import Layout, check_block, committed_frames, roi_table, truncate
from ._opening import Opened, open_existing, open_new
from ._store import SafeStore
from ._versions import NOT_ANALYSIS, check_dark_refs

__all__ = ["RecordingWriter"]

_MAX_BUFFER_BYTES = 128 << 20


class RecordingWriter:
    """Writes one recording; single-threaded use (the recorder's acquire loop).

    Create with :meth:`create` or :meth:`append`. Blocks given to :meth:`write` are buffered
    and committed once ``commit_seconds`` of wall time passed since the last commit (or the
    buffer holds ``max_buffer_bytes``, so a fast source cannot exhaust memory).
    A failed write raises :class:`RecordingWriteError`; the recording then keeps its last
    commit and this writer refuses further writes.
    """

    def __init__(self, path: Path, opened: Opened, *, commit_seconds: float, max_buffer_bytes: int,
                 fsync: bool) -> None:
        self._path = path
        self._root, self._attrs, self._lock = opened.root, opened.attrs, opened.lock
        self._fsync = fsync
        self._durability = Durability()
        if isinstance(self._root.store, SafeStore):
            self._root.store.tracker = self._durability  # zarr's own writes (metadata, resizes) too
        self._layout = Layout.discover(self._root, path)
        self._committed = int(self._attrs["committed"])
        self._arrays = ArrayWriter(self._layout, self._durability)
        self._frames_done = {d: committed_frames(self._layout, f.shot, self._committed)
                             for d, f in self._layout.frames.items()}
        self._darks: dict[str, list[int]] = {}
        for v, _ in dark_versions(self._root, str(path)):
            self._darks.setdefault(v.detector, []).append(v.version)
        self._commit_seconds = commit_seconds
        self._max_buffer = max_buffer_bytes
        self._pending: list[ShotBlock] = []
        self._pending_bytes = 0
        self._committed_tag = int(self._layout.read(self._layout.tag, self._committed - 1, self._committed)[0]) \
            if self._committed else -1
        self._last_tag: int | None = self._committed_tag if self._committed else None
        self._last_commit = time.monotonic()
        self._failed: RecordingWriteError | None = None
        self._closed = False
        self._bytes: int | None = None

    # --- opening ----------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, config: Config, source: SourceInfo, rois: RoiTable,
               points: Sequence[str], commit_seconds: float = 2.0,
               max_buffer_bytes: int = _MAX_BUFFER_BYTES,
               darks: Mapping[str, DarkFrame] | None = None) -> RecordingWriter:
        """A new recording at ``path`` (RecordingError if something is there already).

        The skeleton is built in a hidden sibling directory, locked, and renamed into place,
        so a crash during creation never leaves a half-made recording at ``path``. Its
        analysis version 1 is ``config``'s analysis sections; ``darks`` become each
        detector's dark version 1 (written before the rename: ``config`` may name them as
        ``calibration.dark = {"<det>": 1}``, and must name no other).
        """
        path = Path(path)
        opened = open_new(path, config=config, source=source, rois=rois, points=points, darks=darks)
        return cls._start(path, opened, config, points=(), commit_seconds=commit_seconds,
                          max_buffer_bytes=max_buffer_bytes)

    @classmethod
    def append(cls, path: str | os.PathLike[str], *, config: Config, source: SourceInfo, points: Sequence[str],
               commit_seconds: float = 2.0, max_buffer_bytes: int = _MAX_BUFFER_BYTES) -> RecordingWriter:
        """Continue an existing recording after truncating every array to ``committed``.

        The lock is taken before anything is read or changed. Analysis versions that
        started after ``committed`` (a crashed tail) are dropped; new ones continue the
        numbering.

        Raises:
            RecordingError: another process is writing it (the message says "being written
                by pid N", and nothing is touched); not a recording, one the reader would
                refuse (see RecordingReader; ``shotwatch repair`` first if ``committed``
                overstates the arrays), or its configuration (ROIs aside; the analysis
                sections against its newest analysis version) or the shape or dtype of a
                detector differs; the message names what differs.
        """
        path = Path(path)
        opened = open_existing(path, config=config, source=source)
        return cls._start(path, opened, config, points=points, commit_seconds=commit_seconds,
                          max_buffer_bytes=max_buffer_bytes)

    @classmethod
    def _start(cls, path: Path, opened: Opened, config: Config, *, points: Sequence[str], commit_seconds: float,
               max_buffer_bytes: int) -> RecordingWriter:
        try:
            writer = cls(path, opened, commit_seconds=commit_seconds, max_buffer_bytes=max_buffer_bytes,
                         fsync=config.record.fsync)
        except BaseException:
            opened.lock.release()
            raise
        writer._guard(lambda: [writer._layout.add_point(p, writer._arrays.capacity)
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

    @property
    def analysis_versions(self) -> list[AnalysisVersion]:
        """The analysis versions recorded so far, oldest first (FORMAT.md ``analysis``)."""
        return [AnalysisVersion.model_validate(e) for e in self._analysis()]

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
                self._guard(functools.partial(self._layout.add_version, v, dtype=dtype,
                                              capacity=self._arrays.capacity))
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
                                              self._arrays.capacity))

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
        self._commit(sync=self._fsync)

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
        self._set_attrs({**self._attrs, "marks": [*self._attrs.get("marks", []), mark]})
        return dict(mark)

    def add_analysis(self, config: Mapping[str, Any], *, first_shot: int, first_tag: int, by: str,
                     time: float | None) -> int:
        """Record analysis version K+1 from ``first_shot`` on (a block boundary); returns K+1.

        The root attributes are rewritten at once (like a mark); recorded versions are never
        rewritten. ``config`` holds the analysis sections as JSON (every section but source,
        record and roi; the caller validated them); a ``calibration.dark`` naming dark
        versions (``{"<det>": k}``) must name recorded ones. See ``_versions`` for what a
        crash before ``first_shot`` is committed leaves.

        Raises:
            ValueError: ``first_shot`` before the shots written so far (they were reduced
                under the previous version), a section that is not analysis, or an unknown
                dark version (RecordingError, a ValueError).
            RecordingWriteError: the write failed.
        """
        self._usable()
        where = f"{self._path}: analysis version {len(self._analysis()) + 1}"
        bad = sorted(set(config) & set(NOT_ANALYSIS))
        if bad:
            raise ValueError(f"{where}: expected the analysis sections only, found {', '.join(bad)}")
        if first_shot < self._written():
            raise ValueError(f"{where}: first_shot: expected >= {self._written()} (shots written so far), "
                             f"found {first_shot}")
        check_dark_refs(config, self._darks, f"{where}: config")
        entry = jsonable({"version": len(self._analysis()) + 1, "first_shot": int(first_shot),
                          "first_tag": int(first_tag), "time": time, "by": str(by), "config": dict(config)})
        AnalysisVersion.model_validate(entry, strict=True)  # what readers will check
        self._set_attrs({**self._attrs, "analysis": [*self._analysis(), entry]})
        return int(entry["version"])

    def add_dark(self, detector: str, frame: DarkFrame, *, time: float | None) -> int:
        """Record ``frame`` as dark version k+1 of ``detector`` (``dark/<det>/v<k+1>``); returns k+1.

        Written whole in a hidden directory, fsynced and renamed into place: readers see all
        of it or nothing. Not per shot, so outside the equal-length rule.

        Raises:
            ValueError: a detector the recording does not know, or mean/std not float
                arrays of its shape.
            RecordingWriteError: the write failed.
        """
        self._usable()
        info = self._attrs.get("detectors", {}).get(detector)
        if not isinstance(info, dict):
            known = ", ".join(sorted(self._attrs.get("detectors", {}))) or "none"
            raise ValueError(f"{self._path}: dark of {detector}: expected a detector the recording knows ({known})")
        check_frame(detector, frame, tuple(info["shape"]))
        version = max(self._darks.get(detector, []), default=0) + 1
        target = self._path / "dark" / encode_name(detector) / f"v{version}"

        def write() -> None:
            dark = _group(self._root, "dark", {})
            _group(dark, encode_name(detector), {"name": detector})
            write_dark_group(target, detector, frame, shape=tuple(info["shape"]), attrs={"time": time})
            if self._fsync:
                self._sync_now()

        self._guard(write)
        self._darks.setdefault(detector, []).append(version)
        return version

    def close(self) -> None:
        """Commit what is buffered, trim every array to ``committed``, set ``closed``, fsync.

        Everything written since the last fsync is made durable before ``closed`` is set,
        whatever ``record.fsync`` says. After a failed write this only releases resources
        and the lock: the recording stays as the last commit left it (``closed`` false;
        ``shotwatch repair`` trims it). Idempotent.
        """
        if self._closed:
            return
        try:
            if self._failed is None:
                self._commit(sync=True)
                self._guard(lambda: truncate(self._root, self._committed, layout=self._layout))
                self._set_attrs({**self._attrs, "closed": True}, sync=True)
        finally:
            self._closed = True
            self._arrays.shutdown()
            self._lock.release()

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

    def _commit(self, *, sync: bool) -> None:
        """Data, (fsync), root attributes with the new ``committed``, (fsync)."""
        self._usable()
        self._last_commit = time.monotonic()
        if not self._pending:
            if sync and self._durability.pending():
                self._guard(self._sync_now)
            return
        pending = self._pending
        start, stop = self._committed, self._written()
        frames_done = dict(self._frames_done)
        attrs = {**self._attrs, "committed": stop, "analysis": self._first_tags(pending, start)}
        self._guard(lambda: self._write_data(pending, start, frames_done, sync=sync))
        if sync:  # every new chunk and its directory before the root attributes say they are there
            self._guard(self._sync_now)
        self._set_attrs(attrs, sync=sync)
        self._committed, self._frames_done = stop, frames_done
        self._committed_tag = int(pending[-1].tags[-1])
        self._pending, self._pending_bytes, self._bytes = [], 0, None

    def _set_attrs(self, attrs: dict[str, Any], *, sync: bool | None = None) -> None:
        """Rewrite the root attributes (then fsync them and their directory when syncing)."""
        self._guard(lambda: self._write_attrs(attrs))
        self._attrs = attrs
        if self._fsync if sync is None else sync:
            self._guard(self._sync_now)

    def _sync_now(self) -> None:
        self._durability.sync(run=self._arrays.run)

    def _analysis(self) -> list[dict[str, Any]]:
        return list(self._attrs.get("analysis", []))

    def _first_tags(self, pending: Sequence[ShotBlock], start: int) -> list[dict[str, Any]]:
        """``analysis`` with the first tag of versions whose first shot this commit holds filled in."""
        out = []
        for entry in self._analysis():
            tag = _tag_at(pending, int(entry["first_shot"]) - start) if entry["first_tag"] == -1 else None
            out.append(entry if tag is None else {**entry, "first_tag": tag})
        return out

    def _write_data(self, blocks: Sequence[ShotBlock], start: int, frames_done: dict[str, int], *,
                    sync: bool = False) -> None:
        self._arrays.write(blocks, start, frames_done, sync=sync)

    def _write_attrs(self, attrs: dict[str, Any]) -> None:
        self._root.attrs[ATTR_KEY] = jsonable(attrs)

    def _shot_of_tag(self, tag: int) -> int:
        """Index of the first written shot with a tag >= ``tag`` (the next shot if none)."""
        if self._committed and tag <= self._committed_tag:
            return int(np.searchsorted(self._layout.read(self._layout.tag, 0, self._committed), tag))
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


def _tag_at(blocks: Sequence[ShotBlock], i: int) -> int | None:
    """Tag of shot ``i`` counted from the first of ``blocks`` (None if they do not hold it)."""
    if i < 0:
        return None
    for b in blocks:
        if i < len(b):
            return int(b.tags[i])
        i -= len(b)
    return None


def _group(parent: zarr.Group, name: str, attrs: dict[str, Any]) -> zarr.Group:
    """Child group ``name`` of ``parent``, created (with ``attrs``) if missing."""
    if name in parent:
        node = parent[name]
        if not isinstance(node, zarr.Group):
            raise RecordingError(f"{parent.path}/{name}: expected a group, found an array")
        return node
    return parent.create_group(name, attributes=attrs)
