"""The recorder's alarms (``[alarm]``, INTERFACE.md): stale source, too few accepted, beam lost.

Evaluated on the acquire thread from what the recorder receives; each alarm rings once when
it starts (a line in ``Status.alarms`` while it lasts, a notice to every console, stderr
and the log) and clears itself, with a notice. Times are the shots' own (``ShotBlock.time``,
the arrival time where a shot has none), so the accepted fraction and the beam are judged
over the data's seconds whatever the delivery's pace; only staleness is wall time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..schemas import Alarm

__all__ = ["ACCEPTED_WINDOW_S", "BEAM_LOST_S", "AlarmChange", "Alarms"]

ACCEPTED_WINDOW_S = 10.0
"""The accepted fraction is over the newest 10 s of shots (INTERFACE.md)."""
BEAM_LOST_S = 2.0
"""The beam veto failing for all of the last 2 s is a lost beam (INTERFACE.md)."""

F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class AlarmChange:
    """An alarm started (``ringing``) or cleared; ``text`` is the one-line notice."""

    name: str
    ringing: bool
    text: str


class Alarms:
    """The three alarms' state (see the module docstring).

    Args:
        alarm: the ``[alarm]`` section in force.
        now: monotonic seconds at start (a source that never delivers goes stale too).
    """

    def __init__(self, alarm: Alarm, *, now: float) -> None:
        self.alarm = alarm
        self._last_arrival = now
        self._blocks: deque[tuple[F64, Bool]] = deque()  # (shot times, accepted) of the newest seconds
        self._fail_since: float | None = None  # shot time of the first of the current beam-failing shots
        self._fail_tag: int | None = None
        self._newest: float | None = None  # newest shot time
        self._ringing: dict[str, str] = {}

    def set_alarm(self, alarm: Alarm) -> None:
        """A new analysis version: its ``[alarm]`` from now on (ringing alarms re-judged at the next check)."""
        self.alarm = alarm
        if alarm.beam is None:
            self._fail_since = self._fail_tag = None

    @property
    def ringing(self) -> list[str]:
        """One line per alarm ringing now (``Status.alarms``)."""
        return list(self._ringing.values())

    def add(self, *, tags: npt.NDArray[np.int64], times: F64, accepted: Bool, beam: Bool | None,
            now: float, wall: float) -> None:
        """A block's shots: their tags, times (NaN: use ``wall``), acceptance and beam veto.

        Args:
            beam: true where the veto ``alarm.beam`` passes (None without one).
            now: monotonic seconds (staleness); wall: unix seconds for shots without a time.
        """
        if not len(tags):
            return
        self._last_arrival = now
        t = np.where(np.isfinite(times), times, wall).astype(np.float64)
        self._newest = float(t[-1]) if self._newest is None else max(self._newest, float(t[-1]))
        self._blocks.append((t, np.asarray(accepted, bool)))
        while len(self._blocks) > 1 and self._blocks[1][0][0] <= self._newest - ACCEPTED_WINDOW_S:
            self._blocks.popleft()
        if beam is not None:
            passing = np.flatnonzero(np.asarray(beam, bool))
            if passing.size:  # failing only after the last passing shot, if at all
                last = int(passing[-1])
                self._fail_since = float(t[last + 1]) if last + 1 < len(t) else None
                self._fail_tag = int(tags[last + 1]) if last + 1 < len(t) else None
            elif self._fail_since is None:
                self._fail_since, self._fail_tag = float(t[0]), int(tags[0])

    def check(self, *, now: float, stale_ok: bool = False) -> list[AlarmChange]:
        """Alarms that started or cleared since the last check.

        Args:
            now: monotonic seconds.
            stale_ok: no shots are expected now (a paused or finished replay): not stale.
        """
        wanted = {}
        quiet = now - self._last_arrival
        if not stale_ok and quiet >= self.alarm.stale_s:
            wanted["stale"] = f"stale source: no new shot for {quiet:.0f} s (alarm.stale_s = {self.alarm.stale_s:g})"
        if (low := self._accepted_low()) is not None:
            wanted["accepted"] = low
        if self.alarm.beam is not None and self._fail_since is not None and self._newest is not None \
                and self._newest - self._fail_since >= BEAM_LOST_S:
            wanted["beam"] = (f"beam lost: veto {self.alarm.beam} failing for {self._newest - self._fail_since:.0f} s "
                              f"(since tag {self._fail_tag})")
        changes = [AlarmChange(name, True, text) for name, text in wanted.items() if name not in self._ringing]
        changes += [AlarmChange(name, False, _cleared(name, self.alarm)) for name in self._ringing
                    if name not in wanted]
        self._ringing = wanted
        return changes

    def _accepted_low(self) -> str | None:
        """The accepted alarm's line, once 10 s of shots are in and the fraction is too low."""
        limit = self.alarm.accepted_min
        if limit is None or self._newest is None or not self._blocks:
            return None
        if self._blocks[0][0][0] > self._newest - ACCEPTED_WINDOW_S:
            return None  # not 10 s of shots yet: too few to judge
        t = np.concatenate([b[0] for b in self._blocks])
        acc = np.concatenate([b[1] for b in self._blocks])
        inside = t > self._newest - ACCEPTED_WINDOW_S
        n = int(inside.sum())
        fraction = float(acc[inside].mean()) if n else 1.0
        if fraction >= limit:
            return None
        return (f"accepted {100 * fraction:.0f} % of {n} shots over the last {ACCEPTED_WINDOW_S:g} s "
                f"(alarm.accepted_min = {100 * limit:g} %)")


def _cleared(name: str, alarm: Alarm) -> str:
    if name == "stale":
        return "alarm cleared: shots are coming again"
    if name == "accepted":
        return f"alarm cleared: accepted fraction back to {100 * (alarm.accepted_min or 0):g} % or more"
    return f"alarm cleared: beam back (veto {alarm.beam} passes)" if alarm.beam else "alarm cleared: beam lost"
