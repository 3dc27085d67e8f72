"""Which tags the SACLA source delivers now: pure functions of what dbpy answered.

The source follows the reference point detector's newest tag whatever the run state and asks
the reference's values for the tags since the last delivered one: a tag whose reference
value exists is a shot (the reference sees every shot the moment it happens), any other tag
is not (tags step by 2 on a shared beamline, and some go missing). The cost of a poll is the
number of new tags, never the run's length (``read_taglist_byrun`` of an hour-long run is
108,000 tags). Other point values can reach the database up to about a second after their
tag: the newest shots with a value still missing wait up to ``latency`` seconds of the tag
clock before what is there is taken (FACILITY.md, "SACLA").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_CANDIDATES", "TAG_HZ", "candidates", "ready_count", "shot_times", "split_at"]

TAG_HZ = 60.0
"""The accelerator's tag clock: a tag is 1/60 s younger than the next."""

MAX_CANDIDATES = 3600
"""Tags looked at in one poll at most (a minute of the tag clock): a long outage is read in
pieces, so one poll never asks the database for an unbounded list."""


def candidates(last: int, newest: int) -> tuple[int, ...]:
    """The tags after ``last`` up to ``newest`` (at most :data:`MAX_CANDIDATES`), as dbpy takes them.

    dbpy wants a tuple of Python ints (not a list, not numpy integers).
    """
    hi = min(newest, last + MAX_CANDIDATES)
    return tuple(range(last + 1, hi + 1))


def ready_count(tags: Sequence[int], points: Mapping[str, npt.NDArray[np.float64]], *, newest: int,
                latency: float) -> int:
    """How many of the oldest ``tags`` (shots) to deliver now; the rest wait for late values.

    A shot waits while it is younger than ``latency`` seconds of the tag clock and one of its
    point values is still missing; so does every younger shot after it (blocks keep tag order).
    """
    n = len(tags)
    if n == 0 or latency <= 0 or not points:
        return n
    age = (newest - np.asarray(tags, dtype=np.int64)) / TAG_HZ
    missing = np.zeros(n, dtype=bool)
    for values in points.values():
        missing |= np.isnan(values)
    waiting = np.flatnonzero(missing & (age < latency))
    return int(waiting[0]) if len(waiting) else n


def split_at(tags: Sequence[int], boundary: int | None) -> int:
    """How many of ``tags`` come before ``boundary`` (the next run's first tag; None: all)."""
    if boundary is None:
        return len(tags)
    return int(np.searchsorted(np.asarray(tags, dtype=np.int64), boundary, side="left"))


def shot_times(tags: npt.NDArray[np.int64], *, newest: int, now: float) -> npt.NDArray[np.float64]:
    """Unix seconds of each shot, from the tag clock: the newest tag is ``now``.

    The database keeps no per-shot timestamp; the tag clock gives the spacing exactly.
    """
    return now - (newest - tags.astype(np.float64)) / TAG_HZ
