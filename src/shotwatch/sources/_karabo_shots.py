"""One European XFEL train -> one ShotBlock, for the ``karabo`` and ``euxfel-run`` sources.

Both sources hand :class:`TrainShots` the same ``(data, meta)`` dicts (from the bridge's
frames, or read from a run's files with extra-data), so the same train gives the same shots,
tags, frames and point values whichever way it came (FACILITY.md, "European XFEL").

- ``pulses = "train"``: one shot per train, tag = trainId, each frame the mean over the
  train's pulses (float32).
- ``pulses = "START:STOP:STEP"``: one shot per selected pulse position, tag = trainId x
  pulses_per_train + position (pulses_per_train: the first detector's frame count in the first
  train that holds it), frames as delivered.
- Reserved points, delivered when the analysis names them: ``train_id`` and ``pulse_index``
  (the pulse's original position in the train), used by the train-/pulse-modulo pump-probe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..schemas import PULSE_POINT, Config, EuxfelRunSource, Frames, KaraboSource, ShotBlock, SourceError
from ..schemas.source_info import DetectorInfo
from ._karabo_train import (
    DetSpec,
    Layout,
    find_layout,
    frame_shape,
    frames,
    parse_pulses,
    point_spec,
    point_values,
    timestamp,
    train_id,
)
from .base import SourceStatus

__all__ = ["BEYOND", "RESERVED_POINTS", "WENT_BACK", "TrainShots", "check_config"]

Array = npt.NDArray[Any]
WENT_BACK = "trains dropped (train id not increasing)"
BEYOND = "pulses dropped (index >= pulses_per_train)"
RESERVED_POINTS = ("train_id", "pulse_index")


def check_config(config: Config) -> list[str]:
    """What a European XFEL source's configuration must satisfy; the reserved points it needs.

    Raises:
        SourceError: an ROI names a detector not in ``source.detectors``, an analysis section
            names a point that ``source.points`` does not map, ``pulses`` has a step <= 0, or
            the pump-probe mode does not fit the pulse mode.
    """
    cfg = config.source
    assert isinstance(cfg, KaraboSource | EuxfelRunSource)
    parse_pulses(cfg.pulses)
    names = sorted(set(cfg.points.values()))
    reserved = [n for n in config.analysis_points() if n in RESERVED_POINTS and n not in names]
    for name in config.analysis_points():
        if name not in names and name not in reserved:
            raise SourceError(f"source.points: expected a \"source/key\" = {name!r} entry (the name is used by "
                              f"[i0], [[veto]], [scan] or [pump_probe]), found only {names or 'none'}")
    for roi in config.roi:
        if roi.detector not in cfg.detectors:
            raise SourceError(f"roi {roi.name!r}: detector: expected one of source.detectors "
                              f"({', '.join(cfg.detectors)}), found {roi.detector!r}")
    pp = config.pump_probe
    if pp is not None and cfg.pulses != "train" and pp.mode == "tag-modulo":
        raise SourceError(f"pump_probe.mode: expected \"pulse-modulo\" or \"train-modulo\" with one shot per pulse "
                          f"(source.pulses = {cfg.pulses!r}: tag = trainId x pulses_per_train + pulse, so tag % "
                          f"cycle changes its pattern from train to train), found \"tag-modulo\"")
    if pp is not None and cfg.pulses == "train" and pp.mode == "pulse-modulo":
        raise SourceError("pump_probe.mode: expected \"train-modulo\", \"tag-modulo\" or \"point\" with one shot "
                          "per train (source.pulses = \"train\"), found \"pulse-modulo\"")
    return [PULSE_POINT[pp.mode]] if pp is not None and pp.mode in PULSE_POINT else reserved


class TrainShots:
    """Turns trains into ShotBlocks; keeps the layouts, counters and notices of one stream.

    Args:
        cfg: the ``[source]`` section (``karabo`` or ``euxfel-run``).
        reserved: which of :data:`RESERVED_POINTS` to deliver.
    """

    def __init__(self, cfg: KaraboSource | EuxfelRunSource, *, reserved: Sequence[str] = ()) -> None:
        self.cfg = cfg
        self.slice = parse_pulses(cfg.pulses)
        self.dets = [DetSpec.parse(d) for d in cfg.detectors]
        self.points = {name: point_spec(spec) for spec, name in cfg.points.items()}
        self.reserved = [r for r in RESERVED_POINTS if r in reserved]
        self.layouts: dict[str, Layout] = {}
        self.ppt: int | None = None
        self.last_tid: int | None = None
        self.status = SourceStatus(state="waiting")
        self.notices: list[str] = []
        self.trains = 0
        self._told: set[str] = set()

    # --- what is known ------------------------------------------------------------------

    def learn(self, data: Mapping[str, Any], *, strict: bool) -> None:
        """Fix the layout of every configured source present in ``data`` (once each).

        Raises:
            SourceError: (``strict``, i.e. at open) the layout cannot be told, or a module
                index does not exist; later the same becomes a notice and the detector missing.
        """
        for i, spec in enumerate(self.dets):
            props = data.get(spec.source)
            if props is None:
                continue
            try:
                lay = self.layouts.get(spec.source) or find_layout(spec.source, props, layout=self.cfg.layout)
                if lay is None:
                    self._once(f"nokey:{spec.source}", f"karabo: {spec.source}: expected pixels under one of "
                                                       "image.data, data.adc, data.image.pixels, found keys "
                                                       f"{sorted(props)[:12]}")
                    continue
                _check_module(i, spec, lay)
            except SourceError as exc:
                if strict:
                    raise
                self._once(f"layout:{spec.name}", f"karabo: {exc}; {spec.name} is treated as not in stream")
                continue
            self.layouts[spec.source] = lay
            if self.ppt is None and lay.pulses_first is not None:
                pid = frames(props[lay.key], lay, spec.module)
                self.ppt = int(pid.shape[0]) if pid is not None and pid.shape[0] else None

    def detector_infos(self) -> dict[str, DetectorInfo]:
        """Each configured detector whose source was seen: (rows, cols), dtype, 1 eV/ADU."""
        out = {}
        for spec in self.dets:
            lay = self.layouts.get(spec.source)
            if lay is not None:
                dtype = "float32" if self.slice is None else lay.dtype
                out[spec.name] = DetectorInfo(shape=frame_shape(lay, spec.module), dtype=dtype, ev_per_adu=1.0)
        return out

    def attrs(self) -> dict[str, Any]:
        """The tag formula and layouts, for the recording's ``source`` attributes."""
        ppt = self.ppt
        tag = "trainId" if self.slice is None else \
            f"trainId * {ppt if ppt is not None else 'pulses_per_train'} + pulse index"
        return {"detectors": [d.name for d in self.dets], "pulses": self.cfg.pulses, "pulses_per_train": ppt,
                "tag": tag, "xgm_pulses": self.cfg.xgm_pulses,
                "layouts": {src: lay.name for src, lay in self.layouts.items()},
                "calibration": "ev_per_adu 1.0 unless calibration.ev_per_adu says"}

    def drain(self) -> list[str]:
        out, self.notices = self.notices, []
        return out

    # --- one train ----------------------------------------------------------------------

    def block(self, data: Mapping[str, Any], meta: Mapping[str, Any]) -> ShotBlock | None:
        """The shots of one train, or None (no train id, an id not after the last, no tags yet)."""
        tid = train_id(data, meta)
        if tid is None:
            self.count("trains without a train id")
            return None
        if self.last_tid is not None and tid <= self.last_tid:
            self.count(WENT_BACK)
            self._once(f"back{self.last_tid}", f"karabo: train id went from {self.last_tid} back to {tid} "
                                               f"(bridge restarted?); dropping trains until it passes {self.last_tid}")
            return None
        self.learn(data, strict=False)
        if self.slice is None:
            index: Array = np.zeros(1, np.int64)
            tags = np.array([tid], np.int64)
        elif self.ppt is None:
            self.count("trains before the detector was seen")
            self.absent(data)
            return None
        else:
            start, stop, step = self.slice.indices(self.ppt)
            index = np.arange(start, stop, step, dtype=np.int64)
            tags = tid * self.ppt + index
        self.last_tid = tid
        got, npulses = self._frames(data, index)
        points = {name: self._point(data, name, src, key, index, npulses) for name, (src, key) in self.points.items()}
        if "train_id" in self.reserved:
            points["train_id"] = np.full(len(tags), float(tid))
        if "pulse_index" in self.reserved:
            points["pulse_index"] = index.astype(np.float64) if self.slice is not None else np.full(len(tags), math.nan)
        self.trains += 1
        t = timestamp(data, meta, self.dets[0].source if self.dets else "")
        return ShotBlock(tags, np.full(len(tags), t), points, {}, got)

    def _frames(self, data: Mapping[str, Any], index: Array) -> tuple[dict[str, Frames], int]:
        """Frames of every configured detector, and the pulse count of the first one present."""
        out: dict[str, Frames] = {}
        first: int | None = None
        for spec in self.dets:
            lay = self.layouts.get(spec.source)
            props = data.get(spec.source)
            image = props.get(lay.key) if props is not None and lay is not None else None
            stack = frames(image, lay, spec.module) if isinstance(image, np.ndarray) and lay is not None else None
            if stack is None:
                if props is not None and lay is not None:
                    self._once(f"shape:{spec.name}:{getattr(image, 'shape', None)}",
                               f"karabo: {spec.name}: expected frames like the first train's ({lay.name}), "
                               f"found {getattr(image, 'shape', None)}; those trains have no frame")
                self._missing(spec.name, len(index))
                self.absent(data)
                continue
            p = int(stack.shape[0])
            first = p if first is None else first
            out[spec.name] = self._select(spec.name, stack, index)
            if spec.name in self.status.not_in_stream:
                self.status.not_in_stream.remove(spec.name)
                self.notices.append(f"karabo: {spec.name} is in the stream now")
        return out, first or 0

    def _select(self, name: str, stack: Array, index: Array) -> Frames:
        p = int(stack.shape[0])
        if self.slice is None:  # float64 accumulation: sums of hundreds of uint16 exceed float32's 2**24
            mean = stack.mean(axis=0, dtype=np.float64).astype(np.float32)
            return Frames(mean[np.newaxis], np.zeros(1, np.int64))
        assert self.ppt is not None
        beyond = len(range(p)[self.slice]) - len(range(min(p, self.ppt))[self.slice])
        if beyond > 0:
            self._once(BEYOND, f"karabo: {name} has {p} pulses, more than pulses_per_train = {self.ppt}; "
                               "pulses beyond it are dropped and counted")
            self.count(BEYOND, n=beyond)
        ok = index < p
        if ok.all():
            start, stop, step = self.slice.indices(self.ppt)
            return Frames(stack[start:stop:step], np.arange(len(index), dtype=np.int64))  # a view, no copy
        self._missing(name, int((~ok).sum()))
        return Frames(stack[index[ok]], np.flatnonzero(ok).astype(np.int64))

    def _point(self, data: Mapping[str, Any], name: str, src: str, key: str, index: Array, npulses: int) -> Array:
        props = data.get(src)
        value = None if props is None else props.get(key)
        if props is None:
            self._once(f"src:{name}", f"karabo: point {name!r}: source {src} not in stream "
                                      f"(available: {', '.join(sorted(data)) or 'none'})")
        elif value is None:
            self._once(f"key:{name}", f"karabo: point {name!r}: {src} has no key {key!r} "
                                      f"(available: {', '.join(sorted(props)[:20])})")
        frames_axis = any(spec.source == src for spec in self.dets)
        values = None if value is None else point_values(
            value, index, npulses, train_mode=self.slice is None, per_pulse_limit=self.cfg.xgm_pulses,
            frames_axis=frames_axis)
        if value is not None and values is None:
            self._once(f"num:{name}", f"karabo: point {name!r}: {src}/{key} is not numeric")
        if values is None:
            self._missing(name, len(index))
            return np.full(len(index), np.nan)
        self._missing(name, int(np.isnan(values).sum()))
        return values

    # --- counting -----------------------------------------------------------------------

    def count(self, what: str, notice: str | None = None, n: int = 1) -> None:
        self.status.counters[what] = self.status.counters.get(what, 0) + n
        if notice:
            self.notices.append(notice)

    def _once(self, key: str, notice: str) -> None:
        if key not in self._told:
            self._told.add(key)
            self.notices.append(notice)

    def _missing(self, name: str, n: int) -> None:
        if n > 0:
            self.status.missing[name] = self.status.missing.get(name, 0) + n

    def absent(self, data: Mapping[str, Any]) -> None:
        for spec in self.dets:
            if spec.name not in self.status.not_in_stream and spec.source not in data:
                self.status.not_in_stream.append(spec.name)
                self.notices.append(f"karabo: {spec.name} not in stream (available: {', '.join(sorted(data)) or 'none'})")


def _check_module(i: int, spec: DetSpec, lay: Layout) -> None:
    if spec.module is None:
        return
    if lay.modules is None:
        raise SourceError(f"source.detectors[{i}]: expected {spec.source} to have a module axis for "
                          f"{spec.name}, found one module per train (name it without [{spec.module}])")
    if spec.module >= lay.modules:
        raise SourceError(f"source.detectors[{i}]: expected a module index below {lay.modules} for "
                          f"{spec.source}, found {spec.module}")
