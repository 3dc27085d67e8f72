"""Where the scattered photons land on the sensor, drawn lazily and only where they are needed.

Two Poisson processes, proportional to each shot's intensity at the sample (``ShotParams``):

- a diffuse background falling off away from the direct beam, which passes beside row 0,
  column 256: exponential in rows (1/e at 1500 rows), Lorentzian in columns (half width 400),
  ~600 photons per frame at the mean full-beam intensity (sparse: ~0.001 per pixel);
- a Gaussian Bragg spot (sigma 2 pixels) centred in the demo's ``bragg`` ROI, ~150 photons per
  shot with the laser off.

The background is cut into 64 x 64 tiles, each an independent Poisson process with its share
of the intensity (a Poisson process restricted to a region is a Poisson process): a tile's
photons for one chunk of slots are drawn from a generator seeded with ``(seed, chunk, tile)``.
So a cutout draws only the few tiles it overlaps, yet holds exactly the photons of the same
region of the full frame: every photon depends on ``(seed, chunk, tile)`` alone, never on which
regions or shots were asked for first. Within a pixel the photons of its tile are added before
the spot's, in drawing order, in a cutout and a frame alike (float sums then agree bit for bit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .sim_detector import EV_PER_ADU, SHAPE, Deposit
from .sim_physics import PHOTON_EV, ShotParams

__all__ = ["ADU_PER_PHOTON", "BACKGROUND_PHOTONS", "SPOT_CENTRE", "SPOT_PHOTONS", "PhotonField"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I16 = npt.NDArray[np.int16]
Span = tuple[int, int]

ADU_PER_PHOTON = PHOTON_EV / EV_PER_ADU
SPOT_CENTRE = (300.0, 200.0)  # (row, column), pixel i spans [i, i + 1): the demo bragg ROI's centre
SPOT_SIGMA = 2.0  # pixels
SPOT_BOX = ((284, 316), (184, 216))  # rows, columns: +-8 sigma; photons beyond (p ~ 1e-15) are clipped
SPOT_PHOTONS = 150.0  # per shot at the mean full-beam intensity, laser off
BACKGROUND_PHOTONS = 600.0  # per frame at the mean full-beam intensity
TILE = 64
_ROW_SCALE, _COL_SCALE, _COL_CENTRE = 1500.0, 400.0, 256.0
_GRID = (SHAPE[0] // TILE, SHAPE[1] // TILE)
_SPOT = 1 << 16  # the spot's "tile" id (after every tile: its photons are added last)
_FRAME = 1 << 17  # every tile and the spot, merged shot by shot (for full frames)
_JITTER = (ADU_PER_PHOTON * (1 + 0.03 * np.random.default_rng(7).standard_normal(1 << 16))).astype(np.float32)


@dataclass(frozen=True)
class _Drawn:
    """The photons of one tile (or the spot) for every present shot of one chunk."""

    counts: I64  # per shot of the chunk
    starts: I64  # counts' cumulative sum, from 0 (len + 1)
    rows: I16
    cols: I16
    adu: F32


def _col_angle(c: float) -> float:
    return math.atan((c - _COL_CENTRE) / _COL_SCALE)


def _tile_mass(tile: int) -> float:
    """Mean background photons of a tile per unit intensity: its share of the row x column profile."""
    (r0, r1), (c0, c1) = _tile_span(tile)
    rows = (math.exp(-r0 / _ROW_SCALE) - math.exp(-r1 / _ROW_SCALE)) / -math.expm1(-SHAPE[0] / _ROW_SCALE)
    cols = (_col_angle(c1) - _col_angle(c0)) / (_col_angle(SHAPE[1]) - _col_angle(0))
    return BACKGROUND_PHOTONS * rows * cols


def _tile_span(tile: int) -> tuple[Span, Span]:
    tr, tc = divmod(tile, _GRID[1])
    return (tr * TILE, (tr + 1) * TILE), (tc * TILE, (tc + 1) * TILE)


def _tiles(y: Span, x: Span) -> list[int]:
    """Background tiles overlapping a region (row-major), then the spot if its box does."""
    if (y, x) == ((0, SHAPE[0]), (0, SHAPE[1])):
        return [_FRAME]
    rows = range(y[0] // TILE, (y[1] - 1) // TILE + 1)
    cols = range(x[0] // TILE, (x[1] - 1) // TILE + 1)
    out = [tr * _GRID[1] + tc for tr in rows for tc in cols]
    (sr0, sr1), (sc0, sc1) = SPOT_BOX
    if y[0] < sr1 and sr0 < y[1] and x[0] < sc1 and sc0 < x[1]:
        out.append(_SPOT)
    return out


def _ranks(counts: I64) -> I64:
    """0, 1, ..., counts[i] - 1 for each i, concatenated."""
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)


def _draw(seed: int, chunk: int, tile: int, bg_scale: F64, spot_scale: F64) -> _Drawn:
    """One tile's (or the spot's) photons for the present shots of one chunk."""
    rng = np.random.default_rng([seed % (1 << 63), 3, chunk, tile])
    if tile == _SPOT:
        counts = rng.poisson(SPOT_PHOTONS * spot_scale).astype(np.int64)
        z = rng.standard_normal((2, int(counts.sum())), dtype=np.float32)
        (r0, r1), (c0, c1) = SPOT_BOX
        r = np.float32(SPOT_CENTRE[0]) + np.float32(SPOT_SIGMA) * z[0]
        c = np.float32(SPOT_CENTRE[1]) + np.float32(SPOT_SIGMA) * z[1]
    else:
        counts = rng.poisson(_tile_mass(tile) * bg_scale).astype(np.int64)
        u = rng.random((2, int(counts.sum())), dtype=np.float32)
        (r0, r1), (c0, c1) = _tile_span(tile)
        # Inverse transform sampling of each profile restricted to the tile, in float32
        # (positions below 1024 need no more); floor() of a position is its pixel.
        r = np.float32(r0) - np.float32(_ROW_SCALE) * np.log1p(u[0] * np.float32(math.expm1(-TILE / _ROW_SCALE)))
        a0, a1 = _col_angle(c0), _col_angle(c1)
        c = np.float32(_COL_CENTRE) + np.float32(_COL_SCALE) * np.tan(np.float32(a0) + u[1] * np.float32(a1 - a0))
    total = int(counts.sum())
    off = int(rng.integers(0, _JITTER.size))  # each photon's charge: +-3 %, from a bank
    return _Drawn(counts, np.concatenate([[0], np.cumsum(counts)]),
                  np.clip(r, r0, r1 - 1).astype(np.int16), np.clip(c, c0, c1 - 1).astype(np.int16),
                  np.take(_JITTER, np.arange(off, off + total), mode="wrap"))


def _merge(parts: list[_Drawn]) -> _Drawn:
    """Several tiles' photons as one list, shot by shot, each shot's in the order of ``parts``."""
    counts = np.sum([d.counts for d in parts], axis=0)
    shot = np.concatenate([np.repeat(np.arange(len(d.counts), dtype=np.int32), d.counts) for d in parts])
    order = np.argsort(shot, kind="stable")  # stable: within a shot, tile order, then the spot
    fields = [np.concatenate([getattr(d, f) for d in parts])[order] for f in ("rows", "cols", "adu")]
    return _Drawn(counts, np.concatenate([[0], np.cumsum(counts)]), *fields)


class PhotonField:
    """The photons deposited in any region by given shots (cached per chunk and tile)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._cache: dict[tuple[int, int], _Drawn] = {}

    def deposit(self, y: Span, x: Span, p: ShotParams) -> Deposit:
        """Photons of the shots of ``p`` in rows ``y``, columns ``x`` (shot = index into ``p``)."""
        chunks = np.unique(p.chunk)
        self._forget_before(int(chunks[0]) if len(chunks) else 0)
        parts: list[tuple[I64, I16, I16, F32]] = []
        tiles = _tiles(y, x)
        for chunk in chunks.tolist():
            shots = np.flatnonzero(p.chunk == chunk)
            index = p.index[shots]
            bg, spot = p.chunk_scales[chunk]
            for tile in tiles:
                d = self._drawn(chunk, tile, bg, spot)
                counts = d.counts[index]
                if not counts.any():
                    continue
                at = np.repeat(d.starts[index], counts) + _ranks(counts)
                parts.append((np.repeat(shots, counts), d.rows[at], d.cols[at], d.adu[at]))
        if not parts:
            return Deposit.empty()
        shot, rows, cols, adu = (np.concatenate(a) for a in zip(*parts, strict=True))
        inside = (rows >= y[0]) & (rows < y[1]) & (cols >= x[0]) & (cols < x[1])
        if not inside.all():
            shot, rows, cols, adu = shot[inside], rows[inside], cols[inside], adu[inside]
        return Deposit(shot, rows, cols, adu)

    def _drawn(self, chunk: int, tile: int, bg: F64, spot: F64) -> _Drawn:
        key = (chunk, tile)
        if key not in self._cache:
            if tile == _FRAME:
                parts = [self._drawn(chunk, t, bg, spot) for t in [*range(_GRID[0] * _GRID[1]), _SPOT]]
                self._cache[key] = _merge(parts)
            else:
                self._cache[key] = _draw(self._seed, chunk, tile, bg, spot)
        return self._cache[key]

    def _forget_before(self, chunk: int) -> None:
        """Streams only move forward: drop the photons of chunks before ``chunk``."""
        for key in [k for k in self._cache if k[0] < chunk]:
            del self._cache[key]
