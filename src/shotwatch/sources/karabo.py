"""European XFEL karabo-bridge source (FACILITY.md, "European XFEL").

A thin adapter: each train received from the bridge becomes one ShotBlock
(:class:`~shotwatch.sources._karabo_shots.TrainShots` does the mapping, the same as for a run
read from files). The frames are read by :mod:`._karabo_wire` with msgpack's safe settings and
bounded sizes, never through ``karabo_bridge.Client`` (whose msgpack-numpy decoder unpickles);
sockets: REQ (asks for each train), SUB and PULL.

Faults: a train without a detector is shots without its frame (counted under the detector);
a missing point source/key is NaN (counted under the point name); a message that is not the
documented protocol is refused and counted (``refused messages``) with a notice; no train
for ``stale_after`` seconds is ``state = "disconnected"`` with a notice, and a REQ socket is
re-created (its request died with the server). Train ids that do not increase (a restarted
simulator counts from 10**10 again) are dropped and counted, so tags stay strictly increasing.
``run`` and ``hightag`` are None: the bridge carries no run number.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import zmq

from ..schemas import Config, KaraboSource, Roi, ShotBlock, SourceError
from ..schemas.source_info import SourceInfo
from ._karabo_shots import BEYOND, WENT_BACK, TrainShots, check_config
from ._karabo_train import parse_pulses
from ._karabo_wire import MAX_MESSAGE_BYTES, BadMessage, BridgeSocket, Train, decode
from .base import Source, SourceStatus

__all__ = ["BEYOND", "WENT_BACK", "KaraboBridgeSource", "check_config", "make", "parse_pulses"]

REFUSED = "refused messages"


def make(config: Config, *, frames_every: int | None = None) -> KaraboBridgeSource:
    """The source factory's entry point (``frames_every`` unused: the recorder decimates)."""
    del frames_every
    cfg = config.source
    if not isinstance(cfg, KaraboSource):
        raise SourceError(f"source.kind: expected \"karabo\", found {cfg.kind!r}")
    return KaraboBridgeSource(cfg, reserved=check_config(config))


class KaraboBridgeSource(Source):
    """Shots from a karabo bridge (REQ, SUB or PULL), one train per block.

    Args:
        cfg: the ``[source]`` section.
        reserved: reserved points to deliver (``train_id``, ``pulse_index``).
        open_timeout: ``open`` waits this long for a first train before raising.
        stale_after: seconds without a train after which the source is "disconnected"
            (and a REQ socket is re-created); trains of large detectors can take ~1 s.
        max_bytes: a larger message is refused (drained, never kept).
    """

    def __init__(self, cfg: KaraboSource, *, reserved: list[str] | None = None, open_timeout: float = 10.0,
                 stale_after: float = 3.0, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.cfg = cfg
        self.shots = TrainShots(cfg, reserved=reserved or [])
        self.open_timeout = open_timeout
        self.stale_after = stale_after
        self.max_bytes = max_bytes
        self._ctx: zmq.Context[Any] | None = None
        self._sock: BridgeSocket | None = None
        self._pending: list[Train] = []
        self._last_rx = 0.0
        self._refused_last = 0.0

    @property
    def trains(self) -> int:
        """Trains turned into blocks so far."""
        return self.shots.trains

    # --- Source protocol -------------------------------------------------------------------

    def open(self) -> None:
        """Connect and wait (up to ``open_timeout``) for a train that holds every detector.

        Raises:
            SourceError: no train arrived at all, or a detector's layout cannot be told.
        """
        self._connect()
        deadline = time.monotonic() + self.open_timeout
        while (left := deadline - time.monotonic()) > 0:
            train = self._receive(min(left, 0.5))
            if train is None:
                continue
            if not self._pending:  # a detector missing from the stream is not waited for long
                deadline = min(deadline, time.monotonic() + 1.0)
            self._pending.append(train)
            try:
                self.shots.learn(train[0], strict=True)
            except SourceError:
                self.close()
                raise
            if all(spec.source in self.shots.layouts for spec in self.shots.dets):
                break
        if not self._pending:
            self.close()
            raise SourceError(f"source.endpoint: expected a karabo bridge sending trains at {self.cfg.endpoint} "
                              f"({self.cfg.socket}), found none within {self.open_timeout:g} s")
        self.shots.status.state = "running"
        self.shots.absent(self._pending[-1][0])

    def describe(self) -> SourceInfo:
        """The detectors as delivered (once seen), the point names and the tag formula."""
        attrs = {"endpoint": self.cfg.endpoint, "socket": self.cfg.socket, **self.shots.attrs()}
        return SourceInfo(kind="karabo", detectors=self.shots.detector_infos(),
                          points=[*self.shots.points, *self.shots.reserved], attrs=attrs)

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        """Ignored: full frames are delivered and the recorder cuts them."""

    def read(self, *, timeout: float) -> ShotBlock | None:
        """The shots of the next train, or None if no usable train came within ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        while self._sock is not None or self._pending:  # neither: not open, or closed
            train = self._pending.pop(0) if self._pending else self._receive(deadline - time.monotonic())
            if train is not None:
                block = self.shots.block(*train)
                if block is not None:
                    return block
            if time.monotonic() >= deadline and not self._pending:
                break
        return None

    def status(self) -> SourceStatus:
        """A copy of the health counters."""
        s = self.shots.status
        return SourceStatus(s.state, dict(s.missing), dict(s.counters), list(s.not_in_stream))

    def notices(self) -> list[str]:
        """Notices since the last call (drained)."""
        return self.shots.drain()

    def close(self) -> None:
        """Close the socket and the private ZeroMQ context; idempotent."""
        self._sock = None
        self._pending.clear()
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    # --- receiving -------------------------------------------------------------------------

    def _connect(self) -> None:
        if self._ctx is None:
            self._ctx = zmq.Context()
        if self._sock is not None:
            self._sock.close()
        self._sock = BridgeSocket(self._ctx, self.cfg.endpoint, self.cfg.socket, max_bytes=self.max_bytes)
        self._last_rx = time.monotonic()

    def _receive(self, timeout: float) -> Train | None:
        """One decoded train within ``timeout`` (never blocks longer), or None; tracks staleness."""
        if self._sock is None:  # not open, or closed
            return None
        try:
            got = self._sock.receive(max(0.0, timeout))
        except zmq.ZMQError as exc:
            self.shots.count("receive errors", f"karabo: receive from {self.cfg.endpoint} failed ({exc}); reconnecting")
            self._connect()
            return None
        if got is None:
            self._check_stale()
            return None
        self._last_rx = time.monotonic()
        if self.shots.status.state == "disconnected":
            self.shots.notices.append(f"karabo: reconnected to {self.cfg.endpoint}")
            self.shots.status.state = "running"
        try:
            if got.refused:
                raise BadMessage(got.refused)
            return decode(got.parts)
        except BadMessage as exc:  # never fatal, never executed: counted, one notice per 10 s
            now = time.monotonic()
            speak = now - self._refused_last >= 10.0
            self._refused_last = now if speak else self._refused_last
            self.shots.count(REFUSED, f"karabo: refused a message from {self.cfg.endpoint} (not the "
                                      f"karabo-bridge protocol): {exc}" if speak else None)
            return None

    def _check_stale(self) -> None:
        now = time.monotonic()
        if now - self._last_rx < self.stale_after:
            return
        if self.shots.status.state != "disconnected":
            self.shots.status.state = "disconnected"
            self.shots.notices.append(f"karabo: no train from {self.cfg.endpoint} for {self.stale_after:g} s "
                                      f"(bridge stopped or not sending); retrying")
        if self.cfg.socket == "REQ":
            # The pending request died with the server: a new socket asks again.
            self.shots.count("reconnects")
            self._connect()
        else:
            self._last_rx = now  # SUB and PULL reconnect by themselves; just re-arm the timer
