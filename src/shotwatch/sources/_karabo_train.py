"""Pure helpers of the European XFEL sources: one train's dicts -> frames and point values.

No sockets, no files, no state. A train is ``(data, meta)`` keyed by karabo source name, as
the bridge sends it and as extra-data reads it from a run.

Layouts (FACILITY.md): "file" puts pulses first, as in the HDF5 files, an AGIPD module
``(pulses, 512, 128)``, a 16-module source ``(pulses, 16, 512, 128)``, raw AGIPD
``(pulses, 2, 512, 128)`` (data and gain stage: index 0 is taken); "online" is the same with
the pulse axis last and the two pixel axes swapped (``(128, 512, pulses)``). Whatever the
layout, a frame here is as the files have it (an AGIPD module 512 rows x 128 columns), so an
ROI means the same pixels live, from files and in EXtra-geom.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..schemas import SourceError

__all__ = ["IMAGE_KEYS", "DetSpec", "Layout", "find_layout", "frame_shape", "frames", "parse_pulses", "point_spec",
           "point_values", "pulse_count", "timestamp", "train_id"]

Array = npt.NDArray[Any]

IMAGE_KEYS = ("image.data", "data.adc", "data.image.pixels")
"""Keys tried, in order, for a detector's pixels (AGIPD/LPD/DSSC, JUNGFRAU, cameras)."""

_MODULE = re.compile(r"^(?P<source>.+)\[(?P<k>\d+)\]$")


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


def point_spec(spec: str) -> tuple[str, str]:
    """``"karabo/source/name/key"`` -> (source, key), split at the last ``/``.

    Karabo source names contain ``/``; property keys never do (they use ``.``).
    """
    source, _, key = spec.rpartition("/")
    if not source or not key:
        raise SourceError(f"source.points: expected \"karabo/source/name/key\", found {spec!r}")
    return source, key


@dataclass(frozen=True)
class DetSpec:
    """One configured detector: a karabo source, or module ``k`` of a multi-module one."""

    name: str
    """As configured, e.g. ``SPB_DET_AGIPD1M-1/CAL/APPEND_CORRECTED[3]``."""
    source: str
    """The karabo source carrying its pixels."""
    module: int | None
    """Module index within a source with a module axis; None for the whole source."""

    @classmethod
    def parse(cls, name: str) -> DetSpec:
        m = _MODULE.match(name)
        if m is None:
            return cls(name, name, None)
        return cls(name, m["source"], int(m["k"]))


def train_id(data: Mapping[str, Any], meta: Mapping[str, Any]) -> int | None:
    """The train id from the metadata (protocol 2.2, or 1.0's in-data metadata) or the data."""
    for src, props in data.items():
        for md in (meta.get(src) or {}, props.get("metadata") or {}):
            tid = md.get("timestamp.tid") if isinstance(md, Mapping) else None
            if isinstance(tid, (int, np.integer)):
                return int(tid)
        for key in ("image.trainId", "data.trainId"):
            value = props.get(key)
            if isinstance(value, np.ndarray) and value.size and value.dtype.kind in "iu":
                return int(value.ravel()[0])
    return None


def timestamp(data: Mapping[str, Any], meta: Mapping[str, Any], prefer: str) -> float:
    """Unix seconds of the train, from ``prefer``'s metadata if it has some; NaN if none does."""
    for src in (prefer, *data):
        for md in ((meta.get(src) or {}), (data.get(src) or {}).get("metadata") or {}):
            value = md.get("timestamp") if isinstance(md, Mapping) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
    return math.nan


def pulse_count(props: Mapping[str, Any], key: str) -> int | None:
    """Frames in this train according to ``<group>.pulseId`` (or ``cellId``) beside ``key``."""
    group = key.rpartition(".")[0]
    for name in ("pulseId", "cellId"):
        value = props.get(f"{group}.{name}")
        if isinstance(value, np.ndarray):
            return int(value.size)
    return None


@dataclass(frozen=True)
class Layout:
    """How one karabo source's pixels arrive, fixed by the first train that holds them."""

    key: str
    """Data key of the pixels (one of :data:`IMAGE_KEYS`)."""
    pulses_first: bool | None
    """True: "file" layout; False: "online"; None: a 2-D image (one frame per train)."""
    gain: bool
    """Raw data with a data/gain-stage axis of length 2 before the pixel axes (index 0 taken)."""
    modules: int | None
    """Length of the module axis, if the source stacks modules."""
    frame: tuple[int, int]
    """(rows, columns) of one module (or frame) as the files have it."""
    dtype: str
    """Of the pixels as sent."""

    @property
    def name(self) -> str:
        return {True: "file", False: "online", None: "image"}[self.pulses_first]


def _rest_in_file_order(shape: tuple[int, ...], pulses_first: bool | None) -> tuple[int, ...]:
    if pulses_first is None:
        return shape
    if pulses_first:
        return shape[1:]
    rest = shape[:-1]
    return (*rest[:-2], rest[-1], rest[-2]) if len(rest) >= 2 else rest


def find_layout(det: str, props: Mapping[str, Any], *, layout: str | None) -> Layout | None:
    """The layout of ``det``'s pixels in one train's properties (None: no pixels there).

    Raises:
        SourceError: the shapes cannot tell file from online and ``source.layout`` does not
            say, or the array fits neither (one line naming ``source.layout``).
    """
    for key in IMAGE_KEYS:
        image = props.get(key)
        if isinstance(image, np.ndarray) and image.ndim >= 2:
            break
    else:
        return None
    shape, npulses = tuple(int(n) for n in image.shape), pulse_count(props, key)
    if image.ndim == 2:
        return Layout(key, None, False, None, (shape[0], shape[1]), str(image.dtype))
    first, last = npulses == shape[0], npulses == shape[-1]
    if layout is not None:
        pulses_first = layout == "file"
        if npulses is not None and not (first if pulses_first else last):
            raise SourceError(f"source.layout: expected {det} to have its {npulses} pulses on the "
                              f"{'first' if pulses_first else 'last'} axis ({layout!r}), found {key} {list(shape)}")
    elif npulses is None or first != last:
        pulses_first = first or npulses is None  # no pulse count: the files' order
        if npulses is not None and not (first or last):
            raise SourceError(f"source.layout: expected {det} {key} {list(shape)} to have its {npulses} pulses "
                              f"(len of pulseId) on the first or the last axis, found neither")
    else:
        raise SourceError(f"source.layout: expected \"file\" or \"online\" ({det} {key} {list(shape)} has "
                          f"{npulses} pulses on both its first and last axis), found none set")
    rest = _rest_in_file_order(shape, pulses_first)
    integer = image.dtype.kind in "iu"
    gain = integer and len(rest) >= 3 and rest[-3] == 2
    stack = rest[:-3] if gain else rest[:-2]
    if len(stack) > 1:
        raise SourceError(f"source.layout: expected {det} {key} to be frames, modules x frames or raw "
                          f"data/gain x frames beside the pulse axis, found {list(shape)}")
    return Layout(key, pulses_first, gain, stack[0] if stack else None, (rest[-2], rest[-1]), str(image.dtype))


def frames(image: Array, lay: Layout, module: int | None) -> Array | None:
    """``[P, rows, cols]`` frames in file orientation (views where possible), or None if the
    array no longer fits the layout or has no such module."""
    a = image
    if lay.pulses_first is None:
        if a.shape != lay.frame:
            return None
        return a[np.newaxis]
    if not lay.pulses_first:  # online: pulses last, pixel axes swapped
        a = np.moveaxis(a, -1, 0).swapaxes(-1, -2)
    if a.shape[-2:] != lay.frame:
        return None
    if lay.gain:
        if a.ndim < 4 or a.shape[-3] != 2:
            return None
        a = a[..., 0, :, :]
    if lay.modules is None:
        return a if a.ndim == 3 and module is None else None
    if a.ndim != 4 or a.shape[1] != lay.modules:
        return None
    if module is None:  # the whole source: modules stacked into rows
        return a.reshape(a.shape[0], lay.modules * lay.frame[0], lay.frame[1])
    return a[:, module] if module < lay.modules else None


def frame_shape(lay: Layout, module: int | None) -> tuple[int, int]:
    """(rows, columns) of one frame of the detector ``module`` names on this source."""
    if lay.modules is not None and module is None:
        return lay.modules * lay.frame[0], lay.frame[1]
    return lay.frame


def point_values(value: Any, index: Array, npulses: int, *, train_mode: bool, per_pulse_limit: int | None,
                 frames_axis: bool) -> Array | None:
    """float64 per shot of one property; None if it is not numeric.

    A scalar is the same for every shot. A per-frame array of a detector source
    (``frames_axis``) gives the entry at each shot's pulse position (pulse mode; NaN past its
    end) or the mean over the train's frames (train mode). Any other array (the XGM: its first
    entries are the FEL pulses, the rest filler) gives entry i for the frame at position i, NaN
    for i >= ``per_pulse_limit`` (``source.xgm_pulses``) where set; in train mode the mean of
    its first ``per_pulse_limit`` entries (else of the first ``npulses``).
    """
    if isinstance(value, (bool, str, bytes)) or (isinstance(value, np.ndarray) and value.dtype.kind not in "biuf"):
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    n = len(index)
    if arr.ndim == 0:
        return np.full(n, float(arr))
    flat = arr.ravel()
    own = frames_axis or per_pulse_limit is None
    limit = flat.size if own else min(int(per_pulse_limit or 0), flat.size)
    if train_mode:  # filler past the FEL pulses is never averaged in where xgm_pulses says
        head = flat[: npulses or flat.size] if own else flat[:limit]
        head = head[~np.isnan(head)]
        return np.full(n, float(head.mean()) if head.size else math.nan)
    out = np.full(n, math.nan)
    ok = index < limit
    out[ok] = flat[index[ok]]
    return out
