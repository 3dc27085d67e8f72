"""Seeded synthetic ShotBlocks for tests: no simulator physics, just shapes and faults.

Use :func:`stream` for a sequence of blocks with NaN points, invalid cutouts, tag gaps and
occasional frames, so every reducer/recording path sees the awkward cases.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from shotwatch.schemas import Cutout, Frames, ShotBlock, roi_key

DET = "MPCCD-1N0-M06-004"
I0 = "xfel_bl_3_st_5_pd_user_5_fitting_peak/voltage"
BEAM = "xfel_mon_bpm_bl3_0_3_beamstatus/summary"
SCAN = "xfel_bl_3_st_5_motor_user_1/position"
OTHER = [f"xfel_bl_3_st_5_motor_user_{k}/position" for k in (2, 3, 4, 5, 15, 18)]


def block(
    rng: np.random.Generator,
    *,
    first_tag: int,
    n: int,
    rois: dict[str, tuple[int, int]] | None = None,
    dtype: str = "uint16",
    frame_every: int = 0,
    frame_shape: tuple[int, int] = (64, 32),
    nan_fraction: float = 0.05,
    invalid_fraction: float = 0.05,
    extra_points: int = 0,
) -> ShotBlock:
    """One block of ``n`` shots starting at ``first_tag`` (tags step by 2 with gaps).

    ``rois`` maps ROI key (``name/vK``) to cutout (h, w); default one 8x8 ``roi/v1``.
    """
    rois = rois if rois is not None else {roi_key("roi", 1): (8, 8)}
    steps = np.where(rng.random(n) < 0.02, 4, 2)
    tags = first_tag + np.concatenate([[0], np.cumsum(steps[:-1])])[:n].astype(np.int64)
    time = 1.7e9 + tags / 120.0
    points = {
        I0: rng.gamma(4.0, 0.05, n),
        BEAM: (rng.random(n) > 0.03).astype(np.float64),
        SCAN: np.round(rng.uniform(-1500, 3500, n), -2),
    }
    for name in OTHER[:extra_points]:
        points[name] = rng.normal(0, 1, n)
    for values in points.values():
        values[rng.random(n) < nan_fraction] = np.nan
    cutouts = {}
    for key, (h, w) in rois.items():
        if np.dtype(dtype).kind == "f":
            pix = rng.exponential(50.0, (n, h, w)).astype(dtype)
        else:
            pix = rng.poisson(30.0, (n, h, w)).astype(dtype)
        valid = rng.random(n) >= invalid_fraction
        pix[~valid] = 0
        cutouts[key] = Cutout(pix, valid, DET)
    frames = {}
    if frame_every:
        idx = np.flatnonzero(tags % (2 * frame_every) == 0).astype(np.int64)
        frames[DET] = Frames(rng.poisson(5.0, (len(idx), *frame_shape)).astype(np.float32), idx)
    return ShotBlock(tags, time, points, cutouts, frames, run=1, hightag=201902).validate()


def stream(seed: int, sizes: list[int], **kwargs: object) -> Iterator[ShotBlock]:
    """Consecutive blocks of the given sizes from one seeded generator."""
    rng = np.random.default_rng(seed)
    tag = 1_000_000
    for n in sizes:
        b = block(rng, first_tag=tag, n=n, **kwargs)  # type: ignore[arg-type]
        if n:
            tag = int(b.tags[-1]) + 2
        yield b
