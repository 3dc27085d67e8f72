"""Replay is a recorder too: the recorder with recording off over the replay source, watched
in process (``shotwatch replay``) or over the network (``console`` on a replaying recorder).

Real recordings (the simulator through RecordingWriter), the real recorder and feeds, the
console's own model, and `reduce --tags` on the same recording.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shotwatch.commands.live_cmd import replay_recorder
from shotwatch.console.model import LiveModel
from shotwatch.link.localfeed import LocalFeed
from shotwatch.link.messages import BlockMsg, ImageMsg, Message, ResetMsg, RoisMsg, StatusMsg
from shotwatch.link.netfeed import NetFeed
from shotwatch.link.protocols import Feed
from shotwatch.recorder.acquire import Recorder
from shotwatch.recorder.service import Service
from test_record_reduce import assert_same_summary, run_cli
from test_replay import _record_with_roi_change, record

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,400 shots at 60 Hz (40 s recorded), a frame every 600 shots."""
    return record(tmp_path_factory.mktemp("console-replay") / "run.zarr")


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 shots whose ROI ``bragg`` moves at shot 300 (versions v1 and v2)."""
    return _record_with_roi_change(tmp_path_factory.mktemp("console-replay") / "moved.zarr")


class Running:
    """A recorder on its own thread (``stop_at_end=False``, as ``shotwatch replay`` runs it)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        recorder.open()
        self.thread = threading.Thread(target=recorder.run, kwargs={"stop_at_end": False}, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self.recorder

    def __exit__(self, *exc: object) -> None:
        self.recorder.stop()
        self.thread.join(10)


def until(feed: Feed, done: object, *, limit: float = 30.0) -> Iterator[Message]:
    """Messages from ``feed`` until ``done(msg)`` is true for one of them (or the time is up)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        for msg in feed.poll(timeout=0.1):
            yield msg
            if done(msg):  # type: ignore[operator]
                return
    pytest.fail("the recorder did not deliver in time")


def ended(msg: Message) -> bool:
    return isinstance(msg, StatusMsg) and msg.status.source_state == "ended"


def test_replay_through_the_recorder_delivers_every_shot(recording: Path) -> None:
    recorder = replay_recorder(str(recording), config=None, speed=0.0)
    feed = LocalFeed(recorder, max_blocks=10_000)
    with Running(recorder):
        hello = feed.hello(timeout=5)
        assert hello is not None and hello.playback and hello.source.kind == "replay"
        assert {v.name for v in hello.rois} == {"bragg", "background"}
        model = LiveModel(hello)
        msgs = list(until(feed, ended))
        for m in msgs:
            model.apply(m)
    snap = model.snapshot()
    info = json.loads(run_cli("info", str(recording), "--json").stdout)
    assert snap.summary["shots"]["total"] == info["committed"] == 2400
    assert snap.tag_ranges == ((info["tags"]["first"], info["tags"]["last"] + 1),)
    assert any(isinstance(m, ImageMsg) and m.count > 0 for m in msgs)  # the recorder's running image
    assert snap.status is not None and snap.status.source == "replay" and snap.status.state == "live"
    assert feed.skipped == 0


def test_replay_console_equals_reduce_tags_after_a_seek(moved: Path) -> None:
    """After a seek the console restarts (a broadcast), and its numbers equal `reduce --tags`
    over the range it shows, ROI versions v1 and v2 included."""
    recorder = replay_recorder(str(moved), config=None, speed=0.0)
    recorder.open()
    recorder.pause(True)  # paused before the first block: the seek lands at a known place
    feed = LocalFeed(recorder, max_blocks=10_000)
    with Running(recorder):
        hello = feed.hello(timeout=5)
        assert hello is not None
        model = LiveModel(hello)
        assert recorder.seek(seconds=2.0).result(timeout=5).ok  # 2 s at 60 Hz: shot ~120
        assert recorder.pause(False).result(timeout=5).ok
        msgs = list(until(feed, ended))
    assert any(isinstance(m, ResetMsg) for m in msgs)
    for m in msgs:
        model.apply(m)
    snap = model.snapshot()
    (first, stop), = snap.tag_ranges
    tags = json.loads(run_cli("info", str(moved), "--json").stdout)["tags"]
    assert first > tags["first"] and stop == tags["last"] + 1
    assert {"bragg/v1", "bragg/v2"} <= set(snap.summary["rois"])
    proc = run_cli("reduce", str(moved), "--json", "--tags", f"{first}:{stop}")
    assert proc.returncode == 0, proc.stderr
    assert_same_summary(snap.summary, json.loads(proc.stdout))
    rois = [m for m in msgs if isinstance(m, RoisMsg)]
    assert rois and {v.key for v in rois[-1].versions} == {"bragg/v1", "bragg/v2", "background/v1"}


def test_console_attached_to_a_replaying_recorder_pauses_and_seeks(recording: Path) -> None:
    """`console` on a recorder whose source is a replay: pause, seek and speed are requests."""
    recorder = replay_recorder(str(recording), config=None, speed=1.0)
    with Running(recorder), Service(recorder, publish="auto", control="auto", runfile=False) as service:
        with NetFeed(service.addresses["control"], token=service.token, max_blocks=10_000) as feed:
            hello = feed.hello(timeout=5)
            assert hello is not None and hello.playback
            first = next(m for m in until(feed, lambda m: isinstance(m, BlockMsg)) if isinstance(m, BlockMsg))
            assert feed.request("pause", paused=True).ok
            paused = list(until(feed, lambda m: isinstance(m, StatusMsg) and m.status.source_state == "paused"))
            time.sleep(0.6)
            assert not [m for m in feed.poll(timeout=0.3) if isinstance(m, BlockMsg)]  # nothing while paused
            assert paused
            assert feed.request("seek", start=True).ok
            assert feed.request("pause", paused=False).ok
            assert feed.request("speed", speed=4.0).ok
            after = list(until(feed, lambda m: isinstance(m, BlockMsg)))
            kinds = [type(m) for m in after]
            assert ResetMsg in kinds and kinds.index(ResetMsg) < kinds.index(BlockMsg)
            again = after[-1]
            # the console may attach after the first blocks went out: the seek lands on the recording's first tag
            start = json.loads(run_cli("info", str(recording), "--json").stdout)["tags"]["first"]
            assert isinstance(again, BlockMsg) and int(again.block.tags[0]) == start <= int(first.block.tags[0])
            speeds = [m.status.speed for m in after if isinstance(m, StatusMsg)]
            assert 4.0 in speeds
            bad = feed.request("speed", speed=-1.0)
            assert not bad.ok and "speed" in (bad.error or "")
            roi = feed.request("set_roi", name="bragg", detector="x", x=[0, 1], y=[0, 1])
            assert not roi.ok and "ROIs come from the recording" in (roi.error or "")


def test_a_live_recorder_refuses_playback_and_a_recording_one_refuses_going_back(
        tmp_path: Path, recording: Path) -> None:
    from shotwatch.schemas import load_config

    live = Recorder(load_config(None), record=False)
    with Running(live):
        reply = live.seek(seconds=-10).result(timeout=5)
        assert not reply.ok and "replay only" in (reply.error or "")
        assert not live.pause(True).result(timeout=5).ok
    rerecord = replay_recorder(str(recording), config=None, speed=0.0)
    again = Recorder(rerecord.config, out=str(tmp_path / "again.zarr"))
    with Running(again):
        feed = LocalFeed(again)
        list(until(feed, lambda m: isinstance(m, BlockMsg)))
        back = again.seek(start=True).result(timeout=5)
        assert not back.ok and "forward seek while recording" in (back.error or "")
        assert again.seek(seconds=1.0).result(timeout=5).ok
        feed.close()


def test_the_app_over_a_replay(recording: Path) -> None:
    """`shotwatch replay` as the operator meets it: p pauses the replay, home restarts every
    console's averages from the start, ROI edits are refused with the reason."""
    from shotwatch.console import make_app

    recorder = replay_recorder(str(recording), config=None, speed=4.0)
    feed = LocalFeed(recorder)
    app = make_app(feed, refresh_hz=20, source_label="replay run.zarr")

    async def drive() -> None:
        async with app.run_test() as pilot:
            for _ in range(300):
                await pilot.pause(0.02)
                if app.snapshot is not None and app.snapshot.summary.get("shots", {}).get("total"):
                    break
            assert app.snapshot is not None and app.snapshot.playback
            await pilot.press("p")
            await pilot.pause(0.5)
            assert recorder.status().source_state == "paused"
            await pilot.press("p", "home")
            for _ in range(200):
                await pilot.pause(0.02)
                if any("averages restarted" in t for _, _, t in app.notices):
                    break
            assert recorder.status().source_state == "running"
            assert any("averages restarted" in t for _, _, t in app.notices)
            await pilot.press("e", "enter")
            for _ in range(100):
                await pilot.pause(0.02)
                if any("ROIs come from the recording" in t for _, _, t in app.notices):
                    break
            assert any("set_roi refused" in t and "ROIs come from the recording" in t for _, _, t in app.notices)
            await pilot.press("q")

    with Running(recorder):
        asyncio.run(drive())
    feed.close()
