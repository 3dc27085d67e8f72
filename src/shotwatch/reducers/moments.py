"""Mergeable per-cell statistics of (value, I0) pairs: counts, sums, ratio and co-moments.

A :class:`Moments` holds, for each cell of an array of cells (e.g. group × scan bin), the
count, Σ value, Σ I0, the mean and M2 (sum of squared deviations) of value / I0, and the
centred second moments of value and I0 and their co-moment. Blocks are reduced two-pass
(stable), and states combine with Chan et al.'s pairwise update, never with Σx²/n − mean²,
so the variance of large, nearly equal numbers keeps its digits.

``sem_norm``, the delta-method error of norm = Σv/ΣI0, needs Σ(v − norm·I0)². With the
cell's means v̄ and Ī, v − norm·I0 = (v − v̄) − norm·(I0 − Ī) (because v̄ = norm·Ī), so
Σd² = M2_v − 2·norm·C_vI + norm²·M2_I: centred moments only, which merge exactly as variances
do (INTERFACE.md "Reduction semantics").
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Moments", "stats"]

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
        m2_v: Σ (value − mean value)².
        m2_i: Σ (I0 − mean I0)².
        c_vi: Σ (value − mean value)(I0 − mean I0).
    """

    count: I64
    sum_v: F64
    sum_i0: F64
    mean_r: F64
    m2_r: F64
    m2_v: F64
    m2_i: F64
    c_vi: F64

    @classmethod
    def zeros(cls, shape: tuple[int, ...]) -> Moments:
        """No shots in any cell."""
        return cls(np.zeros(shape, np.int64), *(np.zeros(shape) for _ in range(7)))

    @classmethod
    def of(cls, cell: I64, value: F64, i0: F64, shape: tuple[int, ...]) -> Moments:
        """Statistics of shots whose flat cell index is ``cell`` (one entry per (shot, cell))."""
        size = int(np.prod(shape))

        def total(weights: F64) -> F64:
            return np.asarray(np.bincount(cell, weights=weights, minlength=size), np.float64)

        count = np.bincount(cell, minlength=size).astype(np.int64)
        per = np.maximum(count, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = value / i0
            sum_v, sum_i = total(value), total(i0)
            mean_r = np.where(count > 0, total(ratio) / per, 0.0)
            dv = value - (sum_v / per)[cell]
            di = i0 - (sum_i / per)[cell]
            parts = (total((ratio - mean_r[cell]) ** 2), total(dv * dv), total(di * di), total(dv * di))
        return cls(count.reshape(shape), sum_v.reshape(shape), sum_i.reshape(shape), mean_r.reshape(shape),
                   *(p.reshape(shape) for p in parts))

    def merge(self, other: Moments) -> Moments:
        """Both sets of shots together (Chan's pairwise update; associative up to rounding)."""
        na, nb = self.count, other.count
        n = na + nb
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(n > 0, na * (nb / np.maximum(n, 1)), 0.0)  # na·nb/n, 0 when either is empty
            dr = np.where(w > 0, other.mean_r - self.mean_r, 0.0)
            dv = np.where(w > 0, other.sum_v / np.maximum(nb, 1) - self.sum_v / np.maximum(na, 1), 0.0)
            di = np.where(w > 0, other.sum_i0 / np.maximum(nb, 1) - self.sum_i0 / np.maximum(na, 1), 0.0)
            mean_r = np.where(nb == 0, self.mean_r, np.where(na == 0, other.mean_r,
                                                             self.mean_r + dr * (nb / np.maximum(n, 1))))
        return Moments(n, self.sum_v + other.sum_v, self.sum_i0 + other.sum_i0, mean_r,
                       self.m2_r + other.m2_r + dr * dr * w, self.m2_v + other.m2_v + dv * dv * w,
                       self.m2_i + other.m2_i + di * di * w, self.c_vi + other.c_vi + dv * di * w)

    def cell(self, index: Any) -> dict[str, Any]:
        """Plain per-cell statistics at ``index`` (see :func:`stats`)."""
        return stats(**{f.name: self.__dict__[f.name][index].item() for f in fields(self)})


def stats(count: int, sum_v: float, sum_i0: float, mean_r: float, m2_r: float, m2_v: float = 0.0,
          m2_i: float = 0.0, c_vi: float = 0.0) -> dict[str, Any]:
    """INTERFACE.md statistics of one cell; NaN where undefined (the caller maps NaN → null).

    Returns:
        ``count``, ``sum``, ``mean``, ``norm`` (Σv/ΣI0), ``mean_ratio``, ``sem``
        (std(v/I0, ddof=1)/√count) and ``sem_norm`` (√(count/(count−1)·Σ(v − norm·I0)²)/ΣI0);
        the two errors are NaN below 2 shots.
    """
    nan = float("nan")
    if count == 0:
        return {"count": 0, "sum": nan, "mean": nan, "norm": nan, "mean_ratio": nan, "sem": nan, "sem_norm": nan}
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        norm = float(np.float64(sum_v) / np.float64(sum_i0))
        sem = sem_norm = nan
        if count > 1:
            sem = float(np.sqrt(m2_r / (count - 1) / count))
            d2 = max(m2_v - 2.0 * norm * c_vi + norm * norm * m2_i, 0.0)  # rounding can dip below 0
            sem_norm = float(np.sqrt(count / (count - 1) * d2) / np.float64(sum_i0))
    return {"count": count, "sum": sum_v, "mean": sum_v / count, "norm": norm, "mean_ratio": mean_r,
            "sem": sem, "sem_norm": sem_norm}
