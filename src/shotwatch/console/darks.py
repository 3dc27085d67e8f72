"""The dark frames a console holds, and the ones its analysis still needs.

The analysis in force names dark versions (``calibration.dark = {"<det>": k}``); their frames
reach a console as a :class:`~shotwatch.link.messages.DarkMsg` when a dark is taken, or from
the ``get_dark`` request for a console that joined later (``Hello.darks``). Until it holds
every frame its analysis names, a console reduces nothing under it: it says so, rather than
show ROI values with the pedestal left in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..link.messages import Reply
from ..schemas import Config, DarkFrame

__all__ = ["DarkCache", "dark_from_reply", "named_darks"]


def named_darks(config: Config) -> list[tuple[str, int]]:
    """(detector, version) of every dark version ``config`` names, in order."""
    dark = config.calibration.dark
    return sorted(dark.items()) if isinstance(dark, dict) else []


class DarkCache:
    """Dark frames by (detector, version)."""

    def __init__(self) -> None:
        self._frames: dict[tuple[str, int], DarkFrame] = {}

    def add(self, detector: str, version: int, frame: DarkFrame) -> None:
        self._frames[(detector, version)] = frame

    def needed(self, config: Config) -> list[tuple[str, int]]:
        """The versions ``config`` names whose frames are not here."""
        return [key for key in named_darks(config) if key not in self._frames]

    def frames(self, config: Config) -> dict[str, DarkFrame]:
        """detector -> frame of the versions ``config`` names that are here."""
        return {det: self._frames[(det, k)] for det, k in named_darks(config) if (det, k) in self._frames}


def dark_from_reply(reply: Reply, *, detector: str, version: int, shapes: Mapping[str, tuple[int, int]]) -> DarkFrame:
    """The frame a ``get_dark`` reply carries, checked against what was asked and the detector's shape.

    Raises:
        ValueError: a refusal, or a reply that is not that dark (one line).
    """
    where = f"get_dark {detector} v{version}"
    if not reply.ok:
        raise ValueError(f"{where}: {reply.error}")
    data: Mapping[str, Any] = reply.data
    arrays = [data.get("mean"), data.get("std")]
    shape = shapes.get(detector)
    for name, a in zip(("mean", "std"), arrays, strict=True):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 2 \
                or (shape is not None and tuple(a.shape) != tuple(shape)):
            found = f"{a.dtype}{list(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"{where}: {name}: expected float32 {list(shape) if shape else '(y, x)'}, found {found}")
    ints = [data.get(k) for k in ("frames", "first_tag", "last_tag")]
    if (data.get("detector"), data.get("version")) != (detector, version) \
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        raise ValueError(f"{where}: expected that dark's detector, version, frames and tags, found "
                         f"{ {k: data.get(k) for k in ('detector', 'version', 'frames', 'first_tag', 'last_tag')} }")
    return DarkFrame(arrays[0], arrays[1], int(ints[0]), int(ints[1]), int(ints[2]))  # type: ignore[arg-type]
