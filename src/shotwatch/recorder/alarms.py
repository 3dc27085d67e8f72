"""The recorder's alarms (``[alarm]``, INTERFACE.md): stale source, too few accepted, beam lost.

Evaluated on the acquire thread from what the recorder receives; each alarm rings once when
it starts (a line in ``Status.alarms`` while it lasts, a notice to every console, stderr
and the log) and clears itself, with a notice. The accepted fraction and the beam are judged
shot by shot over the shots' own times (``ShotBlock.time``; the arrival time where a shot
has none), so a burst inside one large block still rings and clears, whatever the
delivery's pace; only staleness is wall time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..schemas import Alarm

__all__ = ["ACCEPTED_WINDOW_S", "BEAM_LOST_S", "AlarmChange", "Alarms"]

ACCEPTED_WINDOW_S = 10.0
"""The accepted fraction is over the newest 10 s of shots (INTERFACE.md); judged once that
much has arrived."""
BEAM_LOST_S = 2.0
"""The beam veto failing for all of the last 2 s is a lost beam (INTERFACE.md)."""

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
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
        self._times: deque[F64] = deque()  # shot times and acceptance of the newest 10 s
        self._accepted: deque[Bool] = deque()
        self._first: float | None = None  # time of the first shot seen
        self._fail_since: tuple[float, int] | None = None  # (time, tag) the beam veto started failing
        self._ringing: dict[str, str] = {}

    def set_alarm(self, alarm: Alarm) -> None:
        """A new analysis version's ``[alarm]``, from the next shot on."""
        self.alarm = alarm
        if alarm.beam is None:
            self._fail_since = None

    @property
    def ringing(self) -> list[str]:
        """One line per alarm ringing now (``Status.alarms``)."""
        return list(self._ringing.values())

    def add(self, *, tags: I64, times: F64, accepted: Bool, beam: Bool | None, now: float,
            wall: float) -> list[AlarmChange]:
        """A block's shots: alarms that started or cleared during them.

        Args:
            tags, times, accepted: per shot (a NaN time: ``wall``).
            beam: per shot, true where the veto ``alarm.beam`` passes (None without one).
            now: monotonic seconds (staleness); wall: unix seconds.
        """
        if not len(tags):
            return []
        self._last_arrival = now
        t = np.where(np.isfinite(times), times, wall).astype(np.float64)
        t = np.maximum.accumulate(t)  # a clock step back must not open the windows again
        changes = self._set("stale", None)
        changes += self._accepted_changes(t, np.asarray(accepted, bool))
        if beam is not None and self.alarm.beam is not None:
            changes += self._beam_changes(np.asarray(tags, np.int64), t, np.asarray(beam, bool))
        return changes

    def check(self, *, now: float, stale_ok: bool = False) -> list[AlarmChange]:
        """The stale alarm at ``now`` (monotonic); ``stale_ok``: no shots are expected now (a
        paused or finished replay)."""
        quiet = now - self._last_arrival
        if stale_ok or quiet < self.alarm.stale_s:
            return self._set("stale", None)
        return self._set("stale", f"stale source: no new shot for {quiet:.1f} s (alarm.stale_s = {self.alarm.stale_s:g})")

    # --- internals ---------------------------------------------------------------------

    def _set(self, name: str, text: str | None) -> list[AlarmChange]:
        """``name`` ringing with ``text`` (None: not ringing): the change, if it is one."""
        was = name in self._ringing
        if text is None:
            if not was:
                return []
            del self._ringing[name]
            return [AlarmChange(name, False, self._cleared(name))]
        self._ringing[name] = text  # the newest figures while it rings
        return [] if was else [AlarmChange(name, True, text)]

    def _accepted_changes(self, t: F64, acc: Bool) -> list[AlarmChange]:
        limit = self.alarm.accepted_min
        self._first = float(t[0]) if self._first is None else self._first
        old_t = np.concatenate([*self._times, t]) if self._times else t
        old_a = np.concatenate([*self._accepted, acc]) if self._accepted else acc
        keep = old_t > old_t[-1] - ACCEPTED_WINDOW_S
        self._times, self._accepted = deque([old_t[keep]]), deque([old_a[keep]])
        if limit is None:
            return self._set("accepted", None)
        n_old = len(old_t) - len(t)
        # per shot of the block: the fraction accepted over the 10 s up to it
        lo = np.searchsorted(old_t, old_t[n_old:] - ACCEPTED_WINDOW_S, side="right")
        cum = np.concatenate([[0], np.cumsum(old_a, dtype=np.int64)])
        hi = np.arange(n_old, len(old_t)) + 1
        n = hi - lo
        fraction = (cum[hi] - cum[lo]) / n
        low = (fraction < limit) & (t - self._first >= ACCEPTED_WINDOW_S)
        changes: list[AlarmChange] = []
        for i in _flips(low, "accepted" in self._ringing):
            text = None if not low[i] else (f"accepted {100 * fraction[i]:.1f} % of {n[i]} shots over the last "
                                             f"{ACCEPTED_WINDOW_S:g} s (alarm.accepted_min = {100 * limit:g} %)")
            changes += self._set("accepted", text)
        if low[-1] and "accepted" in self._ringing:
            self._ringing["accepted"] = (f"accepted {100 * fraction[-1]:.1f} % of {n[-1]} shots over the last "
                                         f"{ACCEPTED_WINDOW_S:g} s (alarm.accepted_min = {100 * limit:g} %)")
        return changes

    def _beam_changes(self, tags: I64, t: F64, passing: Bool) -> list[AlarmChange]:
        # per shot: when its run of failing shots began (NaN while passing)
        starts = np.where(~passing & np.concatenate([[True], passing[:-1]]), t, np.nan)
        if self._fail_since is not None and not passing[0]:
            starts[0] = self._fail_since[0]
        idx = np.where(np.isnan(starts), 0, np.arange(len(t)))
        np.maximum.accumulate(idx, out=idx)
        since = np.where(passing, np.nan, starts[idx])
        lost = ~passing & (t - since >= BEAM_LOST_S)
        changes: list[AlarmChange] = []
        for i in _flips(lost, "beam" in self._ringing):
            text = None
            if lost[i]:
                tag = self._fail_since[1] if self._fail_since and since[i] == self._fail_since[0] \
                    else int(tags[np.flatnonzero(starts == since[i])[0]])
                text = f"beam lost: veto {self.alarm.beam} failing for {BEAM_LOST_S:g} s and more (since tag {tag})"
            changes += self._set("beam", text)
        if passing[-1]:
            self._fail_since = None
        elif self._fail_since is None or since[-1] != self._fail_since[0]:
            first = int(np.flatnonzero(starts == since[-1])[0])
            self._fail_since = (float(since[-1]), int(tags[first]))
        return changes

    def _cleared(self, name: str) -> str:
        if name == "stale":
            return "alarm cleared: shots are coming again"
        if name == "accepted":
            return f"alarm cleared: accepted fraction back to {100 * (self.alarm.accepted_min or 0):g} % or more"
        return f"alarm cleared: beam back (veto {self.alarm.beam} passes)"


def _flips(flags: Bool, ringing: bool) -> list[int]:
    """Indices where ``flags`` differs from the shot before (the first compared with ``ringing``)."""
    before = np.concatenate([[ringing], flags[:-1]])
    return [int(i) for i in np.flatnonzero(flags != before)]
