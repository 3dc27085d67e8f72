"""What travels between the recorder and its consoles, as Python objects.

``wire`` turns these into ZeroMQ frames (a small msgpack header plus raw array buffers) and
back, validating everything on receipt. A console sees only these types, whichever feed it
reads (the network client, or the in-process queue of a recorder in the same process), through
the :class:`~shotwatch.link.protocols.Feed` protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, field_validator

from ..schemas import ROI_NAME, Config, RoiVersion, ShotBlock
from ..schemas.source_info import SourceInfo

__all__ = [
    "BlockMsg", "Hello", "ImageMsg", "Message", "NoticeMsg", "Reply", "ResetMsg", "RoisMsg", "Status",
    "StatusMsg",
]


class Status(BaseModel):
    """The recorder's heartbeat (>= 1 Hz), everything the status bar shows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time: float
    """Unix time the heartbeat was sent."""
    source: str
    """Source kind."""
    source_state: str = "running"
    """SourceStatus.state: running / paused / stopped / waiting / disconnected / ended."""
    run: int | None = None
    """Current run."""
    last_tag: int | None = None
    """Newest tag received."""
    rate_hz: float = 0.0
    """Shots per second over the last few seconds."""
    newest_age_s: float | None = None
    """Seconds since the newest shot arrived at the recorder (None before the first)."""
    shots: int = 0
    """Shots received since start."""
    tag_gaps: int = 0
    """Missing tags seen (steps larger than the usual tag step)."""
    missing: dict[str, int] = {}
    """Detector or point name -> shots it was missing in."""
    counters: dict[str, int] = {}
    """Other counted faults (image gone, read errors, malformed messages...)."""
    not_in_stream: list[str] = []
    """Configured detectors/points the source does not offer now."""
    state: Literal["recording", "stopped", "failed", "live"] = "recording"
    """recording; stopped (closed cleanly); failed (a write failed: live only); live (no recording)."""
    recording: str | None = None
    """Path of the current recording."""
    bytes: int = 0
    """Size of the current recording on disk."""
    committed: int = 0
    """Shots committed to the recording."""
    free_bytes: int | None = None
    """Free space where the recording lives."""
    seq: int = -1
    """Sequence number of the newest block published."""
    speed: float | None = None
    """A replaying recorder's pace (1.0 = recorded pace, 0 = as fast as possible); None otherwise."""
    ranks: int = 1
    """Processes recording: 1, or under ``mpirun -n N shotwatch record --mpi`` rank 0 plus the
    worker ranks still delivering (N until one dies)."""


class Hello(BaseModel):
    """Reply to ``hello``: what a console needs to start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    publish: str
    """Address of the PUB socket."""
    control: str
    """Address of the REP socket."""
    config: Config
    """The configuration in force."""
    source: SourceInfo
    """What the source offers."""
    rois: list[RoiVersion]
    """Every ROI version so far (``end_shot`` None while active)."""
    version: str
    """Recorder software version."""
    playback: bool = False
    """The recorder's source is a replay: the ``pause``, ``seek`` and ``speed`` requests work."""

    @field_validator("rois")
    @classmethod
    def _sane_rois(cls, rois: list[RoiVersion]) -> list[RoiVersion]:
        """A hello may come from anywhere: every version must be a rectangle a console can draw."""
        for v in rois:
            where = f"ROI version {v.name!r} v{v.version}"
            if not re.match(ROI_NAME, v.name) or v.version < 1:
                raise ValueError(f"{where}: expected a name like {ROI_NAME} and a version >= 1")
            if not (0 <= v.x[0] < v.x[1] and 0 <= v.y[0] < v.y[1]):
                raise ValueError(f"{where}: expected 0 <= x0 < x1 and 0 <= y0 < y1, found x = {list(v.x)}, "
                                 f"y = {list(v.y)}")
            if v.first_shot < 0 or (v.end_shot is not None and v.end_shot < v.first_shot):
                raise ValueError(f"{where}: expected 0 <= first_shot <= end_shot, found {v.first_shot}, {v.end_shot}")
        return rois


@dataclass(frozen=True)
class BlockMsg:
    """A block of shots (cutouts and points, never full frames), sequence-numbered."""

    seq: int
    block: ShotBlock


@dataclass(frozen=True)
class StatusMsg:
    status: Status


@dataclass(frozen=True)
class NoticeMsg:
    """Something the operator should know (one line)."""

    time: float
    text: str
    level: Literal["info", "warning", "error"] = "warning"


@dataclass(frozen=True)
class RoisMsg:
    """The ROI table changed (sent on every accepted change, to every console)."""

    versions: tuple[RoiVersion, ...]


@dataclass(frozen=True)
class ImageMsg:
    """A mean detector image: the running average, or the result of a grab."""

    detector: str
    image: npt.NDArray[np.float32]
    count: int
    kind: Literal["running", "grab"] = "running"


@dataclass(frozen=True)
class ResetMsg:
    """Every console restarts its averages and its received tag ranges from the next block.

    Sent by a replaying recorder after a seek: shots already reduced come again (or are
    skipped), so a console's numbers equal ``reduce --tags`` over its ranges only if it
    starts afresh at the same point as every other console.
    """

    time: float
    reason: str


Message = BlockMsg | StatusMsg | NoticeMsg | RoisMsg | ImageMsg | ResetMsg


@dataclass(frozen=True)
class Reply:
    """Answer to a control request."""

    ok: bool
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
