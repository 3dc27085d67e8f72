"""Live health figures for the heartbeat: shot rate, newest-shot age, tag gaps."""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from ..schemas import ShotBlock
from .tuning import HEALTH_WINDOW

__all__ = ["Health"]


class Health:
    """Counts what the recorder received; all times are monotonic seconds.

    The shot rate is measured over the last ``window`` seconds of arrivals; a tag gap is a
    step larger than the smallest step seen (SACLA steps by 2 on shared beamlines, so a
    step of 4 there is one missing tag).
    """

    def __init__(self, *, window: float = HEALTH_WINDOW) -> None:
        self.window = window
        self.shots = 0
        self.tag_gaps = 0
        self.last_tag: int | None = None
        self.run: int | None = None
        self._arrivals: deque[tuple[float, int]] = deque()
        self._newest: float | None = None
        self._step: int | None = None

    def add(self, block: ShotBlock, *, now: float | None = None) -> None:
        n = len(block)
        if not n:
            return
        now = time.monotonic() if now is None else now
        self.shots += n
        self._arrivals.append((now, n))
        self._newest = now
        self.run = block.run
        tags = block.tags if self.last_tag is None else np.concatenate([[self.last_tag], block.tags])
        steps = np.diff(tags)
        steps = steps[steps > 0]
        if steps.size:
            smallest = int(steps.min())
            self._step = smallest if self._step is None else min(self._step, smallest)
            self.tag_gaps += int(np.sum(steps // self._step - 1))
        self.last_tag = int(block.tags[-1])

    def new_run(self) -> None:
        """Tags restart with a new run (or a replay seek): forget the last tag so no false gap
        is counted."""
        self.last_tag = None

    def rate(self, *, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._arrivals and self._arrivals[0][0] < now - self.window:
            self._arrivals.popleft()
        if not self._arrivals:
            return 0.0
        span = max(now - self._arrivals[0][0], 1.0)
        return sum(n for _, n in self._arrivals) / min(span, self.window)

    def age(self, *, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        return None if self._newest is None else now - self._newest
