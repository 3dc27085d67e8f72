"""Reading one block's shots from dbpy (point detectors) and olpy (images).

Only the SACLA source's poller thread calls these. Every fault is turned into missing values
and counts in a :class:`Tally`; nothing here raises for a failed read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from ..schemas import Frames
from ..schemas.source_info import DetectorInfo
from ._sacla_api import Notices

__all__ = ["EV_PER_ADU_UNIT", "DetectorHandle", "TailHold", "Tally", "detector_info", "first_shots", "open_handle",
           "probe", "read_frames", "read_points", "span", "tally_points"]

EV_PER_ADU_UNIT = 3.65  # eV per ADU at mp_absgain = 1 (MPCCD)


@dataclass
class Tally:
    """Counts of faults so far (the source's status)."""

    missing: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, counter: str, n: int = 1, *, name: str | None = None) -> None:
        if n <= 0:
            return
        self.counters[counter] = self.counters.get(counter, 0) + n
        if name is not None:
            self.missing[name] = self.missing.get(name, 0) + n


@dataclass
class DetectorHandle:
    """An olpy reader and buffer for one sensor, with its info once a frame was read."""

    det: str
    reader: Any
    buffer: Any
    info: dict[str, Any] | None = None
    shape: tuple[int, ...] = ()
    dtype: str = ""
    live: bool = True  # delivered images in its last block: worth waiting for (TailHold)


def open_handle(ol: ModuleType, det: str) -> DetectorHandle | None:
    """A reader and buffer for ``det``, or None where olpy says it is not in the stream."""
    try:
        reader = ol.StorageReader(det)
        return DetectorHandle(det, reader, ol.StorageBuffer(reader))
    except Exception:
        return None


def detector_info(handle: DetectorHandle) -> DetectorInfo | None:
    """Shape, dtype and eV/ADU (mp_absgain x 3.65) once a frame of ``handle`` was read.

    A detector without ``mp_absgain`` (not an MPCCD) gets 1 eV/ADU: calibration.ev_per_adu
    then has to say.
    """
    if handle.info is None or len(handle.shape) != 2:
        return None
    gain = float(handle.info.get("mp_absgain", 1.0 / EV_PER_ADU_UNIT))
    return DetectorInfo(shape=(handle.shape[0], handle.shape[1]), dtype=handle.dtype,
                        ev_per_adu=gain * EV_PER_ADU_UNIT)


def span(tags: Sequence[int]) -> str:
    """``tag T`` or ``tags A..B`` for a notice."""
    return f"tag {tags[0]}" if len(tags) == 1 else f"tags {tags[0]}..{tags[-1]}"


def read_points(db: ModuleType, names: Sequence[str], hightag: int,
                tags: tuple[int, ...]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """float64 values of each point detector for ``tags``, and the reads that failed.

    A failed read (dbpy raised, or answered the wrong number of values) is all NaN, with its
    error text under the name in the second mapping; the caller decides whether those shots
    wait for a retry or are delivered as NaN. Never raises for a facility fault.
    """
    n = len(tags)
    out: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    for name in names:
        try:
            values = np.asarray(db.read_syncdatalist_float(name, hightag, tags), dtype=np.float64)
            if values.shape != (n,):
                raise ValueError(f"expected {n} values, found shape {values.shape}")
        except Exception as exc:  # a facility read may raise anything; never fatal
            failed[name] = f"{type(exc).__name__}: {exc}" if not str(exc).startswith(name) else str(exc)
            values = np.full(n, np.nan)
        out[name] = values
    return out, failed


def tally_points(points: dict[str, np.ndarray], failed: dict[str, str], tags: Sequence[int],
                 tally: Tally, notes: Notices) -> None:
    """Count what is delivered missing: NaN per name, one read error and notice per failed read."""
    n = len(tags)
    for name, values in points.items():
        tally.count("point NaN", int(np.count_nonzero(np.isnan(values))), name=name)
        if name in failed:
            tally.count("read errors")
            notes.add(f"{name}: read failed for {n} shot{'s' * (n != 1)} ({span(tags)}), "
                      f"recorded as NaN: {failed[name]}", key=f"read:{name}")


def _collect(handle: DetectorHandle, tag: int) -> np.ndarray | None:
    try:
        handle.reader.collect(handle.buffer, int(tag))  # a Python int, as olpy wants
        data = np.asarray(handle.buffer.read_det_data(0))
        if handle.info is None:
            handle.info = dict(handle.buffer.read_det_info(0))
            handle.shape, handle.dtype = tuple(data.shape), str(data.dtype)
        return data
    except Exception:  # left the buffer, never existed, or a failed read: no frame
        return None


def read_frames(handle: DetectorHandle, tags: Sequence[int]) -> tuple[Frames | None, np.ndarray]:
    """Full frames for the shots of ``tags`` that have one, and the bool mask of those shots.

    The caller counts the rest ("image gone"): it may first hold back a tail of shots whose
    images have not reached the buffer yet.
    """
    buf: np.ndarray | None = None
    ok = np.zeros(len(tags), dtype=bool)
    for i, tag in enumerate(tags):
        data = _collect(handle, tag)
        if data is None:
            continue
        if buf is None:  # copy into one block-sized array: olpy may reuse its own memory
            buf = np.empty((len(tags), *data.shape), dtype=data.dtype)
        if data.shape == buf.shape[1:]:
            buf[i], ok[i] = data, True
    if buf is None:
        return None, ok
    return Frames(buf if ok.all() else buf[ok], np.flatnonzero(ok).astype(np.int64)), ok


def first_shots(frames: Frames | None, n: int) -> Frames | None:
    """The frames of shots ``[0, n)`` (views: frame shot indices are increasing)."""
    if frames is None:
        return None
    k = int(np.searchsorted(frames.shot, n))
    return Frames(frames.pixels[:k], frames.shot[:k]) if k else None


def probe(handle: DetectorHandle, recent: Sequence[int]) -> bool:
    """Fill ``handle.info``/shape/dtype from the newest of ``recent`` tags still in the buffer."""
    for tag in reversed(recent):
        if handle.info is not None or _collect(handle, tag) is not None:
            return True
    return handle.info is not None


class TailHold:
    """Hold back the newest shots that have no image in any detector yet, up to ``hold_max`` s.

    The image buffer may lag the database's newest tag: counting those shots as "image gone"
    would lose the newest images of every poll. A shot waits at most about ``hold_max``.
    """

    def __init__(self, hold_max: float) -> None:
        self.hold_max = hold_max
        self._since: tuple[int, float] | None = None  # (first held tag, when first held)

    def tail(self, tags: Sequence[int], oks: Sequence[np.ndarray]) -> int:
        """How many of the newest ``tags`` to hold back (``oks``: per detector, shot has an image)."""
        any_ok = np.logical_or.reduce(list(oks)) if oks else np.ones(len(tags), dtype=bool)
        tail = len(tags) - (int(np.flatnonzero(any_ok)[-1]) + 1 if any_ok.any() else 0)
        if tail == 0:
            self._since = None
            return 0
        first, now = int(tags[-tail]), time.monotonic()
        if self._since is None or self._since[0] != first:
            self._since = (first, now)
        if now - self._since[1] > self.hold_max:
            self._since = None
            return 0
        return tail
