"""Calibrated ROI sums: the hot loop of every reduction.

value = Σ over usable pixels of ((raw − dark) × ev_per_adu, zeroed where below threshold_ev)
[/ photon_energy_ev]; a pixel is usable when it is not masked and raw − dark is finite; NaN
where no pixel of the cutout is usable (INTERFACE.md "Reduction semantics").

Integer pixels without a dark use the integer-domain shortcut (compare ADU with an exact
integer cutoff, sum exactly, scale once); float pixels, and any pixels with a dark, are
compared with an exact cutoff (in their own dtype, or float64 after subtracting the dark in
float64) and summed in float64. Both stay within 1e-9 relative of the per-pixel float64
definition.

Non-finite pixels cost nothing while there are none: masking multiplies by 0 and NaN × 0 is
NaN, so a row holding a non-finite pixel comes out non-finite, and only those rows are redone
pixel by pixel (where the non-finite pixels are counted and zeroed).

Speed (the budget is a few hundred thousand shots/s × several ROIs on one core): work goes
in chunks of rows that stay in L2 and ends in a BLAS matrix-vector product with ones. For
integers that product is float32: every partial sum of non-negative integers below 2**24 is
exact in float32 whatever the order, so a row whose float32 sum stays below 2**24 is exact
and the rare row above is redone in int64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["RoiSums", "float_cutoff", "int_cutoff", "roi_sums"]

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
    out: np.floating[Any] = x
    return out


@dataclass(frozen=True)
class RoiSums:
    """Per-shot sums of one cutout.

    Attributes:
        energy: float64[n] calibrated energy (eV) summed over the usable pixels; NaN where no
            pixel is usable.
        nonfinite: int64[n] pixels non-finite after dark subtraction and not masked.
    """

    energy: npt.NDArray[np.float64]
    nonfinite: npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Rules:
    """What applies to every shot of one cutout: the dark to subtract and the pixels that count.

    ``keep`` excludes masked pixels and pixels whose dark is non-finite (those are non-finite
    after subtraction at every shot: counted in ``static_bad``, never looked at).
    """

    dark: npt.NDArray[np.float64] | None
    keep: npt.NDArray[np.bool_] | None
    static_bad: int
    keep_count: int

    @classmethod
    def of(cls, m: int, dark: Array | None, masked: Array | None) -> _Rules:
        unmasked = None if masked is None else ~np.asarray(masked, bool).reshape(m)
        if dark is None:
            keep = None if unmasked is None or unmasked.all() else unmasked
            return cls(None, keep, 0, m if keep is None else int(np.count_nonzero(keep)))
        d = np.asarray(dark, np.float64).reshape(m)
        finite = np.isfinite(d)
        keep = finite if unmasked is None else finite & unmasked
        bad = int(np.count_nonzero(~finite if unmasked is None else ~finite & unmasked))
        clean = np.where(finite, d, 0.0)
        return cls(clean, None if keep.all() else keep, bad, int(np.count_nonzero(keep)))


def roi_sums(pixels: Array, *, ev_per_adu: float, threshold_ev: float | None,
             dark: Array | None = None, masked: Array | None = None) -> RoiSums:
    """Per-shot calibrated energy sums (eV) of ``pixels[n, h, w]`` and their non-finite pixels.

    Args:
        pixels: raw cutouts, any integer, bool or float dtype.
        ev_per_adu: the detector's gain.
        threshold_ev: pixels whose energy is below this are zeroed (None = none).
        dark: ``[h, w]`` mean dark (ADU) subtracted before gain and threshold, or None.
        masked: ``[h, w]`` bool, true where a pixel never counts, or None.
    """
    n = pixels.shape[0]
    flat = pixels.reshape(n, -1)
    m = flat.shape[1]
    rules = _Rules.of(m, dark, masked)
    if flat.dtype.kind == "b":
        flat = flat.view(np.uint8)
    nonfinite = np.full(n, rules.static_bad, np.int64)
    if n == 0 or m == 0:
        return RoiSums(np.full(n, np.nan), nonfinite)
    if rules.dark is None and flat.dtype.kind in "iu":
        total = _int_sums(flat, ev_per_adu, threshold_ev, rules.keep).astype(np.float64)
    else:
        total, raw_bad = _float_sums(flat, ev_per_adu, threshold_ev, rules)
        nonfinite += raw_bad
    energy = total * ev_per_adu
    energy[nonfinite - rules.static_bad >= rules.keep_count] = np.nan  # no usable pixel
    return RoiSums(energy, nonfinite)


def _int_sums(flat: Array, g: float, threshold_ev: float | None, keep: Array | None) -> npt.NDArray[np.int64]:
    c = None if threshold_ev is None else int_cutoff(threshold_ev, g)
    info = np.iinfo(flat.dtype)
    if c is not None and c <= info.min:
        c = None  # every representable ADU passes: nothing to zero
    if c is not None and c > info.max:
        return np.zeros(flat.shape[0], np.int64)
    if info.min < 0 and (c is None or c < 0):
        # negative pixels kept: the float32 exactness bound needs values >= 0
        sel = np.ones(flat.shape, bool) if c is None else flat >= c
        if keep is not None:
            sel &= keep
        return np.asarray(np.where(sel, flat, 0).sum(axis=1, dtype=np.int64), np.int64)
    cut = None if c is None else flat.dtype.type(c)
    sums: npt.NDArray[np.float32] = _chunked(flat, cut, None, keep, np.dtype(np.float32))
    out = sums.astype(np.int64)
    redo = np.flatnonzero(sums >= _F32_EXACT)  # float32 may have rounded these: redo exactly
    if redo.size:
        wide = flat[redo].astype(np.int64)
        out[redo] = np.where(_selected(wide, cut, keep), wide, 0).sum(axis=1)
    return out


def _float_sums(flat: Array, g: float, threshold_ev: float | None,
                rules: _Rules) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    work = np.dtype(np.float64) if rules.dark is not None else flat.dtype
    cut = None if threshold_ev is None else float_cutoff(threshold_ev, g, work)
    with np.errstate(invalid="ignore", over="ignore"):  # inf − inf, NaN × 0: such rows are redone
        out: npt.NDArray[np.float64] = _chunked(flat, cut, rules.dark, rules.keep, np.dtype(np.float64))
    bad = np.zeros(flat.shape[0], np.int64)
    redo = np.flatnonzero(~np.isfinite(out))
    if redo.size:
        with np.errstate(invalid="ignore", over="ignore"):
            d = flat[redo].astype(np.float64)
            if rules.dark is not None:
                d -= rules.dark
        finite = np.isfinite(d)
        bad[redo] = np.count_nonzero(~finite if rules.keep is None else ~finite & rules.keep, axis=1)
        out[redo] = np.where(finite & _selected(d, cut, rules.keep), d, 0.0).sum(axis=1)
    return out, bad


def _selected(d: Array, cut: Any, keep: Array | None) -> npt.NDArray[np.bool_]:
    """Pixels at or above the cutoff (all without one) that are kept."""
    sel = np.ones(d.shape, bool) if cut is None else d >= cut
    return sel if keep is None else sel & keep


def _chunked(flat: Array, cut: Any, dark: Array | None, keep: Array | None, acc: np.dtype[Any]) -> Any:
    """Per-row Σ of (raw − dark), where at or above ``cut`` and kept, in ``acc`` via BLAS.

    Works in chunks of rows that stay in L2; each chunk is at most four streaming passes
    (subtract or cast, compare, multiply by the selection, matrix-vector product with ones),
    the fewest numpy allows without a data-dependent masked loop (slow on mixed masks).
    """
    n, m = flat.shape
    k = min(n, max(1, _CHUNK_BYTES // (m * acc.itemsize)))
    out = np.empty(n, acc)
    ones = np.ones(m, acc)
    buf = np.empty((k, m), acc)
    sel = np.empty((k, m), np.bool_) if cut is not None else None
    kept = np.empty((k, m), flat.dtype) if dark is None and (cut is not None or keep is not None) else None
    for start in range(0, n, k):
        rows = flat[start:start + k]
        j = rows.shape[0]
        src: Array = rows
        if dark is not None:
            np.subtract(rows, dark, out=buf[:j])
            src = buf[:j]
        if sel is not None or keep is not None:
            which: Array = keep  # type: ignore[assignment]
            if sel is not None:
                which = np.greater_equal(src, cut, out=sel[:j])
                if keep is not None:
                    np.logical_and(which, keep, out=which)
            target = buf[:j] if kept is None else kept[:j]
            np.multiply(src, which, out=target)
            src = target
        if src is not buf[:j]:
            np.copyto(buf[:j], src, casting="unsafe")
        np.matmul(buf[:j], ones, out=out[start:start + j])
    return out
