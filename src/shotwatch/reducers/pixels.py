"""Per-pixel moments of a detector's full frames: the one image averager (darks, grabs).

:class:`PixelReducer` is a reducer like the others (``init``, ``update``, ``merge``,
``result``): its state :class:`PixelMoments` holds, per pixel, the number of finite values,
their mean and M2 (the sum of squared deviations from it), plus the frames and the tags
used. Non-finite values are left out pixel by pixel, so a sensor patch that reads NaN on a
few shots does not make those pixels' dark NaN; a pixel with no finite value at all has a
NaN mean (and is then counted in ``nonfinite`` by the reducers, INTERFACE.md). Blocks are
reduced two-pass and states merged with Chan's pairwise update (associative up to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..schemas import DarkFrame, ShotBlock

__all__ = ["PixelMoments", "PixelReducer"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_SLAB = 16  # frames reduced at once: bounds the float64 temporaries to 16 frames' worth


@dataclass(frozen=True)
class PixelMoments:
    """Moments of the finite values of each pixel over some frames (``shape`` () = none yet).

    Attributes:
        count: int64 [H, W] finite values per pixel.
        mean: float64 [H, W] their mean (0 where count is 0).
        m2: float64 [H, W] Σ (value − mean)².
        frames: frames taken (whatever their pixels).
        first_tag, last_tag: tags of the first and last frame taken (-1 without frames).
    """

    count: I64
    mean: F64
    m2: F64
    frames: int = 0
    first_tag: int = -1
    last_tag: int = -1

    @classmethod
    def empty(cls) -> PixelMoments:
        """No frame yet."""
        return cls(np.zeros((0, 0), np.int64), np.zeros((0, 0)), np.zeros((0, 0)))

    @classmethod
    def of(cls, pixels: npt.NDArray[np.generic], tags: npt.NDArray[np.int64]) -> PixelMoments:
        """Moments of ``pixels`` [k, H, W] (k >= 1), the frames of shots ``tags`` [k]."""
        out = cls.empty()
        for start in range(0, pixels.shape[0], _SLAB):
            x = np.asarray(pixels[start:start + _SLAB], np.float64)
            finite = np.isfinite(x)
            count = finite.sum(axis=0, dtype=np.int64)
            x = np.where(finite, x, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(count > 0, x.sum(axis=0) / np.maximum(count, 1), 0.0)
            d = np.where(finite, x - mean, 0.0)
            part = cls(count, mean, np.einsum("kij,kij->ij", d, d), x.shape[0],
                       int(tags[start]), int(tags[start + x.shape[0] - 1]))
            out = out.merge(part)
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.count.shape) if self.frames else ()

    def merge(self, later: PixelMoments) -> PixelMoments:
        """These frames and ``later``'s together (``later``'s tags come after these).

        Raises:
            ValueError: frames of different shapes.
        """
        if not later.frames:
            return self
        if not self.frames:
            return later
        if self.count.shape != later.count.shape:
            raise ValueError(f"frames: expected one shape, found {list(self.count.shape)} and "
                             f"{list(later.count.shape)}")
        na, nb = self.count, later.count
        n = na + nb
        per = np.maximum(n, 1)
        delta = later.mean - self.mean
        mean = self.mean + delta * (nb / per)
        m2 = self.m2 + later.m2 + delta * delta * (na * (nb / per))
        first = self.first_tag if self.first_tag <= later.first_tag else later.first_tag
        return PixelMoments(n, mean, m2, self.frames + later.frames, first, max(self.last_tag, later.last_tag))

    def dark(self) -> DarkFrame:
        """The per-pixel mean and standard deviation (ddof 0), float32: NaN where no value was finite.

        Raises:
            ValueError: no frame taken.
        """
        if not self.frames:
            raise ValueError("dark: expected at least one frame, found none")
        with np.errstate(invalid="ignore", divide="ignore"):
            none = self.count == 0
            mean = np.where(none, np.nan, self.mean).astype(np.float32)
            std = np.where(none, np.nan, np.sqrt(np.maximum(self.m2, 0.0) / np.maximum(self.count, 1)))
        return DarkFrame(mean, std.astype(np.float32), self.frames, self.first_tag, self.last_tag)


class PixelReducer:
    """Per-pixel moments of the full frames of ``detector`` (a :class:`~shotwatch.link.protocols.Reducer`).

    Args:
        detector: whose frames (a block's ``frames[detector]``).
        limit: take at most this many frames in all (None: every frame).
    """

    def __init__(self, detector: str, *, limit: int | None = None) -> None:
        self.detector = detector
        self.limit = limit

    def init(self) -> PixelMoments:
        return PixelMoments.empty()

    def update(self, state: PixelMoments, block: ShotBlock, *, table: object | None = None) -> PixelMoments:
        """``state`` plus the frames of ``block`` (up to ``limit``)."""
        frames = block.frames.get(self.detector)
        if frames is None or not len(frames.shot):
            return state
        take = len(frames.shot) if self.limit is None else max(0, min(len(frames.shot), self.limit - state.frames))
        if not take:
            return state
        tags = np.asarray(block.tags, np.int64)[np.asarray(frames.shot[:take], np.int64)]
        return state.merge(PixelMoments.of(frames.pixels[:take], tags))

    def merge(self, a: PixelMoments, b: PixelMoments) -> PixelMoments:
        return a.merge(b)

    def result(self, state: PixelMoments) -> DarkFrame:
        return state.dark()

    def done(self, state: PixelMoments) -> bool:
        """``limit`` frames taken."""
        return self.limit is not None and state.frames >= self.limit
