"""What each block means for the alarms and for the darks being taken (the acquire thread's).

Both need the same view of a block: which shots are accepted, and where the beam veto
(``alarm.beam``) passes. :class:`Watch` computes it once per block, and only when an alarm or
a dark needs it (the points alone decide, unless a channel that may use ROIs does).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from ..reducers import Analysis, shot_table
from ..schemas import Alarm, DarkFrame, RoiVersion, ShotBlock
from .alarms import AlarmChange, Alarms
from .darks import DarkTake

__all__ = ["Watch"]


class Watch:
    """The alarms, the darks under way, and the beam veto at the newest shot.

    Args:
        alarm: the ``[alarm]`` section in force.
        ring: report alarm changes (off for ``shotwatch dark``: a beam off is the point there).
    """

    def __init__(self, alarm: Alarm, *, ring: bool = True) -> None:
        self.alarms = Alarms(alarm, now=time.monotonic())
        self.ring = ring
        self.takes: list[DarkTake] = []
        self.beam_on: bool | None = None
        """The beam veto at the newest shot (None: no ``[alarm] beam``, or no shot yet)."""

    @property
    def ringing(self) -> list[str]:
        """``Status.alarms``."""
        return self.alarms.ringing if self.ring else []

    def block(self, block: ShotBlock, analysis: Analysis | None, alarm: Alarm,
              versions: Mapping[str, RoiVersion]) -> tuple[list[AlarmChange], list[tuple[DarkTake, DarkFrame | str]]]:
        """The alarm changes ``block`` brings, and the darks it finished (a frame, or why not)."""
        table = None
        if analysis is not None and (alarm.beam is not None or alarm.accepted_min is not None):
            judged = block if analysis.channels else block.with_(cutouts={})
            table = shot_table(judged.with_(frames={}), analysis, versions)
        beam = None if table is None or alarm.beam is None else ~np.asarray(table.vetoed[alarm.beam], bool)
        accepted = np.ones(len(block), bool) if table is None else np.asarray(table.accepted, bool)
        changes = self.alarms.add(tags=block.tags, times=block.time, accepted=accepted, beam=beam,
                                  now=time.monotonic(), wall=time.time())
        self.beam_on = None if beam is None else bool(beam[-1])
        done = []
        for take in list(self.takes):
            outcome = take.add(block, beam)
            if outcome is not None:
                self.takes.remove(take)
                done.append((take, outcome))
        return (changes if self.ring else []), done

    def tick(self, *, stale_ok: bool) -> list[AlarmChange]:
        """The stale alarm now (the others ring as shots come)."""
        changes = self.alarms.check(now=time.monotonic(), stale_ok=stale_ok)
        return changes if self.ring else []

    def ended(self) -> list[tuple[DarkTake, DarkFrame | str]]:
        """The source ended: every dark under way ends without its frames."""
        done: list[tuple[DarkTake, DarkFrame | str]] = [(t, t.ended()) for t in self.takes]
        self.takes.clear()
        return done
