"""What travels between the recorder and its consoles, as Python objects.

``wire`` turns these into ZeroMQ frames (a small msgpack header plus raw array buffers) and
back, validating everything on receipt. A console sees only these types, whichever feed it
reads (the network client, or the in-process queue of a recorder in the same process), through
the :class:`~shotwatch.link.protocols.Feed` protocol.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..schemas import ROI_NAME, AnalysisVersion, Config, DarkFrame, DarkVersion, RoiVersion, ShotBlock
from ..schemas.source_info import SourceInfo

__all__ = [
    "AnalysisMsg", "BlockMsg", "DarkMsg", "Hello", "ImageMsg", "Message", "NoticeMsg", "Progress", "Reply",
    "ResetMsg", "RoisMsg", "StateMsg", "Status", "StatusMsg", "Tree",
]

Tree = Any
"""A JSON-able tree with numpy arrays among its leaves: None, bool, int, float, str, lists,
str-keyed dicts and arrays (1 to 3 dimensions, a plain numeric or bool dtype). What
:class:`StateMsg` carries per reducer (the reducers' state codec makes and reads these) and
what a :class:`Reply`'s ``data`` may hold; ``wire`` encodes it with the arrays as raw frames."""


class Progress(BaseModel):
    """A recomputation under way (:attr:`Status.recompute`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    done: int = Field(ge=0)
    """Shots reduced so far."""
    total: int = Field(ge=0)
    """Shots to reduce: the boundary shot B (the recording's shots ``[0, B)``)."""
    epoch: int = Field(ge=0)
    """The epoch whose :class:`StateMsg` will carry the result."""


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
    analysis_version: int = Field(1, ge=1)
    """The analysis version in force (INTERFACE.md, analysis versions)."""
    epoch: int = Field(0, ge=0)
    """Increments with every :class:`AnalysisMsg` (a change, or a recomputation asked for): a
    console whose own epoch differs missed one and asks for ``hello`` again."""
    alarms: list[str] = []
    """The alarms ringing now, one line each (``[alarm]``)."""
    recompute: Progress | None = None
    """The recomputation under way, None when none is."""
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
    analysis_version: int = Field(1, ge=1)
    """The analysis version in force (``config`` holds its sections)."""
    epoch: int = Field(0, ge=0)
    """The recorder's epoch (:attr:`Status.epoch`) when this hello was made."""
    darks: list[DarkVersion] = []
    """The dark versions the analysis in force names (``get_dark`` fetches their frames)."""

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


@dataclass(frozen=True)
class AnalysisMsg:
    """The analysis changed (or a recomputation was asked for): from the next block on, blocks
    are reduced under ``config``.

    The recorder publishes every block of the old analysis before this message, so a console
    applies every block after it under the new analysis, starting a fresh "since" state that
    :class:`StateMsg` of the same epoch completes. Sent with the same ``version`` and a new
    ``epoch`` for a recomputation without a change (``R``).

    Attributes:
        version: the analysis version in force from ``boundary_shot`` on (its ``first_tag``
            is -1 while the boundary shot has not arrived).
        config: the whole configuration with that version's analysis sections.
        epoch: the recorder's new epoch.
        boundary_shot: B, the first shot (index in the recording) of the next block.
        boundary_tag: the tag of shot B, None while it has not arrived.
        reason: one line for the operator ("analysis version 3 set by ana@bl3", "recomputation asked").
    """

    version: AnalysisVersion
    config: Config
    epoch: int
    boundary_shot: int
    boundary_tag: int | None
    reason: str


@dataclass(frozen=True)
class StateMsg:
    """The reduction of the recording's shots ``[0, boundary_shot)`` under an analysis version.

    A console replaces its state with ``states ⊕ (its own reduction of the blocks received
    since the AnalysisMsg of this epoch)`` and its received tag ranges with ``tag_ranges +
    its ranges since then``; a state of another epoch than the console's is stale and ignored.

    Attributes:
        epoch: the epoch of the AnalysisMsg this completes.
        analysis_version: the analysis version reduced under.
        boundary_shot: B; the shots ``[0, B)`` of the recording were reduced.
        shots: shots reduced (B, or fewer where the recording holds fewer).
        seconds: how long the recomputation took (wall time).
        tag_ranges: tag ranges ``(A, B)`` (B exclusive) of the shots reduced.
        states: reducer name (``summary``, ``window``, ``corr``, ``hist``, ``trend``) -> its
            state as a :data:`Tree` (the reducers' state codec, ``reducers/codec.py``).
    """

    epoch: int
    analysis_version: int
    boundary_shot: int
    shots: int
    seconds: float
    tag_ranges: tuple[tuple[int, int], ...]
    states: Mapping[str, Tree]


@dataclass(frozen=True)
class DarkMsg:
    """A new dark version of ``detector`` was taken (``dark`` request, ``D``)."""

    detector: str
    version: int
    frame: DarkFrame


Message = BlockMsg | StatusMsg | NoticeMsg | RoisMsg | ImageMsg | ResetMsg | AnalysisMsg | StateMsg | DarkMsg


@dataclass(frozen=True)
class Reply:
    """Answer to a control request; ``data`` is a :data:`Tree` (its arrays travel as raw frames,
    ``get_dark`` answers with a dark's mean and std)."""

    ok: bool
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
