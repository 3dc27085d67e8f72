"""ReplayFeed: a recording played into the console through the same ``Feed`` protocol.

Blocks come from :class:`~shotwatch.recording.RecordingReader` and go out at recorded pace
times ``speed`` (``speed = 0``: as fast as the console takes them), cut into pieces of at most
``block_seconds`` of recorded time like the recorder's own blocks. A status heartbeat, the ROI
table as of the current shot and a running-average image of the recorded frames go out too,
so the console cannot tell a replay from a recorder except by what the status says.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any, Protocol

import numpy as np

from .. import __version__
from ..link.messages import BlockMsg, Hello, ImageMsg, Message, Reply, RoisMsg, Status, StatusMsg
from ..schemas import Config, DetectorInfo, RoiTable, RoiVersion, ShotBlock
from ..schemas.source_info import SourceInfo

__all__ = ["ReplayFeed", "Reader"]

_NOMINAL_HZ = 60.0
"""Pace assumed for shots without a recorded time, and for seeking before any was seen."""


class Reader(Protocol):
    """What ReplayFeed needs of a RecordingReader (a fake in tests)."""

    @property
    def config(self) -> Config: ...
    @property
    def source(self) -> dict[str, Any]: ...
    @property
    def detectors(self) -> dict[str, DetectorInfo]: ...
    @property
    def points(self) -> list[str]: ...
    @property
    def rois(self) -> RoiTable: ...
    def tags(self) -> np.ndarray: ...
    def select(self, *, tags: tuple[int | None, int | None] = ...) -> Reader: ...
    def blocks(self, *, size: int = ..., frames: bool = ...) -> Iterator[ShotBlock]: ...


class ReplayFeed:
    """A Feed over a recording, with pause and seek.

    Args:
        reader: the recording (a RecordingReader view).
        speed: 1.0 = recorded pace, 2.0 twice as fast, 0 = as fast as possible (``--max``).
        config: the configuration in force (analysis from ``-c``, ROIs from the recording);
            default the recording's own.
        label: what the status bar calls this source.
        block_seconds: most recorded time per block sent.
        image_every: seconds between running-average images.
        clock, sleep: monotonic clock and sleep (tests pass fakes).
    """

    read_only = True
    """A recording is never changed from a console: ROI edits, grabs and marks are refused."""

    def __init__(self, reader: Reader, *, speed: float = 1.0, config: Config | None = None,
                 label: str = "replay", block_seconds: float = 0.5, image_every: float = 3.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if speed < 0:
            raise ValueError(f"--speed: expected >= 0, found {speed}")
        self._reader, self._speed, self._label = reader, speed, label
        self._config = config or reader.config
        self._block_s, self._image_every = block_seconds, image_every
        self._clock, self._sleep = clock, sleep
        self._all_tags = np.asarray(reader.tags(), np.int64)
        self._versions = reader.rois.all()
        self._paused = False
        self._closed = False
        self._seq = 0
        self._shots = 0
        self._emitted: list[tuple[float, int]] = []  # (wall time, shots) for the rate
        self._last_tag: int | None = None
        self._newest_wall: float | None = None
        self._last_status = -1e9
        self._last_state = ""
        self._last_image = -1e9
        self._sums: dict[str, tuple[np.ndarray, int]] = {}
        self._sent_rois: tuple[RoiVersion, ...] | None = None
        self._recorded_rate = _NOMINAL_HZ
        self._pos = 0
        self._piece: ShotBlock | None = None
        self._buffer: ShotBlock | None = None
        self._anchor: tuple[float, float] | None = None  # (recorded time, wall time)
        self._blocks: Iterator[ShotBlock] = iter(())
        self._open_at(0)

    # --- Feed protocol -----------------------------------------------------------------

    @property
    def skipped(self) -> int:
        return 0  # a replay drops nothing: it waits for the console

    @property
    def connected(self) -> bool:
        return True

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def ended(self) -> bool:
        return self._piece is None and self._pos >= len(self._all_tags)

    def hello(self, *, timeout: float) -> Hello:
        src = self._reader.source
        info = SourceInfo(kind="replay", run=src.get("run"), detectors=self._reader.detectors,
                          points=list(self._reader.points), attrs={"recorded_source": src.get("kind")})
        return Hello(publish="replay", control="replay", config=self._config, source=info,
                     rois=[asdict(v) for v in self._rois_at(self._pos)], version=__version__)

    def request(self, op: str, *, timeout: float = 2.0, **args: Any) -> Reply:
        if op == "list_rois":
            return Reply(True, data={"rois": [asdict(v) for v in self._versions]})
        reason = {
            "set_roi": "ROIs come from the recording in a replay; edit them in a live console",
            "delete_roi": "ROIs come from the recording in a replay",
            "grab": "a replay has only the recorded frames (the running average shows them)",
            "mark": "a replay never changes the recording",
            "stop": "q stops a replay",
        }.get(op, f"unknown request {op!r}")
        return Reply(False, f"replay: {reason}")

    def poll(self, *, timeout: float) -> list[Message]:
        """The next piece once it is due (waiting at most ``timeout``), plus heartbeats."""
        out: list[Message] = []
        if self._closed:
            return out
        now = self._clock()
        if self._paused or self.ended:
            self._heartbeat(out, now, force=False)
            if not out:  # nothing to send: wait for the next heartbeat, within the timeout
                wait = self._last_status + 0.5 - now
                self._sleep(max(0.0, min(timeout, wait)))
                if wait <= timeout:
                    self._heartbeat(out, self._clock(), force=True)
            return out
        piece = self._peek()
        wait = 0.0 if piece is None else self._due(piece) - now
        if wait > timeout:
            self._sleep(max(0.0, timeout))
        else:
            self._sleep(max(0.0, wait))
            if piece is not None:
                self._emit(piece, out)
        self._heartbeat(out, self._clock(), force=bool(out) and self.ended)
        return out

    def close(self) -> None:
        self._closed = True

    # --- pause and seek (the console's p, [, ], home) ----------------------------------

    def set_paused(self, paused: bool) -> None:
        if self._paused and not paused:
            self._anchor = None  # resume at the recorded pace from here, not catch up
        self._paused = paused

    def seek(self, seconds: float) -> None:
        """Jump by ``seconds`` of recorded time (estimated from the recorded shot rate)."""
        shots = int(round(seconds * self._recorded_rate))
        self._open_at(min(max(0, self._pos + shots), len(self._all_tags)))

    def seek_start(self) -> None:
        self._open_at(0)

    # --- internals ---------------------------------------------------------------------

    def _open_at(self, pos: int) -> None:
        """Read from shot ``pos`` (of the view) on; the next block starts a new tag range."""
        self._pos = pos
        self._piece = None
        self._buffer = None
        self._anchor = None
        tag = int(self._all_tags[pos]) if pos < len(self._all_tags) else None
        view = self._reader.select(tags=(tag, None)) if tag is not None else None
        size = 4096 if self._speed == 0 else 512
        self._blocks = iter(view.blocks(size=size, frames=True)) if view is not None else iter(())
        self._seq += 1  # a gap in sequence numbers: the console starts a new tag range

    def _peek(self) -> ShotBlock | None:
        if self._piece is None:
            self._piece = self._cut()
        return self._piece

    def _cut(self) -> ShotBlock | None:
        """The next piece: at most ``block_seconds`` of recorded time (all of it at --max)."""
        if self._buffer is None or not len(self._buffer):
            self._buffer = next(self._blocks, None)
            if self._buffer is None:
                return None
        buf = self._buffer
        if self._speed == 0:
            self._buffer = None
            return buf
        t = buf.time
        if np.isfinite(t).all() and len(t):
            n = int(np.searchsorted(t, t[0] + self._block_s, side="right"))
        else:
            n = int(self._block_s * _NOMINAL_HZ)
        n = max(1, min(n, len(buf)))
        self._buffer = buf.slice(n, len(buf))
        return buf.slice(0, n)

    def _due(self, piece: ShotBlock) -> float:
        """Wall time at which ``piece`` should be out (its last shot's recorded moment)."""
        if self._speed == 0:
            return self._clock()
        t_last = float(piece.time[-1]) if np.isfinite(piece.time[-1]) else float("nan")
        if not np.isfinite(t_last):
            t_last = (self._pos + len(piece)) / _NOMINAL_HZ
        if self._anchor is None:
            t_first = float(piece.time[0]) if np.isfinite(piece.time[0]) else self._pos / _NOMINAL_HZ
            self._anchor = (t_first, self._clock())
        t0, wall0 = self._anchor
        return wall0 + (t_last - t0) / self._speed

    def _emit(self, piece: ShotBlock, out: list[Message]) -> None:
        rois = self._rois_at(self._pos)
        if rois != self._sent_rois:
            out.append(RoisMsg(rois))
            self._sent_rois = rois
        self._accumulate(piece)
        self._seq += 1
        out.append(BlockMsg(self._seq, piece.with_(frames={})))  # frames stay here, as in a recorder
        self._piece = None
        self._pos += len(piece)
        self._shots += len(piece)
        self._last_tag = int(piece.tags[-1])
        now = self._clock()
        self._newest_wall = now
        self._emitted = [(w, n) for w, n in self._emitted if now - w < 3.0] + [(now, len(piece))]
        span = float(piece.time[-1] - piece.time[0]) if len(piece) > 1 else 0.0
        if np.isfinite(span) and span > 0:
            self._recorded_rate = (len(piece) - 1) / span
        self._image(out, now)

    def _accumulate(self, piece: ShotBlock) -> None:
        for det, fr in piece.frames.items():
            if not len(fr.shot):
                continue
            total = np.asarray(fr.pixels, np.float64).sum(axis=0)
            old, n = self._sums.get(det, (np.zeros_like(total), 0))
            self._sums[det] = (old + total, n + len(fr.shot))

    def _image(self, out: list[Message], now: float) -> None:
        if now - self._last_image < self._image_every or not self._sums:
            return
        self._last_image = now
        for det, (total, n) in self._sums.items():
            out.append(ImageMsg(det, (total / n).astype(np.float32), n, "running"))

    def _rois_at(self, pos: int) -> tuple[RoiVersion, ...]:
        """The ROI table as it stood at shot ``pos`` of this view: later versions unknown yet."""
        shot = self._first_shot + pos
        table = []
        for v in self._versions:
            if v.first_shot > shot:
                continue
            ended = v.end_shot if v.end_shot is not None and v.end_shot <= shot else None
            table.append(RoiVersion(v.name, v.version, v.detector, v.x, v.y, v.first_shot, v.first_tag, ended))
        return tuple(table)

    @property
    def _first_shot(self) -> int:
        shots = getattr(self._reader, "shots", (0, 0))
        return int(shots[0])

    def _heartbeat(self, out: list[Message], now: float, *, force: bool) -> None:
        state = "paused" if self._paused else "ended" if self.ended else "running"
        if not force and now - self._last_status < 0.5 and state == self._last_state:
            return  # a change of state is reported at once, otherwise every 0.5 s
        self._last_status, self._last_state = now, state
        rate = sum(n for _, n in self._emitted) / 3.0 if self._emitted and not self._paused else 0.0
        age = None if self._newest_wall is None else max(0.0, now - self._newest_wall)
        out.append(StatusMsg(Status(
            time=time.time(), source=self._label, source_state=state, run=self._reader.source.get("run"),
            last_tag=self._last_tag, rate_hz=rate, newest_age_s=age, shots=self._shots, state="live",
            recording=None, seq=self._seq,
        )))
