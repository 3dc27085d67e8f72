"""value(roi key, shot) for a whole block (INTERFACE.md "Reduction semantics").

The dark and the mask are whole detector frames; each ROI version takes the rectangle it
covers, so the reducers need the version (its rectangle) of every cutout a dark or a mask
applies to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..schemas import ConfigError, Cutout, RoiVersion
from ._sums import roi_sums

if TYPE_CHECKING:
    from .analysis import Analysis

__all__ = ["calibrate"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def calibrate(analysis: Analysis, key: str, cut: Cutout, version: RoiVersion | None) -> tuple[F64, I64]:
    """(value, non-finite pixel count) of every shot of ``cut``; NaN and 0 where it is invalid.

    Raises:
        ConfigError: no eV per ADU is known for the cutout's detector.
        ValueError: a dark or mask applies to the detector but ``version`` is missing or does
            not describe the cutout (a caller's mistake, not the operator's).
    """
    n = cut.pixels.shape[0]
    valid = np.asarray(cut.valid, dtype=bool)
    out = np.full(n, np.nan)
    nonfinite = np.zeros(n, np.int64)
    if not valid.any():
        return out, nonfinite
    gain = analysis.ev_per_adu.get(cut.detector)
    if gain is None:
        known = ", ".join(sorted(analysis.ev_per_adu)) or "none"
        raise ConfigError(f"calibration.ev_per_adu: expected a value for detector {cut.detector!r} "
                          f"(ROI {key}; known: {known}), found none")
    dark, masked = _frame_parts(analysis, key, cut, version)
    # computing on every shot is cheaper than copying out the valid ones, unless few are
    every = valid.mean() > 0.5
    pixels = cut.pixels if every else cut.pixels[valid]
    sums = roi_sums(pixels, ev_per_adu=gain, threshold_ev=analysis.threshold_ev, dark=dark, masked=masked)
    energy = sums.energy if analysis.photon_energy_ev is None else sums.energy / analysis.photon_energy_ev
    out[valid] = energy[valid] if every else energy
    nonfinite[valid] = sums.nonfinite[valid] if every else sums.nonfinite
    return out, nonfinite


def _frame_parts(analysis: Analysis, key: str, cut: Cutout, version: RoiVersion | None) -> tuple[Any, Any]:
    """The dark and mask under this cutout's rectangle (None where none applies)."""
    det = cut.detector
    dark_frame = analysis.darks.get(det)
    mask_frame = analysis.masks.get(det)
    if dark_frame is None and mask_frame is None:
        return None, None
    h, w = cut.pixels.shape[1:]
    if version is None or version.detector != det:
        raise ValueError(f"ROI {key} on {det}: a dark or mask applies, so shot_table needs this version's "
                         f"rectangle (pass versions), found {'none' if version is None else version.detector}")
    (x0, x1), (y0, y1) = version.x, version.y
    if (y1 - y0, x1 - x0) != (h, w):
        raise ValueError(f"ROI {key}: expected a cutout of {y1 - y0} x {x1 - x0} (its rectangle), found {h} x {w}")
    dark = None if dark_frame is None else _inside(dark_frame.mean, key, det, x0, x1, y0, y1)
    masked = None if mask_frame is None else _inside(mask_frame, key, det, x0, x1, y0, y1)
    return dark, (masked if masked is not None and masked.any() else None)


def _inside(frame: Any, key: str, det: str, x0: int, x1: int, y0: int, y1: int) -> Any:
    fh, fw = frame.shape
    if x1 > fw or y1 > fh:
        raise ConfigError(f"ROI {key} on {det}: expected a rectangle inside the dark/mask ({fh} x {fw}), "
                          f"found x = [{x0}, {x1}], y = [{y0}, {y1}]")
    return frame[y0:y1, x0:x1]
