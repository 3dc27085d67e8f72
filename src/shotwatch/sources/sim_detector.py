"""Pixels of the simulated MPCCD sensor: what a raw frame holds besides the photons.

A raw pixel is ``pedestal + dark noise + deposited photons``, as real integrating detectors
deliver before any correction:

- a **pedestal** of ~350 ADU with structure: the two sensor halves (rows 0-511 and 512-1023,
  read out separately) sit ~60 ADU apart, every column of a half has its own offset, the rows
  ripple a little, and each pixel has a fixed-pattern offset. 350 ADU x 10.95 eV/ADU is far
  above the 1 keV photon threshold, so without a dark every pixel counts: ROI sums are the
  pedestal, not the photons (the reason for ``shotwatch dark``);
- **dark noise** of 6 ADU rms (~66 eV), copied from a fixed bank at an offset hashed from
  ``(seed, tag)``: pixel ``(r, c)`` of a shot is ``bank[qr + r, qc + c]``, so any region of a
  shot costs one memory copy and equals the same region of the shot's full frame;
- a few **hot pixels**: thousands of ADU above the pedestal and 30 times noisier (a dark's
  standard deviation finds them: ``calibration.dark_noise_max_adu``); one lies in the demo's
  ``background`` ROI;
- a **NaN patch**: on a few shots in a hundred (a readout glitch, ``ShotParams.glitch``) 5 % of
  the pixels of a 32 x 32 patch read NaN, as corrected data mark bad pixels. The patch overlaps
  the demo's ``background`` ROI by 16 x 16 pixels, so a reduction that does not count
  non-finite pixels loses those shots.

The sensor (pedestal, hot pixels, patch, noise bank) is the same whatever the run's seed, as a
real detector is: a dark taken in one run applies to the next. Every value of a shot depends
only on ``(seed, tag)`` and the photons deposited (``Deposit``, from ``sim_photons``), so a cutout
rendered alone equals the same region of the full frame, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "DARK_NOISE_ADU", "DETECTOR", "EV_PER_ADU", "GAIN", "HOT_PIXELS", "NAN_PATCH", "PEDESTAL_ADU",
    "SHAPE", "Deposit", "PixelSynth", "noise_offsets", "pedestal",
]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
I16 = npt.NDArray[np.int16]
BOOL = npt.NDArray[np.bool_]
Span = tuple[int, int]

DETECTOR = "MPCCD-1N0-M06-004"
SHAPE = (1024, 512)  # rows, columns: one MPCCD sensor
GAIN = 3.0  # mp_absgain
EV_PER_ADU = 3.65 * GAIN
DARK_NOISE_ADU = 6.0  # ~66 eV rms, far below the 1 keV photon threshold
PEDESTAL_ADU = (320.0, 380.0)  # the two halves' mean pedestal
HOT_NOISE = 30.0  # a hot pixel's noise, in units of DARK_NOISE_ADU
# (row, column, ADU above the pedestal); (815, 405) lies in the demo's background ROI.
HOT_PIXELS: tuple[tuple[int, int, float], ...] = (
    (815, 405, 2500.0), (37, 444, 4000.0), (129, 18, 1800.0), (402, 311, 6000.0),
    (611, 77, 3000.0), (700, 500, 2200.0), (933, 256, 5000.0), (1010, 3, 3500.0),
)
NAN_PATCH = ((816, 848), (416, 448))  # rows, columns: overlaps the demo's background ROI
NAN_FRACTION = 0.05  # of the patch's pixels, on a glitching shot
_SENSOR_SEED = 0x4D50_4343  # "MPCC": the sensor's own constants, whatever the run's seed
_BANK_SHAPE = (3 * SHAPE[0] // 2, 2 * SHAPE[1])  # 6 MiB of float32 noise (L3-sized), 263,000 offsets
_BIG_REGION = 1 << 16  # pixels: above this, copy noise shot by shot (cheaper than a gather)


@dataclass(frozen=True)
class Deposit:
    """Photons that landed in one region, for the shots of a block (drawn by ``sim_photons``).

    Attributes:
        shot: ``int64[k]`` index of each photon's shot in the block.
        rows, cols: ``int16[k]`` the sensor pixel each photon landed in.
        adu: ``float32[k]`` the charge it deposited.
    """

    shot: I64
    rows: I16
    cols: I16
    adu: F32

    @staticmethod
    def empty() -> Deposit:
        return Deposit(np.empty(0, np.int64), np.empty(0, np.int16), np.empty(0, np.int16), np.empty(0, np.float32))


@lru_cache(maxsize=1)
def pedestal() -> F32:
    """The sensor's pedestal (ADU, ``SHAPE``): halves, column offsets, row ripple, pixel pattern."""
    rng = np.random.default_rng([_SENSOR_SEED, 1])
    rows, cols = SHAPE
    half = rows // 2
    ped = np.empty(SHAPE, dtype=np.float64)
    ped[:half], ped[half:] = PEDESTAL_ADU
    ped[:half] += rng.normal(0.0, 12.0, cols)  # each half's column amplifiers
    ped[half:] += rng.normal(0.0, 12.0, cols)
    ped += (4.0 * np.sin(np.arange(rows) * (2 * np.pi / 128.0)))[:, None]
    ped += rng.normal(0.0, 5.0, SHAPE)
    return ped.astype(np.float32)


@lru_cache(maxsize=1)
def _bank() -> F32:
    rng = np.random.default_rng([_SENSOR_SEED, 2])
    return rng.standard_normal(_BANK_SHAPE, dtype=np.float32) * np.float32(DARK_NOISE_ADU)


@lru_cache(maxsize=1)
def _nan_pixels() -> tuple[I64, I64]:
    """Rows and columns of the patch's pixels that read NaN on a glitching shot."""
    (r0, r1), (c0, c1) = NAN_PATCH
    rng = np.random.default_rng([_SENSOR_SEED, 3])
    n = (r1 - r0) * (c1 - c0)
    flat = np.sort(rng.choice(n, int(NAN_FRACTION * n), replace=False))
    return r0 + flat // (c1 - c0), c0 + flat % (c1 - c0)


def noise_offsets(seed: int, tags: I64) -> tuple[I64, I64]:
    """Row and column offsets into the noise bank of each shot: a hash of ``(seed, tag)``."""
    with np.errstate(over="ignore"):
        z = tags.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed % (1 << 63))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's finaliser
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    spans = np.uint64(_BANK_SHAPE[0] - SHAPE[0] + 1), np.uint64(_BANK_SHAPE[1] - SHAPE[1] + 1)
    return (z % spans[0]).astype(np.int64), ((z >> np.uint64(32)) % spans[1]).astype(np.int64)


class PixelSynth:
    """Renders any region of the raw frames of given shots (float32 ADU)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._bank = _bank()
        self._pedestal = pedestal()

    def render(self, y: Span, x: Span, tags: I64, glitch: BOOL, photons: Deposit) -> F32:
        """Pixels ``[n, h, w]`` of rows ``y`` and columns ``x`` of the shots ``tags``.

        Args:
            y, x: the region, ``[start, stop)`` rows and columns.
            tags: the shots (their noise is keyed by ``(seed, tag)``).
            glitch: shots whose NaN patch is on.
            photons: the photons the shots deposited in the region.
        """
        out = self._dark(y, x, tags)
        self._add_photons(out, y, x, photons)
        self._add_hot(out, y, x, tags)
        self._add_nan(out, y, x, glitch)
        return out

    def _dark(self, y: Span, x: Span, tags: I64) -> F32:
        """Pedestal plus dark noise of the region, one copy of the bank per shot."""
        (y0, y1), (x0, x1) = y, x
        qr, qc = noise_offsets(self._seed, tags)
        ped = self._pedestal[y0:y1, x0:x1]
        if (y1 - y0) * (x1 - x0) < _BIG_REGION:
            windows = sliding_window_view(self._bank, (y1 - y0, x1 - x0))
            out = windows[qr + y0, qc + x0]
            out += ped
            return np.asarray(out, dtype=np.float32)
        big = np.empty((len(tags), y1 - y0, x1 - x0), dtype=np.float32)
        for i, (r, c) in enumerate(zip(qr.tolist(), qc.tolist(), strict=True)):
            np.add(self._bank[r + y0:r + y1, c + x0:c + x1], ped, out=big[i])
        return big

    @staticmethod
    def _add_photons(out: F32, y: Span, x: Span, photons: Deposit) -> None:
        _, h, w = out.shape
        flat = photons.shot * (h * w) + (photons.rows - y[0]).astype(np.int64) * w + (photons.cols - x[0])
        # Unbuffered: two photons in one pixel both count, in the same order as in a full frame.
        np.add.at(out.reshape(-1), flat, photons.adu)

    def _add_hot(self, out: F32, y: Span, x: Span, tags: I64) -> None:
        qr, qc = noise_offsets(self._seed, tags)
        for r, c, level in HOT_PIXELS:
            if y[0] <= r < y[1] and x[0] <= c < x[1]:
                noise = self._bank[qr + r, qc + c]  # the pixel's own noise, amplified
                out[:, r - y[0], c - x[0]] += np.float32(level) + np.float32(HOT_NOISE - 1.0) * noise

    @staticmethod
    def _add_nan(out: F32, y: Span, x: Span, glitch: BOOL) -> None:
        if not glitch.any():
            return
        rows, cols = _nan_pixels()
        here = (rows >= y[0]) & (rows < y[1]) & (cols >= x[0]) & (cols < x[1])
        if here.any():
            shots = np.flatnonzero(glitch)
            out[shots[:, None], (rows[here] - y[0])[None, :], (cols[here] - x[0])[None, :]] = np.nan

    def frames(self, tags: I64, glitch: BOOL, photons: Deposit) -> F32:
        """Full frames ``[n, 1024, 512]``."""
        return self.render((0, SHAPE[0]), (0, SHAPE[1]), tags, glitch, photons)
