"""Calibrated ROI sums: the hot loop of every reduction.

value = Σ over usable pixels of ((raw − dark) × ev_per_adu, zeroed where below threshold_ev)
[/ photon_energy_ev]; a pixel is usable when it is not masked and raw − dark is finite; NaN
where no pixel of the cutout is usable (INTERFACE.md "Reduction semantics").

The threshold is a cutoff on the raw pixel: ``(raw − dark) × ev_per_adu ≥ threshold_ev``
holds exactly when ``raw ≥ cutoff`` for one cutoff per pixel (one for all without a dark),
computed once per cutout in the pixel's own dtype, so the comparison is as exact as the
float64 definition. Then Σ(raw − dark) over the selected pixels = Σ raw − Σ dark: integer
pixels keep the integer-domain shortcut (sum exactly, scale once), and the dark part is a
constant without a threshold, one float64 matrix-vector product with one.

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
    after subtraction at every shot: counted in ``static_bad``, never looked at); ``dark`` has
    them as 0.
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

    def dark_total(self) -> float:
        """Σ dark over the kept pixels (what a row without threshold subtracts)."""
        assert self.dark is not None
        return float(self.dark.sum() if self.keep is None else self.dark[self.keep].sum())


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
    if flat.dtype.kind in "iu":
        total = _int_sums(flat, ev_per_adu, threshold_ev, rules)
    else:
        total, raw_bad = _float_sums(flat, ev_per_adu, threshold_ev, rules)
        nonfinite += raw_bad
    energy = total * ev_per_adu
    energy[nonfinite - rules.static_bad >= rules.keep_count] = np.nan  # no usable pixel
    return RoiSums(energy, nonfinite)


def _int_sums(flat: Array, g: float, threshold_ev: float | None, rules: _Rules) -> npt.NDArray[np.float64]:
    """Σ (raw − dark) over the selected pixels of integer rows (exact integer part)."""
    info = np.iinfo(flat.dtype)
    keep, cut = rules.keep, None
    if threshold_ev is not None and rules.dark is None:
        c = int_cutoff(threshold_ev, g)
        if c > info.max:
            return np.zeros(flat.shape[0])
        cut = None if c <= info.min else flat.dtype.type(c)  # every ADU passes: nothing to zero
    elif threshold_ev is not None:
        cut, never = _int_pixel_cutoffs(threshold_ev, g, rules.dark, flat.dtype)  # type: ignore[arg-type]
        if never.any():
            keep = ~never if keep is None else keep & ~never
    per_pixel_dark = rules.dark if rules.dark is not None and cut is not None else None
    if info.min < 0 and (cut is None or np.min(cut) < 0):
        # negative pixels kept: the float32 exactness bound needs values >= 0
        sel = _selected(flat, cut, keep)
        raw = np.where(sel, flat, 0).sum(axis=1, dtype=np.int64)
        dsum = None if per_pixel_dark is None else sel.astype(np.float64) @ per_pixel_dark
    else:
        sums, dsum = _chunked(flat, cut, keep, np.dtype(np.float32), per_pixel_dark)
        raw = sums.astype(np.int64)
        redo = np.flatnonzero(sums >= _F32_EXACT)  # float32 may have rounded these: redo exactly
        if redo.size:
            wide = flat[redo].astype(np.int64)
            raw[redo] = np.where(_selected(wide, None if cut is None else np.asarray(cut, np.int64), keep),
                                 wide, 0).sum(axis=1)
    return _minus_dark(raw.astype(np.float64), dsum, rules)


def _float_sums(flat: Array, g: float, threshold_ev: float | None,
                rules: _Rules) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """(Σ (raw − dark) over the selected pixels, non-finite pixels) of float rows."""
    cut: Any = None
    if threshold_ev is not None:
        cut = (float_cutoff(threshold_ev, g, flat.dtype) if rules.dark is None
               else _float_pixel_cutoffs(threshold_ev, g, rules.dark, flat.dtype))
    per_pixel_dark = rules.dark if rules.dark is not None and cut is not None else None
    with np.errstate(invalid="ignore", over="ignore"):  # NaN × 0, inf − inf: such rows are redone
        sums, dsum = _chunked(flat, cut, rules.keep, np.dtype(np.float64), per_pixel_dark)
        out = _minus_dark(sums, dsum, rules)
    bad = np.zeros(flat.shape[0], np.int64)
    redo = np.flatnonzero(~np.isfinite(sums))
    if redo.size:  # rows holding a non-finite pixel: the definition, pixel by pixel
        with np.errstate(invalid="ignore", over="ignore"):
            d = flat[redo].astype(np.float64)
            if rules.dark is not None:
                d -= rules.dark
            finite = np.isfinite(d)
            sel = finite if threshold_ev is None else finite & (d * g >= threshold_ev)
        if rules.keep is not None:
            sel &= rules.keep
        bad[redo] = np.count_nonzero(~finite if rules.keep is None else ~finite & rules.keep, axis=1)
        out[redo] = np.where(sel, d, 0.0).sum(axis=1)
    return out, bad


def _minus_dark(raw: npt.NDArray[np.float64], dsum: npt.NDArray[np.float64] | None,
                rules: _Rules) -> npt.NDArray[np.float64]:
    if rules.dark is None:
        return raw
    return raw - (dsum if dsum is not None else rules.dark_total())


def _int_pixel_cutoffs(threshold_ev: float, g: float, dark: npt.NDArray[np.float64],
                       dtype: np.dtype[Any]) -> tuple[Array, npt.NDArray[np.bool_]]:
    """Per pixel, the smallest integer ``a`` with ``(a − dark) × g ≥ threshold`` in float64,
    clipped to ``dtype``; and the pixels no value of ``dtype`` reaches."""
    c = np.ceil(dark + threshold_ev / g)
    for _ in range(64):  # float rounding moves the exact cutoff by one at most: one or two turns
        down = (c - 1 - dark) * g >= threshold_ev
        up = (c - dark) * g < threshold_ev
        if not (down.any() or up.any()):
            break
        c = c - down + up
    info = np.iinfo(dtype)
    never = c > info.max
    return np.clip(c, info.min, info.max).astype(dtype), never


def _float_pixel_cutoffs(threshold_ev: float, g: float, dark: npt.NDArray[np.float64],
                         dtype: np.dtype[Any]) -> Array:
    """Per pixel, the smallest ``x`` of ``dtype`` with ``(float64(x) − dark) × g ≥ threshold``."""
    x = (dark + threshold_ev / g).astype(dtype)
    lo, hi = dtype.type(-np.inf), dtype.type(np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        for _ in range(64):  # monotone in x: step down while the next lower value passes, then up
            prev = np.nextafter(x, lo)
            down = (prev.astype(np.float64) - dark) * g >= threshold_ev
            up = (x.astype(np.float64) - dark) * g < threshold_ev
            if not (down.any() or up.any()):
                break
            x = np.where(down, prev, np.where(up, np.nextafter(x, hi), x))
    return x


def _selected(d: Array, cut: Any, keep: Array | None) -> npt.NDArray[np.bool_]:
    """Pixels at or above the cutoff (all without one) that are kept."""
    sel = np.ones(d.shape, bool) if cut is None else d >= cut
    return sel if keep is None else sel & keep


_SPARSE = 0.08  # below this fraction of selected (or above 1 − it) pixels, gather instead of a product


def _dark_sums(which: npt.NDArray[np.bool_], dark: npt.NDArray[np.float64],
               dbuf: npt.NDArray[np.float64] | None) -> npt.NDArray[np.float64]:
    """Σ dark over the selected pixels of each row of ``which``.

    A threshold above the dark noise selects few pixels (photons), or nearly all of a bright
    spot: then gathering the few selected (or the few not selected) is several times cheaper
    than the dense product, which the in-between case uses.
    """
    j, m = which.shape
    frac = np.count_nonzero(which) / which.size
    if frac <= _SPARSE or frac >= 1 - _SPARSE:
        # dark is 0 on pixels not kept, so the complement may count them; the 1-d nonzero is
        # ~20x faster than numpy's 2-d one
        flip = frac > _SPARSE
        rows, cols = np.divmod(np.flatnonzero(~which if flip else which), m)
        part = np.asarray(np.bincount(rows, weights=dark[cols], minlength=j), np.float64)
        return float(dark.sum()) - part if flip else part
    assert dbuf is not None
    np.copyto(dbuf[:j], which)
    return np.asarray(np.matmul(dbuf[:j], dark), np.float64)


def _chunked(flat: Array, cut: Any, keep: Array | None, acc: np.dtype[Any],
             dark: npt.NDArray[np.float64] | None) -> tuple[Any, npt.NDArray[np.float64] | None]:
    """Per row, Σ raw over the pixels at or above ``cut`` (scalar or per pixel) and kept, in
    ``acc`` via BLAS; with ``dark``, also Σ dark over the same pixels (float64).

    Works in chunks of rows that stay in L2; each chunk is at most four streaming passes
    (compare, multiply by the selection, cast, matrix-vector product with ones), the fewest
    numpy allows without a data-dependent masked loop (slow on mixed masks), plus two for the
    dark (the selection as float64, its product with the dark).
    """
    n, m = flat.shape
    k = min(n, max(1, _CHUNK_BYTES // (m * acc.itemsize)))
    out = np.empty(n, acc)
    dout = None if dark is None else np.empty(n, np.float64)
    ones = np.ones(m, acc)
    buf = np.empty((k, m), acc)
    sel = np.empty((k, m), np.bool_) if cut is not None else None
    kept = np.empty((k, m), flat.dtype) if cut is not None or keep is not None else None
    dbuf = None if dark is None else np.empty((k, m), np.float64)
    if dark is not None and keep is not None:
        dark = np.where(keep, dark, 0.0)  # the complement below needs Σ over kept pixels only
    positive = cut is not None and bool(np.all(np.asarray(cut) > 0))
    for start in range(0, n, k):
        rows = flat[start:start + k]
        j = rows.shape[0]
        src: Array = rows
        if kept is not None:
            which: Array = keep  # type: ignore[assignment]
            if sel is not None:
                which = np.greater_equal(rows, cut, out=sel[:j])
                if keep is not None:
                    np.logical_and(which, keep, out=which)
            src = np.multiply(rows, which, out=kept[:j])
        if src.dtype != acc:
            np.copyto(buf[:j], src, casting="unsafe")
            src = buf[:j]
        np.matmul(src, ones, out=out[start:start + j])
        if dout is not None and dark is not None:
            # with every cutoff > 0 a selected pixel adds > 0: a chunk whose rows all sum to 0
            # selected nothing (the usual chunk of a photon-counting ROI), its dark sum is 0
            nothing = positive and not bool(np.any(out[start:start + j] > 0))
            dout[start:start + j] = 0.0 if nothing else _dark_sums(which, dark, dbuf)
    return out, dout
