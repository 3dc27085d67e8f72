"""Replay: a recording as a source, at recorded pace (x speed) or as fast as possible.

Replay is feeding recorded blocks to the same code as live data (STYLE.md rule 3): the
recorder reads this source like any other, and consoles watch that recorder. The recorded
cutouts (keyed ``name/vK``) and the stored frames are delivered as they are; ROIs always come
from the recording (:meth:`Replayer.rois`), so :meth:`Replayer.set_rois` changes nothing.
Pause, seek and speed (:class:`~shotwatch.sources.base.Playback`) are the recorder's control
requests on a replay; pacing lives here and nowhere else.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import numpy as np
import numpy.typing as npt

from ..recording import RecordingReader
from ..schemas import ReplaySource, Roi, RoiVersion, ShotBlock
from ..schemas.source_info import SourceInfo
from .base import NOMINAL_RATE, Playback, Source, SourceStatus

__all__ = ["Replayer"]

F64 = npt.NDArray[np.float64]
FAST_BLOCK = 1200  # shots per block at speed 0: the recorder publishes at most 2048 at once
READ_SIZE = 4096  # shots per read from the recording: a few MB, read ahead on a thread
MAX_GAP = 2.0  # recorded pauses longer than this (s) are shortened to it (e.g. appended sessions)


class Replayer(Source):
    """Blocks from a recording (see module docstring); its own :class:`Playback`.

    Args:
        cfg: the ``[source]`` section: ``path`` and ``speed`` (1.0 = recorded pace, 0 = as
            fast as possible).
        block_seconds: at ``speed > 0``, a block spans at most this much wall time
            (``block_seconds x speed`` of recorded time, never less than ``block_seconds``).
            At ``speed = 0``, blocks hold up to 1,200 shots.
    """

    def __init__(self, cfg: ReplaySource, *, block_seconds: float = 0.5) -> None:
        self._cfg = cfg
        self._speed = cfg.speed
        self._paused = False
        self._block_seconds = block_seconds
        self._reader: RecordingReader | None = None
        self._tags: npt.NDArray[np.int64] = np.empty(0, np.int64)
        self._versions: list[RoiVersion] = []
        self._blocks: Iterator[ShotBlock] | None = None
        self._current: ShotBlock | None = None  # the recording's block being cut into pieces
        self._clock: F64 = np.empty(0)  # replay clock (s) of each shot of _current
        self._pos = 0  # next shot within _current
        self._shot = 0  # next shot on the recording's shot axis
        self._rate = NOMINAL_RATE  # recorded shots per second, for seeks by seconds
        self._last_clock = 0.0
        self._last_time: float | None = None  # recorded time of the last shot seen
        self._anchor: tuple[float, float] | None = None  # (monotonic wall time, replay clock)
        self._state = "waiting"
        self._counters: dict[str, int] = {}
        self._notices: list[str] = []

    # --- Source protocol ----------------------------------------------------------------

    def open(self) -> None:
        """Open the recording (RecordingError if it is not one). Idempotent."""
        if self._reader is not None or self._state == "stopped":
            return
        self._reader = RecordingReader(self._cfg.path)
        self._tags = np.asarray(self._reader.tags(), np.int64)
        self._versions = self._reader.rois.all()
        self._blocks = self._reader.blocks(size=READ_SIZE, frames=True)
        self._state = "running"

    def describe(self) -> SourceInfo:
        """The recorded run, detectors and points; ``attrs`` names the recording."""
        self.open()
        reader = self._require()
        src = reader.source
        return SourceInfo(
            kind="replay", run=src.get("run"), hightag=src.get("hightag"),
            detectors=reader.detectors, points=reader.points,
            attrs={"recording": str(reader.path), "speed": self._cfg.speed, "committed": reader.committed,
                   "closed": reader.closed, "recorded_source": src},
        )

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        """Ignored: a replay delivers the recording's own cutouts."""

    def read(self, *, timeout: float) -> ShotBlock | None:
        """The next block when its recorded time has come; None at the end or while paused."""
        if self._state == "stopped":
            return None
        self.open()
        piece = None if self._paused else self._peek()
        if piece is None:
            if not self._paused:
                self._state = "ended"
            time.sleep(max(0.0, timeout))  # nothing will come now: wait like any idle source
            return None
        block, clock_end = piece
        if self._speed > 0:
            wait = self._due(clock_end) - time.monotonic()
            if wait > timeout:
                time.sleep(max(0.0, timeout))
                return None
            if wait > 0:
                time.sleep(wait)
        self._pos += len(block)
        self._shot += len(block)
        return block

    def status(self) -> SourceStatus:
        state = "paused" if self._paused and self._state == "running" else self._state
        return SourceStatus(state=state, counters=dict(self._counters))

    def notices(self) -> list[str]:
        out, self._notices = self._notices, []
        return out

    def close(self) -> None:
        """Release the recording; idempotent. Later reads return None."""
        self._state = "stopped"
        self._blocks = None
        self._current = None
        self._reader = None

    def playback(self) -> Playback:
        return self

    # --- Playback -----------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def speed(self) -> float:
        return self._speed

    def set_paused(self, paused: bool) -> None:
        if self._paused and not paused:
            self._anchor = None  # resume at the recorded pace from here, not catch up
        self._paused = paused

    def set_speed(self, speed: float) -> None:
        if not speed >= 0:
            raise ValueError(f"speed: expected >= 0 (0 = as fast as possible), found {speed}")
        self._speed = speed
        self._anchor = None

    def seek(self, *, seconds: float = 0.0, start: bool = False) -> int | None:
        """Jump by ``seconds`` of recorded time, estimated from the recorded shot rate."""
        self.open()
        reader = self._require()
        target = 0 if start else self._shot + int(round(seconds * self._rate))
        target = min(max(0, target), len(self._tags))
        self._shot, self._pos, self._current = target, 0, None
        self._anchor, self._last_time = None, None
        if target >= len(self._tags):
            self._blocks, self._state = None, "ended"
            return None
        view = reader.select(tags=(int(self._tags[target]), None))
        self._blocks, self._state = view.blocks(size=READ_SIZE, frames=True), "running"
        return int(self._tags[target])

    def rois(self) -> list[RoiVersion]:
        last = max(self._shot - 1, 0)  # the newest shot delivered (shot 0 before any)
        return [RoiVersion(v.name, v.version, v.detector, v.x, v.y, v.first_shot, v.first_tag,
                           v.end_shot if v.end_shot is not None and v.end_shot <= self._shot else None)
                for v in self._versions if v.first_shot <= last]

    # --- internals ----------------------------------------------------------------------

    def _require(self) -> RecordingReader:
        if self._reader is None:
            raise RuntimeError("replay: the source is closed")
        return self._reader

    def _due(self, clock: float) -> float:
        """Monotonic wall time at which the shot with replay clock ``clock`` is due."""
        if self._anchor is None:
            self._anchor = (time.monotonic(), float(self._clock[self._pos]))
        wall0, clock0 = self._anchor
        return wall0 + (clock - clock0) / self._speed

    def _peek(self) -> tuple[ShotBlock, float] | None:
        """The next piece (not consumed) and the replay clock of its last shot."""
        while self._current is None or self._pos >= len(self._current):
            if self._blocks is None:
                return None
            nxt = next(self._blocks, None)
            if nxt is None:
                self._blocks = None
                return None
            self._current, self._pos = nxt, 0
            self._clock = self._replay_clock(nxt.time)
        if self._speed > 0:
            span = self._block_seconds * max(1.0, self._speed)
            clock = self._clock[self._pos:]
            n = max(1, int(np.searchsorted(clock, clock[0] + span, side="right")))
        else:
            n = FAST_BLOCK
        stop = min(self._pos + n, len(self._current))
        return self._current.slice(self._pos, stop), float(self._clock[stop - 1])

    def _replay_clock(self, times: F64) -> F64:
        """Monotonic replay clock: recorded time, gaps capped, unknown times interpolated."""
        n = len(times)
        t = np.asarray(times, dtype=np.float64).copy()
        finite = np.isfinite(t)
        if not finite.any():
            start = self._last_time if self._last_time is not None else 0.0
            t = start + (np.arange(n, dtype=np.float64) + 1) / NOMINAL_RATE
        elif not finite.all():
            idx = np.arange(n)
            t[~finite] = np.interp(idx[~finite], idx[finite], t[finite])
        if not n:
            return t
        before = self._last_time if self._last_time is not None else t[0] - 1.0 / NOMINAL_RATE
        steps = np.diff(t, prepend=before)
        self._last_time = float(t[-1])
        long = steps > MAX_GAP
        if long.any():
            self._counters["pauses shortened"] = self._counters.get("pauses shortened", 0) + int(long.sum())
            self._notices.append(f"replay: {int(long.sum())} recorded pause(s) longer than {MAX_GAP:g} s shortened")
        steps = np.clip(steps, 0.0, MAX_GAP)
        span = float(steps[1:].sum())
        if span > 0 and finite.all():  # seeks by seconds go by the recorded rate, pauses capped
            self._rate = (n - 1) / span
        clock = self._last_clock + np.cumsum(steps)
        self._last_clock = float(clock[-1])
        return clock
