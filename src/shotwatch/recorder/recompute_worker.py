"""The work of a recomputation: the console's reducers over the shots ``[0, B)`` of a recording.

Reading an hour of pixels costs seconds (7 GB for 108,000 shots of 4 ROIs of 64 x 64
float32), and most analysis changes (the I0 window, vetoes, the scan, pump-probe, aliases,
channels) do not change a single ROI value: only the gain, threshold, photon energy, dark and
mask do. So an :class:`Engine` keeps every shot's ROI values (8 bytes a shot and ROI key,
:class:`ValueCache`) under the pixel calibration in force, reading each shot's pixels once:
it follows the recording as it is committed (:meth:`Engine.follow`), and a recomputation
reads only the few shots not yet known plus the points (a few MB for an hour) and builds the
shot tables from the kept values (:func:`~shotwatch.reducers.shot_table_with`). A change of
the pixel calibration starts the values afresh: that recomputation reads every pixel once.
Both paths give exactly what ``reduce`` gives: the same calibration code, on the same pixels.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..recording import RecordingReader
from ..recording.analysis_config import recording_darks
from ..reducers import Analysis, LiveSet, LiveStates, roi_versions, shot_table_with
from ..reducers.values import calibrate
from ..schemas import Config, Cutout

__all__ = ["Engine", "Job", "Reduced", "ValueCache", "pixel_calibration"]

TABLE_BLOCK = 4096
"""Shots per block when the values are known: only points are read (a few hundred kB)."""

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Job:
    """What to reduce: the shots of ``path`` with ``tag < hi`` (all when None), under ``config``'s
    analysis (analysis version ``version``), into a :class:`LiveSet` of these sizes."""

    path: str
    hi: int | None
    config: Config
    version: int
    window: int
    hist_bins: int
    trend: int


@dataclass(frozen=True)
class Reduced:
    """A job's result: the reducers, their states, the shots reduced and their first tag."""

    reducers: LiveSet
    states: LiveStates
    shots: int
    first_tag: int | None
    pixels_read: int


def pixel_calibration(analysis: Analysis) -> tuple[Any, ...]:
    """What an ROI value depends on besides the pixels: gains, threshold, photon energy, the
    darks and masks (by content). Equal for two analyses exactly when their values are."""
    def digest(a: Any) -> str:
        return hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).hexdigest()

    return (analysis.threshold_ev, analysis.photon_energy_ev, tuple(sorted(analysis.ev_per_adu.items())),
            tuple(sorted((d, digest(f.mean)) for d, f in analysis.darks.items())),
            tuple(sorted((d, digest(m)) for d, m in analysis.masks.items())))


class _Column:
    """One roi key's values from shot ``start`` on (a version is active over one span of shots).

    Values are float64 (8 bytes a shot: exact, as ``reduce`` computes them); the non-finite
    pixel counts, nearly always 0, are kept only where they are not (shot index, count).
    """

    def __init__(self, start: int) -> None:
        self.start, self.size = start, 0
        self.values = np.empty(1024)
        self._nf_at: list[I64] = []
        self._nf_count: list[I64] = []

    def put(self, at: int, values: F64, nonfinite: I64) -> None:
        end = at + values.size
        if end - self.start > self.values.size:
            self.values = np.resize(self.values, max(end - self.start, 2 * self.values.size))
        self.values[self.size:at - self.start] = np.nan  # shots where the key had no cutout: invalid
        self.values[at - self.start:end - self.start] = values
        self.size = end - self.start
        bad = np.flatnonzero(nonfinite)
        if bad.size:
            self._nf_at.append((bad + at).astype(np.int64))
            self._nf_count.append(np.asarray(nonfinite[bad], np.int64))

    def take(self, a: int, b: int) -> tuple[F64, I64]:
        values, nonfinite = np.full(b - a, np.nan), np.zeros(b - a, np.int64)
        lo, hi = max(a, self.start), min(b, self.start + self.size)
        if hi > lo:
            values[lo - a:hi - a] = self.values[lo - self.start:hi - self.start]
        if self._nf_at:
            if len(self._nf_at) > 1:  # appended block by block: one array each, joined when read
                self._nf_at, self._nf_count = [np.concatenate(self._nf_at)], [np.concatenate(self._nf_count)]
            at, count = self._nf_at[0], self._nf_count[0]
            i, j = np.searchsorted(at, [a, b])
            nonfinite[at[i:j] - a] = count[i:j]
        return values, nonfinite

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes + sum(x.nbytes for x in self._nf_at) + sum(x.nbytes for x in self._nf_count))


class ValueCache:
    """Every shot's ROI values (:func:`~shotwatch.reducers.values.calibrate`) of one recording
    under one pixel calibration, for the shots ``[0, known)``."""

    def __init__(self, path: str, calibration: tuple[Any, ...]) -> None:
        self.path, self.calibration = path, calibration
        self.known = 0
        self._columns: dict[str, _Column] = {}

    def fits(self, path: str, analysis: Analysis) -> bool:
        return self.path == path and self.calibration == pixel_calibration(analysis)

    def extend(self, reader: RecordingReader, analysis: Analysis, upto: int, *,
               progress: Callable[[int], None] = lambda n: None, cancelled: Callable[[], bool] = lambda: False,
               pause: Callable[[float], object] | None = None) -> int:
        """Read the pixels of shots ``[known, upto)`` once (``reader``: the whole recording);
        returns the shots read. ``pause(s)``, if given, is called after each block with the
        seconds it took (to yield the machine as long again: background reading)."""
        if upto <= self.known:
            return 0
        tags = reader.tags()
        view = reader.select(tags=(int(tags[self.known]), int(tags[upto - 1]) + 1))
        versions = roi_versions(reader.rois.all())
        at, start = self.known, self.known
        t0 = time.monotonic()
        for block in view.blocks():
            if cancelled():
                break
            for key, cut in block.cutouts.items():
                values, nonfinite = calibrate(analysis, key, cut, versions.get(key))
                column = self._columns.get(key)
                if column is None:
                    column = self._columns[key] = _Column(at)
                column.put(at, values, nonfinite)
            at += len(block)
            self.known = at
            progress(at)
            if pause is not None:
                pause(time.monotonic() - t0)
                t0 = time.monotonic()
        return at - start

    def values(self, cutouts: Mapping[str, Cutout], a: int, b: int) -> tuple[dict[str, F64], dict[str, I64]]:
        """Values and non-finite counts of shots ``[a, b)`` for these cutouts' roi keys."""
        values, nonfinite = {}, {}
        for key in cutouts:
            column = self._columns.get(key)
            if column is None:
                values[key], nonfinite[key] = np.full(b - a, np.nan), np.zeros(b - a, np.int64)
            else:
                values[key], nonfinite[key] = column.take(a, b)
        return values, nonfinite

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._columns.values())


class Engine:
    """Keeps one :class:`ValueCache` and reduces jobs with it (one thread uses an Engine)."""

    def __init__(self) -> None:
        self.cache: ValueCache | None = None

    def _cache_for(self, path: str, analysis: Analysis) -> ValueCache:
        if self.cache is None or not self.cache.fits(path, analysis):
            self.cache = ValueCache(path, pixel_calibration(analysis))
        return self.cache

    def follow(self, path: str, config: Config, *, cancelled: Callable[[], bool] = lambda: False,
               pause: Callable[[float], object] | None = None) -> int:
        """Read the pixels of the shots committed since the last call, under ``config``'s
        calibration (the live analysis); returns the shots read (``pause``: see
        :meth:`ValueCache.extend`)."""
        reader = RecordingReader(path)
        analysis = _analysis(config, reader, version=None, origin=path)
        return self._cache_for(path, analysis).extend(reader, analysis, reader.committed, cancelled=cancelled,
                                                      pause=pause)

    def reduce(self, job: Job, *, progress: Callable[[int], None] = lambda n: None,
               cancelled: Callable[[], bool] = lambda: False) -> Reduced:
        """The job's states; returns early (with what it reduced) once ``cancelled()``."""
        reader = RecordingReader(job.path)
        view = reader.select(tags=(None, job.hi))
        start, stop = view.shots
        ls = LiveSet(_analysis(job.config, reader, version=job.version, origin=job.path), window=job.window,
                     hist_bins=job.hist_bins, trend=job.trend)
        cache = self._cache_for(job.path, ls.analysis)
        read = cache.extend(reader, ls.analysis, stop, progress=progress, cancelled=cancelled)
        states, at = ls.init(), start
        for block in view.blocks(size=TABLE_BLOCK, pixels=False):
            if cancelled():
                break
            values, nonfinite = cache.values(block.cutouts, at, at + len(block))
            states = ls.update(states, block, table=shot_table_with(block, ls.analysis, values, nonfinite))
            at += len(block)
        progress(stop)
        first = int(view.tags()[0]) if stop > start else None
        return Reduced(ls, states, at - start, first, read)


def _analysis(config: Config, reader: RecordingReader, *, version: int | None, origin: str) -> Analysis:
    """The analysis exactly as ``reduce`` builds it for this recording."""
    return Analysis.from_config(config, detectors=reader.detectors,
                                darks=recording_darks(config, reader, origin=origin),
                                roi_names=reader.rois.versions, version=version, origin=origin)
