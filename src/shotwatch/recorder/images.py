"""Mean detector images kept by the recorder: a running window and operator grabs."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..link.messages import ImageMsg, Reply
from ..reducers.pixels import PixelMoments, PixelReducer
from ..schemas import ShotBlock
from .tuning import IMAGE_SLOTS

__all__ = ["Grab", "ImageWindow"]

F64 = npt.NDArray[np.float64]


class ImageWindow:
    """Mean of the frames of the last ``slots`` blocks-groups, per detector.

    Frames are summed per group of about ``group_seconds`` (one slot); the mean is over the
    newest ``slots`` slots, so the image follows the beam without keeping frames.
    """

    def __init__(self, *, slots: int = IMAGE_SLOTS) -> None:
        self._slots: dict[str, deque[tuple[F64, int]]] = {}
        self._open: dict[str, tuple[F64, int]] = {}
        self._n = slots

    def add(self, block: ShotBlock) -> None:
        for det, frames in block.frames.items():
            if len(frames.shot):
                self.add_sum(det, frames.pixels.sum(axis=0, dtype=np.float64), len(frames.shot))

    def add_sum(self, det: str, total: F64, count: int) -> None:
        """Frames summed elsewhere (``record --mpi``: a worker rank's): ``count`` of them."""
        acc, n = self._open.get(det, (np.zeros_like(total), 0))
        if acc.shape != total.shape:
            acc, n = np.zeros_like(total), 0
        self._open[det] = (acc + total, n + count)

    def rotate(self) -> None:
        """Close the current slot (called about once a second)."""
        for det, slot in self._open.items():
            self._slots.setdefault(det, deque(maxlen=self._n)).append(slot)
        self._open = {}

    def messages(self) -> list[ImageMsg]:
        out = []
        for det, slots in self._slots.items():
            count = sum(c for _, c in slots)
            if count:
                mean = sum(s for s, _ in slots) / count
                out.append(ImageMsg(det, np.asarray(mean, dtype=np.float32), count, "running"))
        return out


@dataclass
class Grab:
    """Average of the next ``n`` frames of one detector (the 2019 '10-frame average').

    The same per-pixel averager a dark uses (:class:`~shotwatch.reducers.pixels.PixelReducer`):
    non-finite pixels of a frame are left out of that pixel's mean.
    """

    detector: str
    n: int
    future: Future[Reply]
    state: PixelMoments = field(default_factory=PixelMoments.empty)

    def add(self, block: ShotBlock) -> ImageMsg | None:
        """Take frames from ``block``; returns the image once ``n`` frames were averaged."""
        reducer = PixelReducer(self.detector, limit=self.n)
        self.state = reducer.update(self.state, block)
        if not reducer.done(self.state):
            return None
        self.future.set_result(Reply(True, data={"detector": self.detector, "count": self.state.frames}))
        return ImageMsg(self.detector, reducer.result(self.state).mean, self.state.frames, "grab")
