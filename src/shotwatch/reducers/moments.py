"""Mergeable per-cell statistics of (value, I0) pairs: counts, sums and ratio moments.

A :class:`Moments` holds, for each cell of an array of cells (e.g. group × scan bin), the
count, Σ value, Σ I0 and the mean and M2 (sum of squared deviations) of value / I0. Blocks
are reduced two-pass (stable), and states combine with Chan et al.'s pairwise update, never
with Σx²/n − mean², so the variance of large, nearly equal ratios keeps its digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Moments"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Moments:
    """Statistics per cell; every array has the same shape (the cells).

    Attributes:
        count: shots per cell.
        sum_v: Σ value.
        sum_i0: Σ I0.
        mean_r: mean of value / I0 (0 where count is 0).
        m2_r: Σ (value / I0 − mean_r)².
    """

    count: I64
    sum_v: F64
    sum_i0: F64
    mean_r: F64
    m2_r: F64

    @classmethod
    def zeros(cls, shape: tuple[int, ...]) -> Moments:
        """No shots in any cell."""
        return cls(np.zeros(shape, np.int64), np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(shape))

    @classmethod
    def of(cls, cell: I64, value: F64, i0: F64, shape: tuple[int, ...]) -> Moments:
        """Statistics of shots whose flat cell index is ``cell`` (one entry per (shot, cell))."""
        size = int(np.prod(shape))

        def total(weights: F64) -> F64:
            return np.asarray(np.bincount(cell, weights=weights, minlength=size), np.float64)

        count = np.bincount(cell, minlength=size).astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = value / i0
            mean_r = np.where(count > 0, total(ratio) / np.maximum(count, 1), 0.0)
            m2_r = total((ratio - mean_r[cell]) ** 2)
        return cls(count.reshape(shape), total(value).reshape(shape), total(i0).reshape(shape),
                   mean_r.reshape(shape), m2_r.reshape(shape))

    def merge(self, other: Moments) -> Moments:
        """Both sets of shots together (Chan's pairwise update; associative up to rounding)."""
        na, nb = self.count, other.count
        n = na + nb
        nf = np.maximum(n, 1).astype(np.float64)
        with np.errstate(invalid="ignore"):
            delta = other.mean_r - self.mean_r
            mean = np.where(nb == 0, self.mean_r, np.where(na == 0, other.mean_r, self.mean_r + delta * (nb / nf)))
            m2 = np.where(
                nb == 0, self.m2_r,
                np.where(na == 0, other.m2_r, self.m2_r + other.m2_r + delta * delta * (na * (nb / nf))),
            )
        return Moments(n, self.sum_v + other.sum_v, self.sum_i0 + other.sum_i0, mean, m2)

    def cell(self, index: Any) -> dict[str, Any]:
        """Plain per-cell statistics at ``index`` (see :func:`stats`)."""
        return stats(int(self.count[index]), float(self.sum_v[index]), float(self.sum_i0[index]),
                     float(self.mean_r[index]), float(self.m2_r[index]))


def stats(count: int, sum_v: float, sum_i0: float, mean_r: float, m2_r: float) -> dict[str, Any]:
    """INTERFACE.md statistics of one cell; NaN where undefined (the caller maps NaN → null).

    Returns:
        ``count``, ``sum``, ``mean``, ``norm`` (Σv/ΣI0), ``mean_ratio``, ``sem``
        (std(v/I0, ddof=1)/√count; NaN below 2 shots).
    """
    nan = float("nan")
    if count == 0:
        return {"count": 0, "sum": nan, "mean": nan, "norm": nan, "mean_ratio": nan, "sem": nan}
    sem = float(np.sqrt(m2_r / (count - 1) / count)) if count > 1 else nan
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = float(np.float64(sum_v) / np.float64(sum_i0))
    return {"count": count, "sum": sum_v, "mean": sum_v / count, "norm": norm, "mean_ratio": mean_r, "sem": sem}
