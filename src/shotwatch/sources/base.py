"""The Source protocol: where ShotBlocks come from (DESIGN.md, "Source").

A source class subclasses :class:`Source` explicitly: mypy then checks it against the
protocol, and it inherits the defaults of the optional capabilities (:meth:`Source.start_after`
does nothing, :meth:`Source.playback` is None), so the recorder calls them on any source
instead of probing for them by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..schemas import Roi, RoiVersion, ShotBlock
from ..schemas.source_info import SourceInfo

__all__ = ["NOMINAL_RATE", "Playback", "Source", "SourceStatus"]

NOMINAL_RATE = 30.0
"""Shots per second assumed where a shot's time is unknown (a replay of shots without
recorded times, a seek before any rate was seen): SACLA's 30 shots/s on a shared beamline
(FACILITY.md), the rate of the built-in simulator."""


@dataclass
class SourceStatus:
    """A snapshot of a source's health for the status line.

    Attributes:
        state: ``"running"``, ``"paused"``, ``"stopped"``, ``"waiting"`` (no data yet),
            ``"disconnected"`` (retrying) or ``"ended"`` (a replay at its end).
        missing: detector or point name -> shots it was missing in so far.
        counters: other counted faults, e.g. ``{"image gone": 3, "read errors": 1}``.
        not_in_stream: configured detectors/points this run does not offer (yet).
    """

    state: str = "running"
    missing: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    not_in_stream: list[str] = field(default_factory=list)


class Playback(Protocol):
    """A source that replays a recording: the recorder exposes these as control requests.

    Called only from the recorder's acquire thread, between reads.
    """

    @property
    def paused(self) -> bool:
        """True while :meth:`Source.read` delivers nothing on purpose."""

    @property
    def speed(self) -> float:
        """1.0 = recorded pace, 2.0 twice as fast, 0 = as fast as possible."""

    def set_paused(self, paused: bool) -> None:
        """Pause, or resume at the recorded pace from where it stopped (no catching up)."""

    def set_speed(self, speed: float) -> None:
        """Change the pace from the next block on (ValueError below 0)."""

    def seek(self, *, seconds: float = 0.0, start: bool = False) -> int | None:
        """Jump by ``seconds`` of recorded time (back if negative), or to the start.

        Returns the tag the next block starts with, None at the end of the recording.
        """

    def rois(self) -> list[RoiVersion]:
        """The recording's ROI versions as of the shots delivered so far.

        A version that starts later is not there yet, one that ended by then carries its
        ``end_shot``; the blocks carry the recorded cutouts of every version listed.
        """


@runtime_checkable
class Source(Protocol):
    """A stream of ShotBlocks.

    Sources never raise for a value missing in one shot: they mark it missing (NaN point,
    invalid cutout) and count it. A detector the source cannot know at all is a
    :class:`~shotwatch.schemas.SourceError` at ``open``; one a facility may simply not have
    in this run is a notice and is picked up when it appears.
    """

    def open(self) -> None:
        """Connect / start; raise SourceError for a configuration the source cannot serve."""

    def describe(self) -> SourceInfo:
        """Run, array detectors (shape, dtype, gain) and point detectors available now."""

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        """The active ROI versions (key ``"name/vK"``) from the next block on.

        A source that can deliver cutouts more cheaply than full frames (the simulator at
        ``rate = 0``) puts them in ``ShotBlock.cutouts`` under these keys; others ignore this
        and deliver full frames, which the recorder cuts.
        """

    def read(self, *, timeout: float) -> ShotBlock | None:
        """The next block, or None if none arrived within ``timeout`` seconds."""

    def status(self) -> SourceStatus:
        """Health counters for the status line."""

    def notices(self) -> list[str]:
        """One-line notices since the last call (drained)."""

    def close(self) -> None:
        """Release everything; idempotent."""

    def start_after(self, tag: int) -> None:
        """Continue a recording (``record --append``): deliver only tags after ``tag``.

        Called once, before the first read. The default does nothing: a facility's tags
        always grow; a source whose tags would restart (the simulator) overrides it.
        """
        return None

    def playback(self) -> Playback | None:
        """Pause, seek and speed controls, or None (the default: only a replay has them)."""
        return None
