"""Cutting ROIs out of full frames: the one place the recorder turns frames into cutouts."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..schemas import Cutout, Frames, RoiVersion, ShotBlock
from ..schemas.source_info import DetectorInfo

__all__ = ["cut_block", "decimate_frames"]


def _cut(n: int, version: RoiVersion, frames: Frames | None, dtype: np.dtype) -> Cutout:
    (x0, x1), (y0, y1) = version.x, version.y
    pixels = np.zeros((n, y1 - y0, x1 - x0), dtype=frames.pixels.dtype if frames is not None else dtype)
    valid = np.zeros(n, dtype=bool)
    if frames is not None and len(frames.shot):
        pixels[frames.shot] = frames.pixels[:, y0:y1, x0:x1]
        valid[frames.shot] = True
    return Cutout(pixels, valid, version.detector)


def cut_block(
    block: ShotBlock,
    active: Mapping[str, RoiVersion],
    detectors: Mapping[str, DetectorInfo] | None = None,
) -> ShotBlock:
    """The block with exactly one cutout per active ROI version.

    Cutouts the source delivered itself are kept; the others are cut from the block's full
    frames (a shot without a frame is invalid). Cutouts for versions no longer active are
    dropped, so a block never carries a key the recording does not expect.
    """
    cutouts: dict[str, Cutout] = {}
    for key, version in active.items():
        given = block.cutouts.get(key)
        if given is not None:
            cutouts[key] = given if given.detector else Cutout(given.pixels, given.valid, version.detector)
            continue
        info = (detectors or {}).get(version.detector)
        dtype = np.dtype(info.dtype) if info is not None else np.dtype(np.float32)
        cutouts[key] = _cut(len(block), version, block.frames.get(version.detector), dtype)
    return block.with_(cutouts=cutouts)


def decimate_frames(block: ShotBlock, *, first_shot: int, every: int, next_shot: int) -> tuple[ShotBlock, int]:
    """Keep a frame at most every ``every`` shots (0 = none) for the recording.

    ``first_shot`` is the recording's shot index of the block's first shot and ``next_shot``
    the index from which the next frame may be kept. Returns the block with only the kept
    frames, and the updated ``next_shot``. Works whether the source delivers a frame for every
    shot or only some.
    """
    if every <= 0 or not block.frames:
        return block.with_(frames={}), next_shot
    kept: dict[str, Frames] = {}
    new_next = next_shot
    for det, frames in block.frames.items():
        keep, nxt = [], next_shot
        for i, shot in enumerate(frames.shot.tolist()):
            if first_shot + shot >= nxt:
                keep.append(i)
                nxt = first_shot + shot + every
        if keep:
            kept[det] = Frames(frames.pixels[keep], frames.shot[keep])
        new_next = max(new_next, nxt)
    return block.with_(frames=kept), new_next
