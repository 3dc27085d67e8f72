"""European XFEL karabo-bridge source (FACILITY.md, "European XFEL").

A thin adapter: trains received with :class:`karabo_bridge.Client` become ShotBlocks. Each
``read`` returns the shots of one train: one shot per train (``pulses = "train"``, the frame
is the mean over the train's pulses as float32) or one shot per selected pulse
(``pulses = "START:STOP:STEP"``, tag = trainId x pulses_per_train + the pulse's index along
the pulse axis, frames as delivered). Full frames go in ``block.frames[detector]``, one per
shot; the recorder cuts ROIs from them.

Faults: a train without the detector is shots without a frame (counted under the detector in
``status().missing``); a missing point source/key is NaN (counted under the point name); no
train for ``stale_after`` seconds is ``state = "disconnected"`` with a notice, and a REQ
socket is re-created (its request died with the server) so the source reconnects by itself.
Train ids that do not increase (a restarted simulator counts from 10**10 again) are dropped
and counted, so tags stay strictly increasing. ``run`` and ``hightag`` are None: the bridge
carries no run number and train ids are already a global epoch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import zmq

from ..schemas import Config, Frames, KaraboSource, Roi, ShotBlock, SourceError
from ..schemas.source_info import DetectorInfo, SourceInfo
from ._karabo_train import (
    IMAGE_KEYS,
    Layout,
    find_layout,
    frames_of,
    parse_pulses,
    point_spec,
    point_values,
    pulse_axis,
    timestamp,
    train_id,
)
from .base import Source, SourceStatus

__all__ = ["KaraboBridgeSource", "make", "parse_pulses", "pulse_axis"]

Array = npt.NDArray[Any]
Train = tuple[dict[str, Any], dict[str, Any]]
WENT_BACK = "trains dropped (train id not increasing)"
BEYOND = "pulses dropped (index >= pulses_per_train)"


def make(config: Config | KaraboSource, *, frames_every: int | None = None) -> KaraboBridgeSource:
    """The source factory's entry point.

    Args:
        config: the whole configuration (its ROIs are checked against ``source.detector``)
            or just its ``[source]`` section.
        frames_every: unused; the recorder decimates the full frames this source delivers.

    Raises:
        SourceError: an ROI names another detector, an analysis section names a point that
            ``source.points`` does not map, or ``pulses`` has a step <= 0.
    """
    del frames_every
    cfg = config if isinstance(config, KaraboSource) else config.source
    if not isinstance(cfg, KaraboSource):
        raise SourceError(f"source.kind: expected \"karabo\", found {cfg.kind!r}")
    if isinstance(config, Config):
        names = sorted(set(cfg.points.values()))
        for name in config.analysis_points():
            if name not in names:
                raise SourceError(f"source.points: expected a \"source/key\" = {name!r} entry (the name is used by "
                                  f"[i0], [[veto]], [scan] or [pump_probe]), found only {names or 'none'}")
        for roi in config.roi:
            if roi.detector != cfg.detector:
                raise SourceError(f"roi {roi.name!r}: detector: expected {cfg.detector!r} "
                                  f"(source.detector, the one karabo detector), found {roi.detector!r}")
    return KaraboBridgeSource(cfg)


class KaraboBridgeSource(Source):
    """Shots from a karabo bridge (REQ or SUB), one train per block.

    Args:
        cfg: the ``[source]`` section.
        open_timeout: ``open`` waits this long for a first train before raising.
        stale_after: seconds without a train after which the source is "disconnected"
            (and a REQ socket is re-created); trains of large detectors can take ~1 s.
    """

    def __init__(self, cfg: KaraboSource, *, open_timeout: float = 10.0, stale_after: float = 3.0) -> None:
        self.cfg = cfg
        self._slice = parse_pulses(cfg.pulses)
        self._points = {name: point_spec(spec) for spec, name in cfg.points.items()}
        self.open_timeout = open_timeout
        self.stale_after = stale_after
        self._ctx: zmq.Context[Any] | None = None
        self._client: Any = None
        self._pending: list[Train] = []
        self._last_rx = 0.0
        self._last_tid: int | None = None
        self._layout: Layout | None = None
        self._status = SourceStatus(state="waiting")
        self._notices: list[str] = []
        self._told: set[str] = set()
        self.trains = 0
        """Trains turned into blocks so far."""

    # --- Source protocol -------------------------------------------------------------------

    def open(self) -> None:
        """Connect and wait (up to ``open_timeout``) for a train that holds the detector.

        Raises:
            SourceError: karabo-bridge is not installed, or no train arrived at all.
        """
        self._connect()
        deadline = time.monotonic() + self.open_timeout
        while (left := deadline - time.monotonic()) > 0:
            train = self._receive(min(left, 0.5))
            if train is None:
                continue
            self._pending.append(train)
            if self.cfg.detector in train[0]:
                self._learn(train[0][self.cfg.detector])
                break
        if not self._pending:
            self.close()
            raise SourceError(f"source.endpoint: expected a karabo bridge sending trains at {self.cfg.endpoint} "
                              f"({self.cfg.socket}), found none within {self.open_timeout:g} s")
        self._status.state = "running"
        if self._layout is None:
            self._absent(self._pending[-1][0])

    def describe(self) -> SourceInfo:
        """The detector as delivered (once seen), the mapped point names and the tag formula."""
        detectors: dict[str, DetectorInfo] = {}
        ppt: int | None = None
        if self._layout is not None:
            ppt = self._layout.ppt
            detectors[self.cfg.detector] = DetectorInfo(shape=self._layout.shape, dtype=self._layout.dtype,
                                                        ev_per_adu=1.0)
        if self._slice is None:
            tag = "trainId"
        else:
            tag = f"trainId * {ppt if ppt is not None else 'pulses_per_train'} + pulse index"
        attrs = {"endpoint": self.cfg.endpoint, "socket": self.cfg.socket, "detector_source": self.cfg.detector,
                 "pulses": self.cfg.pulses, "pulses_per_train": ppt, "tag": tag,
                 "image_key": self._layout.key if self._layout else None,
                 "calibration": "none: AGIPD ADU as delivered (ev_per_adu 1.0)"}
        return SourceInfo(kind="karabo", detectors=detectors, points=list(self._points), attrs=attrs)

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        """Ignored: full frames are delivered and the recorder cuts them."""

    def read(self, *, timeout: float) -> ShotBlock | None:
        """The shots of the next train, or None if no usable train came within ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        while self._client is not None or self._pending:  # neither: not open, or closed
            train = self._pending.pop(0) if self._pending else self._receive(deadline - time.monotonic())
            if train is not None:
                block = self._block(*train)
                if block is not None:
                    return block
            if time.monotonic() >= deadline and not self._pending:
                break
        return None

    def status(self) -> SourceStatus:
        """A copy of the health counters."""
        s = self._status
        return SourceStatus(s.state, dict(s.missing), dict(s.counters), list(s.not_in_stream))

    def notices(self) -> list[str]:
        """Notices since the last call (drained)."""
        out, self._notices = self._notices, []
        return out

    def close(self) -> None:
        """Close the socket and the private ZeroMQ context; idempotent."""
        self._client = None
        self._pending.clear()
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    # --- receiving -------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            from karabo_bridge import Client
        except ImportError:
            raise SourceError("source.kind = \"karabo\": expected the karabo-bridge package, found it missing "
                              "(pip install 'shotwatch[karabo]')") from None
        if self._ctx is None:
            self._ctx = zmq.Context()
        if self._client is not None:
            self._client._socket.close(linger=0)
        self._client = Client(self.cfg.endpoint, sock=self.cfg.socket, context=self._ctx)
        self._last_rx = time.monotonic()

    def _receive(self, timeout: float) -> Train | None:
        """One train within ``timeout`` (never blocks longer), or None; tracks staleness."""
        if self._client is None:  # not open, or closed
            return None
        # Client's own timeout is fixed at creation; the receive timeout of this call is set
        # on its socket (karabo-bridge 0.7) so that read(timeout) is honoured exactly.
        self._client._socket.setsockopt(zmq.RCVTIMEO, max(0, int(timeout * 1000)))
        try:
            data, meta = self._client.next()
        except TimeoutError:
            self._check_stale()
            return None
        except zmq.ZMQError as exc:
            self._count("receive errors", f"karabo: receive from {self.cfg.endpoint} failed ({exc}); reconnecting")
            self._connect()
            return None
        except Exception as exc:  # a malformed message must not kill the reader
            self._count("bad messages", f"karabo: undecodable message from {self.cfg.endpoint} ({exc!r}); skipped")
            return None
        self._last_rx = time.monotonic()
        if self._status.state == "disconnected":
            self._notices.append(f"karabo: reconnected to {self.cfg.endpoint}")
            self._status.state = "running"
        return data, meta

    def _check_stale(self) -> None:
        now = time.monotonic()
        if now - self._last_rx < self.stale_after:
            return
        if self._status.state != "disconnected":
            self._status.state = "disconnected"
            self._notices.append(f"karabo: no train from {self.cfg.endpoint} for {self.stale_after:g} s "
                                 f"(bridge stopped or not sending); retrying")
        if self.cfg.socket == "REQ":
            # The pending request died with the server: a new socket asks again.
            self._count("reconnects")
            self._connect()
        else:
            self._last_rx = now  # SUB reconnects by itself; just re-arm the timer

    def _count(self, what: str, notice: str | None = None, n: int = 1) -> None:
        self._status.counters[what] = self._status.counters.get(what, 0) + n
        if notice:
            self._notices.append(notice)

    def _once(self, key: str, notice: str) -> None:
        if key not in self._told:
            self._told.add(key)
            self._notices.append(notice)

    # --- trains to blocks ------------------------------------------------------------------

    def _learn(self, props: Mapping[str, Any]) -> None:
        """Fix the image key, pulse axis, frame shape and pulses_per_train from one train."""
        self._layout = find_layout(props, train_mode=self._slice is None)
        det = self.cfg.detector
        if self._layout is None:
            self._once("nokey", f"karabo: {det}: expected pixels under one of {list(IMAGE_KEYS)}, "
                                f"found keys {sorted(props)}")
        elif self._layout.ambiguous:
            self._once("ambiguous", f"karabo: {det}: several axes have the pulse count {self._layout.ppt}; "
                                    f"axis {self._layout.axis} taken as the pulse axis")

    def _frames(self, props: Mapping[str, Any] | None) -> tuple[Array | None, int]:
        """(pixels [P, y, x] or the train mean [1, y, x], pulses in this train), or (None, 0)."""
        if props is not None and self._layout is None:
            self._learn(props)
        if props is None or self._layout is None:
            return None, 0
        image = props.get(self._layout.key)
        got = frames_of(image, self._layout, train_mode=self._slice is None) \
            if isinstance(image, np.ndarray) else None
        if got is None:
            shape = getattr(image, "shape", None)
            self._once(f"shape{shape}", f"karabo: {self.cfg.detector}: expected frames {self._layout.rest} beside "
                                        f"the pulse axis, found {shape}; those trains have no frame")
            return None, 0
        return got

    def _block(self, data: dict[str, Any], meta: dict[str, Any]) -> ShotBlock | None:
        tid = train_id(data, meta)
        if tid is None:
            self._count("trains without a train id")
            return None
        if self._last_tid is not None and tid <= self._last_tid:
            self._count(WENT_BACK)
            self._once(f"back{self._last_tid}", f"karabo: train id went from {self._last_tid} back to {tid} "
                                                f"(bridge restarted?); dropping trains until it passes {self._last_tid}")
            return None
        det = self.cfg.detector
        pixels, npulses = self._frames(data.get(det))
        if self._slice is None:
            tags = np.array([tid], np.int64)
            index: Array = np.zeros(1, np.int64)
        else:
            if self._layout is None:
                self._count("trains before the detector was seen")
                self._absent(data)
                return None
            ppt = self._layout.ppt
            n = npulses if pixels is not None else ppt
            start, stop, step = self._slice.indices(min(n, ppt))
            index = np.arange(start, stop, step, dtype=np.int64)
            beyond = len(range(n)[self._slice]) - len(index)
            if beyond > 0:
                self._once(BEYOND, f"karabo: train {tid} has {n} pulses, more than pulses_per_train = {ppt}; "
                                   f"pulses beyond it are dropped and counted")
                self._count(BEYOND, n=beyond)
            if pixels is not None:
                pixels = pixels[start:stop:step]
            tags = tid * ppt + index
        self._last_tid = tid
        nshots = len(tags)
        frames: dict[str, Frames] = {}
        if pixels is not None:
            frames[det] = Frames(pixels, np.arange(nshots, dtype=np.int64))
            if det in self._status.not_in_stream:
                self._status.not_in_stream.remove(det)
                self._notices.append(f"karabo: {det} is in the stream now")
        else:
            self._missing(det, nshots)
            self._absent(data)
        points = {name: self._point(data, name, src, key, index, npulses) for name, (src, key) in self._points.items()}
        t = timestamp(data, meta, det)
        self.trains += 1
        return ShotBlock(tags, np.full(nshots, t), points, {}, frames)

    def _absent(self, data: Mapping[str, Any]) -> None:
        det = self.cfg.detector
        if det not in self._status.not_in_stream and det not in data:
            self._status.not_in_stream.append(det)
            self._notices.append(f"karabo: {det} not in stream (available: {', '.join(sorted(data)) or 'none'})")

    def _missing(self, name: str, n: int) -> None:
        self._status.missing[name] = self._status.missing.get(name, 0) + n

    def _point(self, data: Mapping[str, Any], name: str, src: str, key: str, index: Array, npulses: int) -> Array:
        props = data.get(src)
        value = None if props is None else props.get(key)
        if props is None:
            self._once(f"src:{name}", f"karabo: point {name!r}: source {src} not in stream "
                                      f"(available: {', '.join(sorted(data)) or 'none'})")
        elif value is None:
            self._once(f"key:{name}", f"karabo: point {name!r}: {src} has no key {key!r} "
                                      f"(available: {', '.join(sorted(props))})")
        values = None if value is None else point_values(value, index, npulses, train_mode=self._slice is None)
        if value is not None and values is None:
            self._once(f"num:{name}", f"karabo: point {name!r}: {src}/{key} is not numeric")
        if values is None:
            self._missing(name, len(index))
            return np.full(len(index), np.nan)
        return values
