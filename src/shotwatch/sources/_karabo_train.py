"""Pure helpers of the karabo source: one decoded train's dicts -> tags, frames, point values.

No sockets, no state: :mod:`shotwatch.sources.karabo` owns those. A train is the pair
``(data, meta)`` that ``karabo_bridge.Client.next()`` returns, keyed by karabo source name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..schemas import SourceError

__all__ = ["IMAGE_KEYS", "Layout", "find_layout", "frames_of", "parse_pulses", "point_spec", "point_values",
           "pulse_axis", "timestamp", "train_id"]

Array = npt.NDArray[Any]

IMAGE_KEYS = ("image.data", "data.adc", "data.image.pixels")
"""Keys tried, in order, for the detector's pixels (AGIPD/LPD/DSSC, JUNGFRAU, cameras)."""


def parse_pulses(spec: str) -> slice | None:
    """``"train"`` -> None; ``"START:STOP:STEP"`` -> a slice with a positive step.

    Raises:
        SourceError: the step is zero or negative (tags must increase with the pulse).
    """
    if spec == "train":
        return None
    parts = [int(p) if p.strip() else None for p in spec.split(":")]
    sl = slice(*parts) if len(parts) > 1 else slice(parts[0], None)
    if sl.step is not None and sl.step <= 0:
        raise SourceError(f"source.pulses: expected a positive STEP, found {spec!r}")
    return sl


def pulse_axis(shape: tuple[int, ...], npulses: int | None) -> int:
    """The pulse axis of an image array: the one whose length is ``npulses``.

    With no pulse count, axis 0 for 3-D and more (real data put pulses first). Where several
    axes match, axis 0 wins (the facility's layout); a 2-D image has no pulse axis (-1).
    """
    if len(shape) < 3:
        return -1
    matches = [i for i, n in enumerate(shape) if n == npulses]
    return matches[0] if matches else 0


def point_spec(spec: str) -> tuple[str, str]:
    """``"karabo/source/name/key"`` -> (source, key), split at the last ``/``.

    Karabo source names contain ``/``; property keys never do (they use ``.``).
    """
    source, _, key = spec.rpartition("/")
    if not source or not key:
        raise SourceError(f"source.points: expected \"karabo/source/name/key\", found {spec!r}")
    return source, key


def train_id(data: Mapping[str, Any], meta: Mapping[str, Any]) -> int | None:
    """The train id from the metadata (protocol 2.2, or 1.0's in-data metadata) or the data."""
    for src, props in data.items():
        for md in (meta.get(src) or {}, props.get("metadata") or {}):
            tid = md.get("timestamp.tid")
            if tid is not None:
                return int(tid)
        for key in ("image.trainId", "data.trainId"):
            if key in props and np.size(props[key]):
                return int(np.ravel(props[key])[0])
    return None


def timestamp(data: Mapping[str, Any], meta: Mapping[str, Any], prefer: str) -> float:
    """Unix seconds of the train, from ``prefer``'s metadata if it has some; NaN if none does."""
    for src in (prefer, *data):
        for md in ((meta.get(src) or {}), (data.get(src) or {}).get("metadata") or {}):
            if "timestamp" in md:
                return float(md["timestamp"])
    return math.nan


@dataclass(frozen=True)
class Layout:
    """How the detector's pixels arrive, fixed by the first train that holds them."""

    key: str
    """Data key of the pixels (one of :data:`IMAGE_KEYS`)."""
    axis: int
    """The pulse axis; -1 for a 2-D image (one pulse)."""
    rest: tuple[int, ...]
    """The other axes' lengths, in order."""
    dtype: str
    """Of delivered frames: float32 for train means, else as sent."""
    ppt: int
    """pulses_per_train of the tag formula."""
    ambiguous: bool = False
    """Several axes had the pulse count (axis 0 was taken)."""

    @property
    def shape(self) -> tuple[int, int]:
        """(y, x): x is the last non-pulse axis, y all the others stacked (modules)."""
        return int(np.prod(self.rest[:-1])), self.rest[-1]


def find_layout(props: Mapping[str, Any], *, train_mode: bool) -> Layout | None:
    """The layout of one train's detector properties, or None if no pixels are there."""
    for key in IMAGE_KEYS:
        image = props.get(key)
        if isinstance(image, np.ndarray) and image.ndim >= 2:
            break
    else:
        return None
    pid = props.get(key.rpartition(".")[0] + ".pulseId")
    axis = pulse_axis(image.shape, int(np.size(pid)) if pid is not None else None)
    rest = tuple(int(n) for i, n in enumerate(image.shape) if i != axis)
    ppt = int(image.shape[axis]) if axis >= 0 else 1
    ambiguous = axis >= 0 and sum(n == ppt for n in image.shape) > 1
    return Layout(key, axis, rest, "float32" if train_mode else str(image.dtype), ppt, ambiguous)


def frames_of(image: Array, lay: Layout, *, train_mode: bool) -> tuple[Array, int] | None:
    """(frames ``[P, y, x]`` as delivered, or the train mean ``[1, y, x]`` float32, pulses).

    None where the array no longer matches the layout. Pulse frames are views, not copies.
    """
    rest = tuple(n for i, n in enumerate(image.shape) if i != lay.axis)
    if rest != lay.rest or image.ndim <= lay.axis:
        return None
    if lay.axis < 0:
        frame = image.reshape(1, *lay.shape)
        return (frame.astype(np.float32) if train_mode else frame), 1
    npulses = int(image.shape[lay.axis])
    if train_mode:  # float64 accumulation: sums of hundreds of uint16 exceed float32's 2**24
        mean = image.mean(axis=lay.axis, dtype=np.float64).astype(np.float32)
        return mean.reshape(1, *lay.shape), npulses
    stack = np.moveaxis(image, lay.axis, 0)
    return stack.reshape(npulses, *lay.shape), npulses


def point_values(value: Any, index: Array, npulses: int, *, train_mode: bool) -> Array | None:
    """float64 per shot of one property; None if it is not numeric.

    A scalar is the same for every shot. A per-pulse array gives the entry at each shot's
    pulse index (pulse mode; NaN past its end) or its mean over the first ``npulses`` entries
    (train mode; all of it if the detector's pulse count is unknown).
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    n = len(index)
    if arr.ndim == 0:
        return np.full(n, float(arr))
    flat = arr.ravel()
    if train_mode:
        head = flat[: npulses or flat.size]
        head = head[~np.isnan(head)]
        return np.full(n, float(head.mean()) if head.size else math.nan)
    out = np.full(n, math.nan)
    ok = index < flat.size
    out[ok] = flat[index[ok]]
    return out
