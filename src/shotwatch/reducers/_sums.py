"""Calibrated ROI sums: the hot loop of every reduction.

value = Σ (raw × ev_per_adu, zeroed where below threshold_ev) [/ photon_energy_ev]

Integer pixels use the integer-domain shortcut (compare ADU with an exact integer cutoff,
sum exactly, scale once); float pixels are compared with an exact cutoff in their own dtype
and summed in float64. Both stay within 1e-9 relative of the per-pixel float64 definition.

Speed (the budget is a few hundred thousand shots/s × several ROIs on one core): work goes
in chunks of rows that stay in L2 and ends in a BLAS matrix-vector product with ones. For
integers that product is float32: every partial sum of non-negative integers below 2**24 is
exact in float32 whatever the order, so a row whose float32 sum stays below 2**24 is exact
and the rare row above is redone in int64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["float_cutoff", "int_cutoff", "roi_sums"]

Array = npt.NDArray[Any]
_CHUNK_BYTES = 512 * 1024  # accumulator buffer per chunk: it and the pixels stay in L2
_F32_EXACT = float(2**24)


def int_cutoff(threshold_ev: float, ev_per_adu: float) -> int:
    """Smallest integer ADU ``a`` with ``a × ev_per_adu ≥ threshold_ev`` in float64.

    Equal to the float64 comparison for every integer, so the shortcut zeroes exactly the
    pixels the definition zeroes.
    """
    c = math.ceil(threshold_ev / ev_per_adu)
    while (c - 1) * ev_per_adu >= threshold_ev:
        c -= 1
    while c * ev_per_adu < threshold_ev:
        c += 1
    return c


def float_cutoff(threshold_ev: float, ev_per_adu: float, dtype: np.dtype[Any]) -> np.floating[Any]:
    """Smallest ``x`` of ``dtype`` with ``float64(x) × ev_per_adu ≥ threshold_ev``.

    The product is monotone in ``x``, so ``raw >= cutoff`` in the pixel dtype selects exactly
    the pixels whose float64 energy reaches the threshold.
    """
    typ = dtype.type
    x = typ(threshold_ev / ev_per_adu)
    down, up = typ(-np.inf), typ(np.inf)
    while float(np.nextafter(x, down)) * ev_per_adu >= threshold_ev:
        x = np.nextafter(x, down)
    while float(x) * ev_per_adu < threshold_ev:
        x = np.nextafter(x, up)
    return x


def roi_sums(pixels: Array, *, ev_per_adu: float, threshold_ev: float | None) -> npt.NDArray[np.float64]:
    """Per-shot calibrated energy sums (eV) of ``pixels[n, h, w]``, float64[n]."""
    n = pixels.shape[0]
    flat = pixels.reshape(n, -1)
    if flat.shape[1] == 0 or n == 0:
        return np.zeros(n, np.float64)
    kind = flat.dtype.kind
    if kind in "iu":
        return _int_sums(flat, ev_per_adu, threshold_ev).astype(np.float64) * ev_per_adu
    if kind == "b":
        return _int_sums(flat.view(np.uint8), ev_per_adu, threshold_ev).astype(np.float64) * ev_per_adu
    return _float_sums(flat, ev_per_adu, threshold_ev) * ev_per_adu


def _int_sums(flat: Array, g: float, threshold_ev: float | None) -> npt.NDArray[np.int64]:
    c = None if threshold_ev is None else int_cutoff(threshold_ev, g)
    info = np.iinfo(flat.dtype)
    if c is not None and c <= info.min:
        c = None  # every representable ADU passes: nothing to zero
    if c is not None and c > info.max:
        return np.zeros(flat.shape[0], np.int64)
    if info.min < 0 and (c is None or c < 0):
        # negative pixels kept: the float32 exactness bound needs values >= 0
        kept = flat if c is None else np.where(flat >= c, flat, 0)
        return kept.sum(axis=1, dtype=np.int64)
    return _chunked_sums(flat, None if c is None else flat.dtype.type(c), np.dtype(np.float32))


def _chunked_sums(flat: Array, cut: Any, acc: np.dtype[Any]) -> Any:
    """Per-row Σ of the pixels ``>= cut`` (all if None) via ``acc`` BLAS, exact or redone.

    Rows that float32 may have rounded (sum >= 2**24) are redone in int64; rows that came out
    NaN in float64 (a -inf pixel zeroed as -inf × 0) are redone by the definition.
    """
    n, m = flat.shape
    k = max(1, _CHUNK_BYTES // (m * acc.itemsize))
    out = np.empty(n, acc)
    ones = np.ones(m, acc)
    buf = np.empty((min(k, n), m), acc)
    mask = np.empty((min(k, n), m), np.bool_)
    kept = np.empty((min(k, n), m), flat.dtype)
    with np.errstate(invalid="ignore"):  # -inf × 0 is NaN: such rows are redone below
        _fill(flat, cut, out, buf, mask, kept, ones)
    if acc == np.float32:
        sums = out.astype(np.int64)
        redo = np.flatnonzero(out >= _F32_EXACT)
        if redo.size:
            sums[redo] = _exact(flat[redo], cut, np.int64)
        return sums
    redo = np.flatnonzero(np.isnan(out))
    if redo.size and cut is not None:
        out[redo] = _exact(flat[redo], cut, np.float64)
    return out


def _fill(flat: Array, cut: Any, out: Array, buf: Array, mask: Array, kept: Array, ones: Array) -> None:
    k = buf.shape[0]
    for start in range(0, flat.shape[0], k):
        rows = flat[start:start + k]
        j = rows.shape[0]
        if cut is not None:
            # ge + multiply + cast + BLAS: four streaming passes, the fewest numpy allows
            # without a data-dependent masked loop (slow on mixed masks)
            np.greater_equal(rows, cut, out=mask[:j])
            np.multiply(rows, mask[:j], out=kept[:j])
            rows = kept[:j]
        np.copyto(buf[:j], rows, casting="unsafe")
        np.matmul(buf[:j], ones, out=out[start:start + j])


def _exact(rows: Array, cut: Any, acc: type) -> Array:
    wide: Array = rows.astype(acc)
    if cut is not None:
        wide[rows < cut] = 0
    return wide.sum(axis=1)


def _float_sums(flat: Array, g: float, threshold_ev: float | None) -> npt.NDArray[np.float64]:
    cut = None if threshold_ev is None else float_cutoff(threshold_ev, g, flat.dtype)
    return np.asarray(_chunked_sums(flat, cut, np.dtype(np.float64)), np.float64)
