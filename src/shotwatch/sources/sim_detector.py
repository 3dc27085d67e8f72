"""Pixels of the simulated MPCCD sensor, cheap enough for 30,000 shots/s of ROI cutouts.

A pixel is dark noise plus the photons that landed in it. Photons come from two Poisson
processes whose intensity maps are separable (row profile x column profile):

- a diffuse background falling off away from the direct beam (a few hundred photons per
  frame, sparse: ~0.001 per pixel), and
- a Gaussian Bragg spot centred in the demo's ``bragg`` ROI.

Restricting a Poisson process to a rectangle gives a Poisson process with the restricted
intensity, so a cutout synthesised alone is statistically identical to the same region cut
from a full frame: both draw a Poisson count from the region's share of the intensity and
place the photons by the region's row and column profiles. Dark noise is copied from a
precomputed bank at random offsets instead of being drawn per pixel, and photon positions use
Walker alias tables, so the cost is one memory copy per pixel plus a little per photon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from .sim_physics import PHOTON_EV

__all__ = ["DETECTOR", "EV_PER_ADU", "GAIN", "SHAPE", "SPOT_CENTRE", "PixelSynth"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

DETECTOR = "MPCCD-1N0-M06-004"
SHAPE = (1024, 512)  # rows, columns: one MPCCD sensor
GAIN = 3.0  # mp_absgain
EV_PER_ADU = 3.65 * GAIN
ADU_PER_PHOTON = PHOTON_EV / EV_PER_ADU
DARK_NOISE_ADU = 6.0  # ~66 eV rms, far below the 1 keV photon threshold
SPOT_CENTRE = (300.0, 200.0)  # (row, column), pixel i spans [i, i + 1): the demo bragg ROI's centre
SPOT_SIGMA = 2.0  # pixels
SPOT_PHOTONS = 150.0  # per shot at the mean full-beam intensity, laser off
BACKGROUND_PHOTONS = 600.0  # per frame at the mean full-beam intensity
_BANK = 1 << 22  # 16 MiB of float32 noise
_JITTER = 1 << 16  # photon-to-photon spread of the deposited charge


@lru_cache(maxsize=2)
def _banks(seed: int) -> tuple[F32, F32]:
    rng = np.random.default_rng([seed, 3])
    noise = rng.standard_normal(_BANK, dtype=np.float32) * np.float32(DARK_NOISE_ADU)
    jitter = (ADU_PER_PHOTON * (1 + 0.03 * rng.standard_normal(_JITTER))).astype(np.float32)
    return noise, jitter


class _Alias:
    """Walker alias table: exact sampling of a discrete distribution in O(1) per draw."""

    def __init__(self, weights: F64) -> None:
        k = len(weights)
        p = np.asarray(weights, dtype=np.float64) * (k / float(np.sum(weights)))
        self.prob = np.ones(k)
        self.alias = np.arange(k, dtype=np.int64)
        small = [i for i in range(k) if p[i] < 1.0]
        large = [i for i in range(k) if p[i] >= 1.0]
        while small and large:
            s, big = small.pop(), large.pop()
            self.prob[s], self.alias[s] = p[s], big
            p[big] -= 1.0 - p[s]
            (small if p[big] < 1.0 else large).append(big)

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
        i = rng.integers(0, len(self.prob), n)
        return np.where(rng.random(n) < self.prob[i], i, self.alias[i])


@dataclass(frozen=True)
class _Process:
    """One Poisson photon process restricted to a region: mean count and where photons land."""

    mass: float
    rows: _Alias | None
    cols: _Alias | None


def _pixel_gauss(lo: int, hi: int, centre: float, sigma: float) -> F64:
    """Integral of a unit Gaussian over each pixel [i, i + 1) for i in [lo, hi)."""
    edges = (np.arange(lo, hi + 1) - centre) / (sigma * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + np.array([math.erf(e) for e in edges]))
    return np.diff(cdf)


def _profiles() -> tuple[F64, F64, F64, F64]:
    """Row and column intensity profiles of the background and the spot over the sensor."""
    rows, cols = np.arange(SHAPE[0]), np.arange(SHAPE[1])
    # The direct beam passes beside row 0, column 256: scattering falls off away from it.
    bg_rows: F64 = np.exp(-rows / 1500.0)
    bg_cols: F64 = np.asarray(1.0 / (1.0 + ((cols + 0.5 - 256.0) / 400.0) ** 2), dtype=np.float64)
    bg_rows *= BACKGROUND_PHOTONS / (bg_rows.sum() * bg_cols.sum())
    spot_rows = _pixel_gauss(0, SHAPE[0], SPOT_CENTRE[0], SPOT_SIGMA) * SPOT_PHOTONS
    spot_cols = _pixel_gauss(0, SHAPE[1], SPOT_CENTRE[1], SPOT_SIGMA)
    return bg_rows, bg_cols, spot_rows, spot_cols


def _restrict(rows: F64, cols: F64, y: tuple[int, int], x: tuple[int, int]) -> _Process:
    r, c = rows[y[0]:y[1]], cols[x[0]:x[1]]
    mass = float(r.sum() * c.sum())
    if mass < 1e-12:  # e.g. the spot seen from a far ROI: nothing will ever land there
        return _Process(0.0, None, None)
    return _Process(mass, _Alias(r), _Alias(c))


class PixelSynth:
    """Renders cutouts and full frames for given per-shot intensities."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rng = np.random.default_rng([seed, 2])
        self._profiles = _profiles()
        self._regions: dict[tuple[int, int, int, int], tuple[_Process, _Process]] = {}

    def _region(self, y: tuple[int, int], x: tuple[int, int]) -> tuple[_Process, _Process]:
        key = (*y, *x)
        if key not in self._regions:
            bg_r, bg_c, sp_r, sp_c = self._profiles
            self._regions[key] = (_restrict(bg_r, bg_c, y, x), _restrict(sp_r, sp_c, y, x))
        return self._regions[key]

    def _noise(self, size: int) -> F32:
        """``size`` dark-noise values copied from the bank in pieces at random offsets."""
        bank = _banks(self._seed)[0]
        out = np.empty(size, dtype=np.float32)
        piece = _BANK // 4
        for start in range(0, size, piece):
            k = min(piece, size - start)
            off = int(self._rng.integers(0, _BANK - k + 1))
            out[start:start + k] = bank[off:off + k]
        return out

    def render(self, y: tuple[int, int], x: tuple[int, int], bg_scale: F64, spot_scale: F64) -> F32:
        """Pixels ``[n, h, w]`` (float32 ADU) of rows ``y`` and columns ``x`` for n shots."""
        n, h, w = len(bg_scale), y[1] - y[0], x[1] - x[0]
        out = self._noise(n * h * w)
        jitter = _banks(self._seed)[1]
        for proc, scale in zip(self._region(y, x), (bg_scale, spot_scale), strict=True):
            if proc.rows is None or proc.cols is None:
                continue
            counts = self._rng.poisson(proc.mass * scale)
            total = int(counts.sum())
            if not total:
                continue
            shot = np.repeat(np.arange(n, dtype=np.int64), counts)
            flat = shot * (h * w) + proc.rows.sample(self._rng, total) * w + proc.cols.sample(self._rng, total)
            off = int(self._rng.integers(0, _JITTER))
            np.add.at(out, flat, np.take(jitter, np.arange(off, off + total), mode="wrap"))
        return out.reshape(n, h, w)

    def frames(self, bg_scale: F64, spot_scale: F64) -> F32:
        """Full frames ``[n, 1024, 512]``."""
        return self.render((0, SHAPE[0]), (0, SHAPE[1]), bg_scale, spot_scale)
