"""ReplayFeed over an in-memory reader (and a real recording once RecordingWriter is there)."""

from __future__ import annotations

import numpy as np

from shotwatch.console import ReplayFeed
from shotwatch.console.model import LiveModel
from shotwatch.link.messages import BlockMsg, ImageMsg, Message, RoisMsg, StatusMsg
from test_console_fakes import FakeReader, blocks


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += dt


def drain(feed: ReplayFeed, polls: int = 200) -> list[Message]:
    out: list[Message] = []
    for _ in range(polls):
        out += feed.poll(timeout=0.2)
        if feed.ended:
            out += feed.poll(timeout=0.2)
            break
    return out


def test_max_speed_emits_every_shot_in_order_without_frames() -> None:
    blks = blocks(5, size=40)
    clock = FakeClock()
    feed = ReplayFeed(FakeReader(blks), speed=0, clock=clock, sleep=clock.sleep)
    hello = feed.hello(timeout=1)
    assert hello.source.kind == "replay" and [r["name"] for r in hello.rois] == ["roi"]
    msgs = drain(feed)
    got = [m.block for m in msgs if isinstance(m, BlockMsg)]
    assert np.array_equal(np.concatenate([b.tags for b in got]), np.concatenate([b.tags for b in blks]))
    assert all(not b.frames for b in got)
    seqs = [m.seq for m in msgs if isinstance(m, BlockMsg)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert isinstance(msgs[0], RoisMsg) or isinstance(msgs[0], StatusMsg)
    assert any(isinstance(m, ImageMsg) and m.count > 0 for m in msgs)
    states = [m.status.source_state for m in msgs if isinstance(m, StatusMsg)]
    assert states[-1] == "ended" and feed.ended
    assert clock.t < 1.0  # --max never waits


def test_recorded_pace_scaled_by_speed() -> None:
    blks = blocks(4, size=60)  # tags step 2 at 120 tags/s: 60 shots ~ 1 s
    span = float(blks[-1].time[-1] - blks[0].time[0])
    for speed in (1.0, 4.0):
        clock = FakeClock()
        feed = ReplayFeed(FakeReader(blks), speed=speed, clock=clock, sleep=clock.sleep)
        msgs = drain(feed, polls=10_000)
        pieces = [m.block for m in msgs if isinstance(m, BlockMsg)]
        assert sum(len(b) for b in pieces) == 240
        assert all(float(b.time[-1] - b.time[0]) <= 0.5 for b in pieces)  # blocks of <= 0.5 s
        assert abs(clock.t - span / speed) < 0.6


def test_pause_seek_and_refusals() -> None:
    blks = blocks(6, size=60)
    clock = FakeClock()
    feed = ReplayFeed(FakeReader(blks), speed=1.0, clock=clock, sleep=clock.sleep)
    first = [m for m in drain(feed, polls=5) if isinstance(m, BlockMsg)]
    feed.set_paused(True)
    paused = feed.poll(timeout=0.2) + feed.poll(timeout=0.6)
    assert not any(isinstance(m, BlockMsg) for m in paused)
    assert any(isinstance(m, StatusMsg) and m.status.source_state == "paused" for m in paused)
    feed.set_paused(False)
    feed.seek_start()
    again = next(m for _ in range(50) for m in feed.poll(timeout=0.5) if isinstance(m, BlockMsg))
    assert int(again.block.tags[0]) == int(blks[0].tags[0])
    assert again.seq != first[-1].seq + 1  # a seek starts a new tag range in the console
    feed.seek(+2.0)  # 6 s recorded at 60 shots/s
    later = next(m for _ in range(50) for m in feed.poll(timeout=0.5) if isinstance(m, BlockMsg))
    assert later.block.tags[0] > again.block.tags[-1]
    for op in ("set_roi", "delete_roi", "grab", "mark"):
        reply = feed.request(op, name="roi")
        assert not reply.ok and reply.error and reply.error.startswith("replay:")
    assert feed.request("list_rois").ok and feed.read_only


def test_replay_into_the_model_counts_every_shot() -> None:
    blks = blocks(3, size=50)
    feed = ReplayFeed(FakeReader(blks), speed=0)
    model = LiveModel(feed.hello(timeout=1))
    for m in drain(feed):
        model.apply(m)
    snap = model.snapshot()
    assert snap.summary["shots"]["total"] == 150
    assert snap.tag_ranges == ((int(blks[0].tags[0]), int(blks[-1].tags[-1]) + 1),)
    assert snap.status is not None and snap.status.source == "replay"


def test_replay_of_a_real_recording_through_the_app(tmp_path: object) -> None:
    """RecordingWriter → RecordingReader → ReplayFeed → the console; p, [ and home work."""
    import asyncio
    from pathlib import Path

    import synth
    from shotwatch.console import make_app
    from shotwatch.recording import RecordingReader, RecordingWriter
    from shotwatch.schemas import DetectorInfo, RoiTable
    from shotwatch.schemas.source_info import SourceInfo
    from test_console_fakes import SHAPE, config

    cfg = config()
    table = RoiTable()
    table.set(cfg.roi[0], shot=0, tag=1_000_000)
    info = SourceInfo(kind="sim", run=1, detectors={synth.DET: DetectorInfo(shape=SHAPE, dtype="uint16",
                                                                            ev_per_adu=3.65)})
    path = Path(str(tmp_path)) / "r.zarr"
    writer = RecordingWriter.create(path, config=cfg, source=info, rois=table,
                                    points=[synth.I0, synth.BEAM, synth.SCAN])
    blks = blocks(4, size=50)
    for b in blks:
        writer.write(b)
    writer.close()
    feed = ReplayFeed(RecordingReader(path), speed=0)
    app = make_app(feed, refresh_hz=20)

    async def drive() -> None:
        async with app.run_test() as pilot:
            for _ in range(200):
                await pilot.pause(0.02)
                snap = app.snapshot
                if snap is not None and snap.summary.get("shots", {}).get("total") == 200:
                    break
            assert app.snapshot is not None and app.snapshot.summary["shots"]["total"] == 200
            assert app.snapshot.tag_ranges == ((int(blks[0].tags[0]), int(blks[-1].tags[-1]) + 1),)
            await pilot.press("p")
            await pilot.pause(0.1)
            assert feed.paused
            await pilot.press("p", "home")
            await pilot.pause(0.3)
            assert not feed.paused
            await pilot.press("e", "enter")
            await pilot.pause(0.1)
            assert any("read-only" in t for _, _, t in app.notices)
            await pilot.press("q")

    asyncio.run(drive())
