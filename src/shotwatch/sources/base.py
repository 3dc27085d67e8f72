"""The Source protocol: where ShotBlocks come from (DESIGN.md, "Source")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..schemas import Roi, ShotBlock
from ..schemas.source_info import SourceInfo

__all__ = ["Source", "SourceStatus"]


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
