"""ShotBlock: a run of consecutive shots in columnar form, the unit of everything.

A block of length 1 is a shot. Blocks are immutable by convention: every method returns a
new block and never writes into the arrays of this one (arrays may be shared views).
This module imports only numpy, so every layer may use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Cutout", "Frames", "ShotBlock", "roi_key", "split_roi_key"]

Array = npt.NDArray[Any]


def roi_key(name: str, version: int) -> str:
    """Canonical internal key of one ROI version: ``"name/vK"`` (versions count from 1)."""
    return f"{name}/v{version}"


def split_roi_key(key: str) -> tuple[str, int]:
    """Inverse of :func:`roi_key`: ``"bragg/v2"`` -> ``("bragg", 2)``."""
    name, _, version = key.rpartition("/v")
    if not name or not version.isdigit():
        raise ValueError(f"ROI key {key!r}: expected 'name/vK', found no version suffix")
    return name, int(version)


@dataclass(frozen=True)
class Cutout:
    """Raw pixels of one ROI version for each shot of a block.

    Attributes:
        pixels: ``[n, h, w]`` as delivered by the source (uint16, float32, ...);
            zero where ``valid`` is false.
        valid: ``bool[n]``: the version was active and the detector delivered the shot.
        detector: the array detector id the ROI lies on (its ev_per_adu calibrates it).
    """

    pixels: Array
    valid: Array
    detector: str = ""

    def take(self, index: slice | Array) -> Cutout:
        return Cutout(self.pixels[index], self.valid[index], self.detector)


@dataclass(frozen=True)
class Frames:
    """Full detector frames for some shots of a block.

    Attributes:
        pixels: ``[k, H, W]`` as delivered.
        shot: ``int64[k]`` index into the block's shot axis of each frame, increasing.
    """

    pixels: Array
    shot: Array

    def take_shots(self, start: int, stop: int) -> Frames:
        """Frames whose shot lies in ``[start, stop)``, re-indexed from ``start``."""
        keep = (self.shot >= start) & (self.shot < stop)
        return Frames(self.pixels[keep], self.shot[keep] - start)


def _empty_f64(n: int) -> Array:
    return np.full(n, np.nan, dtype=np.float64)


@dataclass(frozen=True)
class ShotBlock:
    """Columnar shots; leading axis of every per-shot array is the shot.

    Attributes:
        tags: ``int64[n]`` shot identifiers, strictly increasing.
        time: ``float64[n]`` unix seconds, NaN if unknown.
        points: point-detector facility name -> ``float64[n]`` (NaN = missing).
        cutouts: ROI key (``"name/vK"``, see :func:`roi_key`) -> :class:`Cutout`.
        frames: detector id -> :class:`Frames` (full frames for some or all shots).
        run: run number, if the source knows one.
        hightag: SACLA high tag (or another facility epoch), if any.
    """

    tags: Array
    time: Array
    points: Mapping[str, Array] = field(default_factory=dict)
    cutouts: Mapping[str, Cutout] = field(default_factory=dict)
    frames: Mapping[str, Frames] = field(default_factory=dict)
    run: int | None = None
    hightag: int | None = None

    def __len__(self) -> int:
        return int(self.tags.shape[0])

    @classmethod
    def empty(cls, *, run: int | None = None) -> ShotBlock:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64), run=run)

    def validate(self) -> ShotBlock:
        """Check shapes and dtypes; raise ValueError naming the offending field."""
        n = len(self)
        if self.tags.dtype != np.int64 or self.tags.ndim != 1:
            raise ValueError(f"tags: expected int64[n], found {self.tags.dtype}{list(self.tags.shape)}")
        if n > 1 and not bool(np.all(np.diff(self.tags) > 0)):
            raise ValueError("tags: expected strictly increasing, found a step <= 0")
        if self.time.dtype != np.float64 or self.time.shape != (n,):
            raise ValueError(f"time: expected float64[{n}], found {self.time.dtype}{list(self.time.shape)}")
        for name, values in self.points.items():
            if values.dtype != np.float64 or values.shape != (n,):
                raise ValueError(
                    f"points[{name!r}]: expected float64[{n}], found {values.dtype}{list(values.shape)}"
                )
        for key, cut in self.cutouts.items():
            if cut.pixels.ndim != 3 or cut.pixels.shape[0] != n:
                raise ValueError(f"cutouts[{key!r}].pixels: expected [{n}, h, w], found {list(cut.pixels.shape)}")
            if cut.valid.dtype != np.bool_ or cut.valid.shape != (n,):
                raise ValueError(f"cutouts[{key!r}].valid: expected bool[{n}], found {cut.valid.dtype}{list(cut.valid.shape)}")
        for det, fr in self.frames.items():
            k = fr.shot.shape[0]
            if fr.pixels.ndim != 3 or fr.pixels.shape[0] != k or fr.shot.ndim != 1:
                raise ValueError(f"frames[{det!r}]: expected pixels [k, H, W] and shot [k], found "
                                 f"{list(fr.pixels.shape)} and {list(fr.shot.shape)}")
            if k and (fr.shot.min() < 0 or fr.shot.max() >= n):
                raise ValueError(f"frames[{det!r}].shot: expected indices in [0, {n}), found out of range")
        return self

    def slice(self, start: int, stop: int) -> ShotBlock:
        """Shots ``[start, stop)`` as a new block (arrays are views)."""
        s = slice(start, stop)
        lo, hi = max(0, start), min(len(self), stop)
        return ShotBlock(
            self.tags[s], self.time[s],
            {k: v[s] for k, v in self.points.items()},
            {k: c.take(s) for k, c in self.cutouts.items()},
            {d: f.take_shots(lo, hi) for d, f in self.frames.items()},
            self.run, self.hightag,
        )

    def select(self, mask: Array) -> ShotBlock:
        """Shots where ``mask`` is true, as a new block (frames of dropped shots dropped)."""
        mask = np.asarray(mask, dtype=bool)
        new_index = np.cumsum(mask) - 1
        frames = {}
        for det, fr in self.frames.items():
            keep = mask[fr.shot]
            frames[det] = Frames(fr.pixels[keep], new_index[fr.shot[keep]])
        return ShotBlock(
            self.tags[mask], self.time[mask],
            {k: v[mask] for k, v in self.points.items()},
            {k: c.take(mask) for k, c in self.cutouts.items()},
            frames, self.run, self.hightag,
        )

    def with_(self, **changes: Any) -> ShotBlock:
        """A copy with some fields replaced (``points=...``, ``cutouts=...``, ...)."""
        return dataclasses.replace(self, **changes)

    @staticmethod
    def concat(blocks: Sequence[ShotBlock]) -> ShotBlock:
        """Join blocks end to end.

        A point or cutout missing from some blocks is filled with NaN / invalid zeros there;
        ``run``/``hightag`` are taken from the first block.
        """
        blocks = [b for b in blocks if len(b)] or list(blocks[:1])
        if not blocks:
            return ShotBlock.empty()
        if len(blocks) == 1:
            return blocks[0]
        sizes = [len(b) for b in blocks]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        points: dict[str, Array] = {}
        for name in dict.fromkeys(k for b in blocks for k in b.points):
            points[name] = np.concatenate([b.points.get(name, _empty_f64(len(b))) for b in blocks])
        cutouts: dict[str, Cutout] = {}
        for key in dict.fromkeys(k for b in blocks for k in b.cutouts):
            ref = next(b.cutouts[key] for b in blocks if key in b.cutouts)
            pix, val = [], []
            for b in blocks:
                c = b.cutouts.get(key)
                if c is None:
                    pix.append(np.zeros((len(b), *ref.pixels.shape[1:]), ref.pixels.dtype))
                    val.append(np.zeros(len(b), bool))
                else:
                    pix.append(c.pixels)
                    val.append(c.valid)
            cutouts[key] = Cutout(np.concatenate(pix), np.concatenate(val), ref.detector)
        frames: dict[str, Frames] = {}
        for det in dict.fromkeys(d for b in blocks for d in b.frames):
            parts = [(b.frames[det], off) for b, off in zip(blocks, offsets, strict=True) if det in b.frames]
            frames[det] = Frames(np.concatenate([f.pixels for f, _ in parts]),
                                 np.concatenate([f.shot + off for f, off in parts]).astype(np.int64))
        return ShotBlock(
            np.concatenate([b.tags for b in blocks]), np.concatenate([b.time for b in blocks]),
            points, cutouts, frames, blocks[0].run, blocks[0].hightag,
        )
