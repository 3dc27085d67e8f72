"""An in-memory Feed for the console tests (no sockets, no recorder).

The feed behaves like a recorder as far as a console can tell: ROI requests are applied to
a RoiTable and answered with a RoisMsg broadcast, and blocks come from tests/synth.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

import synth
from shotwatch.link.messages import BlockMsg, Hello, Message, Reply, RoisMsg, Status, StatusMsg
from shotwatch.schemas import Config, DetectorInfo, Roi, RoiTable, ShotBlock
from shotwatch.schemas.source_info import SourceInfo

SHAPE = (64, 32)  # synth frames: 64 rows x 32 columns


def config(*, rois: tuple[str, ...] = ("roi",)) -> Config:
    return Config.model_validate({
        "i0": {"name": synth.I0, "min": 0.05},
        "veto": [{"name": synth.BEAM, "min": 0.5}],
        "roi": [{"name": n, "detector": synth.DET, "x": [0, 8], "y": [8 * k, 8 * k + 8]} for k, n in enumerate(rois)],
        "scan": {"name": synth.SCAN, "edges": {"start": -1500, "stop": 3500, "count": 10}},
        "pump_probe": {"mode": "tag-modulo", "cycle": 4, "on": [0]},
    })


def blocks(n_blocks: int = 4, size: int = 30, *, rois: tuple[str, ...] = ("roi",), seed: int = 1) -> list[ShotBlock]:
    keys = {f"{n}/v1": (8, 8) for n in rois}
    return list(synth.stream(seed, [size] * n_blocks, rois=keys, frame_every=10, frame_shape=SHAPE))


class MemFeed:
    """A Feed whose messages the test pushes; requests are recorded and ROI ones applied."""

    def __init__(self, cfg: Config | None = None, *, read_only: bool = False) -> None:
        self.cfg = cfg or config()
        self.read_only = read_only
        self.table = RoiTable()
        for roi in self.cfg.roi:
            self.table.set(roi, shot=0, tag=1_000_000)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.is_connected = True
        self.skip = 0
        self.closed = False
        self._queue: list[Message] = []
        self._lock = threading.Lock()
        self._hello: Hello | None = None
        self.playback = False
        self.polls = 0
        self.refuse: dict[str, str] = {}
        """op -> the error a request of it is refused with (a forced dark is never refused)."""

    def push(self, *msgs: Message) -> None:
        with self._lock:
            self._queue.extend(msgs)

    def push_blocks(self, blks: list[ShotBlock], *, first_seq: int = 1) -> None:
        self.push(*[BlockMsg(first_seq + i, b) for i, b in enumerate(blks)])
        last = blks[-1]
        self.push(StatusMsg(Status(time=time.time(), source="sim", run=1, last_tag=int(last.tags[-1]),
                                   rate_hz=60.0, newest_age_s=0.1, shots=sum(len(b) for b in blks),
                                   recording="x.zarr", bytes=12_300_000, free_bytes=5 * 10**11)))

    # --- Feed protocol -----------------------------------------------------------------

    def hello(self, *, timeout: float) -> Hello:
        info = SourceInfo(kind="sim", run=1,
                          detectors={synth.DET: DetectorInfo(shape=SHAPE, dtype="uint16", ev_per_adu=3.65)},
                          points=[synth.I0, synth.BEAM, synth.SCAN])
        self._hello = Hello(publish="mem", control="mem", config=self.cfg, source=info, rois=self.table.all(),
                            version="test", playback=self.playback)
        return self._hello

    @property
    def last_hello(self) -> Hello | None:
        return self._hello

    def poll(self, *, timeout: float) -> list[Message]:
        self.polls += 1
        with self._lock:
            out, self._queue = self._queue, []
        if not out:
            time.sleep(min(timeout, 0.01))
        return out

    @property
    def skipped(self) -> int:
        return self.skip

    @property
    def connected(self) -> bool:
        return self.is_connected

    def request(self, op: str, *, timeout: float = 2.0, **args: Any) -> Reply:
        self.requests.append((op, args))
        if self.read_only and op != "recompute":
            return Reply(False, "read-only")
        if op in self.refuse and not args.get("force"):
            return Reply(False, self.refuse[op])
        if op in ("set_analysis", "dark", "recompute"):
            return Reply(True, data={"version": 2, "epoch": 1} if op == "set_analysis" else {})
        if op == "set_roi":
            roi = args["roi"]
            roi = roi if isinstance(roi, Roi) else Roi.model_validate(roi)
            self.table.set(roi, shot=1000, tag=2_000_000)
        elif op == "delete_roi":
            self.table.delete(args["name"], shot=1000)
        self.push(RoisMsg(tuple(self.table.all())))
        return Reply(True)

    def close(self) -> None:
        self.closed = True


def synth_i0_missing_status() -> StatusMsg:
    """A heartbeat saying the I0 monitor is not in this run's stream."""
    return StatusMsg(Status(time=time.time(), source="sim", run=1, last_tag=1, rate_hz=60.0, newest_age_s=0.1,
                            not_in_stream=[synth.I0]))


def demo(*, low_bandwidth: bool = False, rate_blocks: float = 2.0) -> None:
    """Run the console on a MemFeed that streams 60 Hz of synthetic shots (for pty tests).

    ``PYTHONPATH=tests python -c "import test_console_fakes as f; f.demo()"``.
    """
    from shotwatch.console import make_app
    from shotwatch.link.messages import ImageMsg

    feed = MemFeed(config(rois=("bragg", "background")))

    def pump() -> None:
        rng = np.random.default_rng(0)
        tag, seq = 1_000_000, 0
        img = rng.poisson(5.0, SHAPE).astype(np.float32)
        while not feed.closed:
            seq += 1
            b = synth.block(rng, first_tag=tag, n=30, rois={"bragg/v1": (8, 8), "background/v1": (8, 8)})
            tag = int(b.tags[-1]) + 2
            feed.push(BlockMsg(seq, b), StatusMsg(Status(
                time=time.time(), source="sim", run=1, last_tag=tag, rate_hz=60.0, newest_age_s=0.05,
                shots=seq * 30, recording="r.zarr", bytes=seq * 10**6, free_bytes=4 * 10**11)))
            if seq % 6 == 1:
                feed.push(ImageMsg(synth.DET, img + rng.normal(0, 1, SHAPE).astype(np.float32), seq * 30))
            time.sleep(1 / rate_blocks)

    threading.Thread(target=pump, daemon=True).start()
    make_app(feed, low_bandwidth=low_bandwidth).run()
    feed.close()
