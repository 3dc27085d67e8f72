"""Writing a commit's data: growing the arrays and writing their chunks, concurrently.

The data half of the commit protocol (the writer does the attributes): every array a commit
touches grows first, in one burst (FORMAT.md: grow rarely, in steps), then each array's
rows are written by its ChunkAppender, all arrays at once on a small thread pool (encoding
releases the GIL).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from zarr.types import AnyArray

from ..schemas import Frames, ShotBlock
from ._chunks import ChunkAppender
from ._durable import Durability
from ._format import SHOT_CHUNK
from ._layout import FrameArrays, Layout

__all__ = ["ArrayWriter"]

_WORKERS = 4
_MIN_FRAMES = 16


class ArrayWriter:
    """The arrays of one open recording, and writing rows into them.

    Args:
        layout: the recording's arrays.
        durability: where every file written is noted (for fsync).
    """

    def __init__(self, layout: Layout, durability: Durability) -> None:
        self.layout = layout
        self.capacity = int(layout.tag.shape[0])
        """Length of every per-shot array (>= the shots written)."""
        self._durability = durability
        self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="recording")
        self._apps: dict[str, ChunkAppender] = {}

    def shutdown(self) -> None:
        """Stop the thread pool (after the last write)."""
        self._pool.shutdown(wait=True)

    def write(self, blocks: Sequence[ShotBlock], start: int, frames_done: dict[str, int], *,
                    sync: bool = False) -> None:
        """Grow, then write every array of one commit concurrently; updates ``frames_done``.

        Each array gets the blocks' pieces as segments (no concatenated copy of the commit);
        a piece a block lacks (a point or cutout it did not carry) reads as the fill value.
        """
        segments: dict[str, tuple[AnyArray, list[tuple[int, np.ndarray[Any, Any]]]]] = {}

        def add(array: AnyArray, row: int, data: np.ndarray[Any, Any]) -> None:
            segments.setdefault(array.path, (array, []))[1].append((row, data))

        frame_needs: dict[str, int] = {}
        layout, row = self.layout, start
        for b in blocks:
            add(layout.tag, row, b.tags)
            add(layout.time, row, b.time)
            for name, values in b.points.items():
                add(self.point_array(name), row, values)
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
        self.run([job for array, segs in segments.values()
                   for job in self._appender(array, segs[0][0], sync=sync).jobs(segs)])

    def point_array(self, name: str) -> AnyArray:
        arr = self.layout.points.get(name)
        if arr is None:  # a point that appeared mid-run: NaN before
            arr = self.layout.add_point(name, self.capacity)
        return arr

    def _version_arrays(self, key: str, dtype: np.dtype[Any]) -> tuple[AnyArray, AnyArray]:
        va = self.layout.versions[key]
        if va.pixels is None or va.valid is None:  # the detector's dtype was not known at set_rois
            self.layout.add_version_arrays(va, dtype, self.capacity)
        assert va.pixels is not None and va.valid is not None
        return va.pixels, va.valid

    def _frame_arrays(self, det: str, fr: Frames) -> FrameArrays:
        fa = self.layout.frames.get(det)
        if fa is None:
            fa = self.layout.add_frames(det, shape=(fr.pixels.shape[1], fr.pixels.shape[2]), dtype=fr.pixels.dtype)
        return fa

    def _grow(self, shots: int, frames: dict[str, int]) -> None:
        """Resize every array that needs it, all in one burst (FORMAT.md: grow rarely, in steps)."""
        resizes: list[tuple[AnyArray, tuple[int, ...]]] = []
        if shots > self.capacity:
            cap = -(-max(shots, 2 * self.capacity) // SHOT_CHUNK) * SHOT_CHUNK
            resizes += [(a, (cap, *a.shape[1:])) for a in self.layout.shot_arrays()]
            self.capacity = cap
        for det, need in frames.items():
            fa = self.layout.frames[det]
            have = int(fa.shot.shape[0])
            if need > have:
                cap = max(need, 2 * have, _MIN_FRAMES)
                resizes += [(fa.pixels, (cap, *fa.pixels.shape[1:])), (fa.shot, (cap,))]
        self.run([functools.partial(a.resize, s) for a, s in resizes])

    def _appender(self, array: AnyArray, start: int, *, sync: bool) -> ChunkAppender:
        """The appender of ``array``; a new one starts at ``start`` (all before is final on disk)."""
        app = self._apps.get(array.path)
        if app is None:
            app = self._apps[array.path] = ChunkAppender(array, start, read=self.layout.read,
                                                         durability=self._durability)
        app.fsync = sync
        return app

    def run(self, jobs: Iterable[Callable[[], object]]) -> None:
        """Run jobs on the pool; wait for all before raising the first failure."""
        futures = [self._pool.submit(job) for job in jobs]
        errors = [f.exception() for f in futures]
        for err in errors:
            if err is not None:
                raise err

