"""Replay: a recording played back as a source, paced or as fast as possible."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shotwatch.recording import RecordingReader, RecordingWriter
from shotwatch.schemas import Config, RecordingError, ReplaySource, RoiTable, ShotBlock, load_config
from shotwatch.sources import Source, open_source
from shotwatch.sources.replay import Replayer
from source_conformance import SourceConformance


def _config(**source: object) -> Config:
    demo = load_config(None)
    return Config.model_validate({**demo.model_dump(), "source": {"kind": "sim", "rate": 0, **source}})


def record(path: Path, *, shots: int = 2400, frames_every: int = 600, seed: int = 5,
           time_jump: float = 0.0) -> Path:
    """A closed recording of ``shots`` simulated shots (an optional jump in time half way)."""
    cfg = _config(seed=seed)
    sim = open_source(cfg, frames_every=frames_every)
    sim.open()
    first = sim.read(timeout=1.0)
    assert first is not None
    table = RoiTable()
    for roi in cfg.roi:
        table.set(roi, shot=0, tag=int(first.tags[0]))
    writer = RecordingWriter.create(path, config=cfg, source=sim.describe(), rois=table,
                                    points=sorted(first.points))
    block: ShotBlock | None = first
    written = 0
    while written < shots and block is not None:
        for start in range(0, len(block), 120):  # written in pieces, as the recorder does
            piece = block.slice(start, min(start + 120, len(block), start + shots - written))
            if time_jump and written >= shots // 2:
                piece = piece.with_(time=piece.time + time_jump)
            writer.write(piece)
            written += len(piece)
        block = sim.read(timeout=1.0)
    writer.close()
    sim.close()
    return path


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("replay") / "run.zarr")


def drain(src: Source, *, timeout: float = 0.2, limit: float = 20.0) -> list[ShotBlock]:
    blocks: list[ShotBlock] = []
    t = time.monotonic()
    while time.monotonic() - t < limit:
        block = src.read(timeout=timeout)
        if block is not None:
            blocks.append(block.validate())
        elif src.status().state == "ended":
            break
    return blocks


class TestReplayFastConformance(SourceConformance):
    may_end = True
    own_cutouts = True

    @pytest.fixture
    def source_factory(self, recording: Path) -> Callable[[], Source]:
        return lambda: Replayer(ReplaySource(path=str(recording), speed=0))


class TestReplayPacedConformance(SourceConformance):
    may_end = True
    own_cutouts = True

    @pytest.fixture
    def source_factory(self, recording: Path) -> Callable[[], Source]:
        # 60 Hz recorded, 20x: a 0.1 s block spans 2 s of recording (120 shots)
        return lambda: Replayer(ReplaySource(path=str(recording), speed=20), block_seconds=0.1)


def test_fast_replay_gives_back_the_recording(recording: Path) -> None:
    src = open_source(Config(source=ReplaySource(path=str(recording), speed=0)))
    blocks = drain(src)
    assert src.status().state == "ended"
    got = ShotBlock.concat(blocks)
    ref = ShotBlock.concat(list(RecordingReader(recording).blocks(frames=True)))
    np.testing.assert_array_equal(got.tags, ref.tags)
    for name in ref.points:
        np.testing.assert_array_equal(got.points[name], ref.points[name])
    assert set(got.cutouts) == {"bragg/v1", "background/v1"}
    np.testing.assert_array_equal(got.cutouts["bragg/v1"].pixels, ref.cutouts["bragg/v1"].pixels)
    det = "MPCCD-1N0-M06-004"
    np.testing.assert_array_equal(got.frames[det].shot, ref.frames[det].shot)
    assert all(len(b) <= 1200 for b in blocks)
    info = src.describe()
    assert info.kind == "replay" and det in info.detectors and info.run is not None
    t = time.monotonic()
    assert src.read(timeout=0.1) is None
    assert time.monotonic() - t < 0.5
    src.close()


def test_paced_replay_keeps_recorded_pace(recording: Path) -> None:
    # 1200 shots at 60 Hz = 20 s recorded; at 40x that is 0.5 s of wall time.
    src = Replayer(ReplaySource(path=str(recording), speed=40), block_seconds=0.05)
    t = time.monotonic()
    blocks: list[ShotBlock] = []
    while sum(map(len, blocks)) < 1200:
        block = src.read(timeout=0.5)
        if block is not None:
            blocks.append(block)
    took = time.monotonic() - t
    assert 0.35 < took < 1.5
    spans = [b.time[-1] - b.time[0] for b in blocks]
    assert max(spans) <= 0.05 * 40 + 1e-9
    src.close()


def test_read_waits_no_longer_than_timeout(recording: Path) -> None:
    src = Replayer(ReplaySource(path=str(recording), speed=0.01))  # a block every 50 s
    t = time.monotonic()
    assert src.read(timeout=0.1) is None
    assert time.monotonic() - t < 0.5
    src.close()
    assert src.read(timeout=1.0) is None
    src.close()


def test_long_recorded_pause_is_shortened(tmp_path: Path) -> None:
    path = record(tmp_path / "jump.zarr", shots=240, frames_every=0, time_jump=3600.0)
    src = Replayer(ReplaySource(path=str(path), speed=10))
    t = time.monotonic()
    blocks = drain(src, timeout=0.3, limit=10.0)
    assert sum(map(len, blocks)) == 240
    assert time.monotonic() - t < 3.0
    assert src.status().counters.get("pauses shortened") == 1
    assert any("pause" in n for n in src.notices())


def test_missing_recording_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="nothing"):
        Replayer(ReplaySource(path=str(tmp_path / "nothing.zarr"))).open()


def test_empty_recording_ends_at_once(tmp_path: Path) -> None:
    path = record(tmp_path / "empty.zarr", shots=0)
    src = Replayer(ReplaySource(path=str(path), speed=1))
    assert src.read(timeout=0.05) is None
    assert src.status().state == "ended"
    assert src.describe().attrs["committed"] == 0


def _record_with_roi_change(path: Path, *, shots: int = 600, change_at: int = 300) -> Path:
    """A recording whose ROI ``bragg`` moves at shot ``change_at`` (a new version, v2), each
    version with valid cutouts of its own (the simulator cuts what it is told to)."""
    cfg = _config(seed=9)
    sim = open_source(cfg, frames_every=0)
    sim.open()
    table = RoiTable()
    written, writer = 0, None
    while written < shots:
        block = sim.read(timeout=1.0)
        if block is None or not len(block):
            continue
        if writer is None:
            for roi in cfg.roi:
                table.set(roi, shot=0, tag=int(block.tags[0]))
            writer = RecordingWriter.create(path, config=cfg, source=sim.describe(), rois=table,
                                            points=sorted(block.points))
        n = min(len(block), shots - written, change_at - written if written < change_at else len(block))
        writer.write(block.slice(0, n))
        written += n
        if written == change_at:  # the rest of this block had the old rectangle: not written
            bragg = next(r for r in cfg.roi if r.name == "bragg")
            moved = bragg.model_copy(update={"x": (bragg.x[0] + 4, bragg.x[1] + 4)})
            table.set(moved, shot=written, tag=int(block.tags[n - 1]) + 1)
            writer.set_rois(table)
            sim.set_rois(rois={k: v.roi for k, v in table.active().items()})
    assert writer is not None
    writer.close()
    sim.close()
    return path


def test_pause_resume_and_speed(recording: Path) -> None:
    src = Replayer(ReplaySource(path=str(recording), speed=0))
    playback = src.playback()
    first = src.read(timeout=0.5)
    assert first is not None and not playback.paused
    playback.set_paused(True)
    assert src.read(timeout=0.05) is None and src.status().state == "paused"
    playback.set_paused(False)
    second = src.read(timeout=0.5)
    assert second is not None and int(second.tags[0]) > int(first.tags[-1])  # continues, skips nothing
    playback.set_speed(3.0)
    assert playback.speed == 3.0 and src.status().state == "running"
    with pytest.raises(ValueError, match="speed"):
        playback.set_speed(-1.0)
    src.close()


def test_seek_by_seconds_and_to_the_start(recording: Path) -> None:
    tags = RecordingReader(recording).tags()
    src = Replayer(ReplaySource(path=str(recording), speed=0))
    playback = src.playback()
    src.read(timeout=0.5)  # 1,200 shots at 30 Hz: 40 s recorded
    to = playback.seek(seconds=5.0)
    assert to is not None and abs(int(np.searchsorted(tags, to)) - (1200 + 150)) <= 2  # 5 s at 30 Hz
    block = src.read(timeout=0.5)
    assert block is not None and int(block.tags[0]) == to
    assert playback.seek(seconds=-3600.0) == int(tags[0])  # clipped at the start
    assert playback.seek(seconds=3600.0) is None and src.status().state == "ended"
    assert src.read(timeout=0.05) is None
    assert playback.seek(start=True) == int(tags[0]) and src.status().state == "running"
    again = src.read(timeout=0.5)
    assert again is not None and int(again.tags[0]) == int(tags[0])
    src.close()


def test_rois_follow_the_recorded_table(tmp_path: Path) -> None:
    path = _record_with_roi_change(tmp_path / "moved.zarr")
    src = Replayer(ReplaySource(path=str(path), speed=0))
    playback = src.playback()
    src.open()
    assert {(v.name, v.version, v.end_shot) for v in playback.rois()} == {("bragg", 1, None), ("background", 1, None)}
    seen: set[str] = set()
    while (block := src.read(timeout=0.1)) is not None:
        seen |= set(block.cutouts)
        keys = {v.key for v in playback.rois()}
        assert set(block.cutouts) <= keys  # every cutout delivered has its version listed
    table = {(v.name, v.version): v for v in playback.rois()}
    assert table[("bragg", 1)].end_shot == 300 and table[("bragg", 2)].end_shot is None
    assert "bragg/v2" in seen
    playback.seek(start=True)
    assert {v.key for v in playback.rois()} == {"bragg/v1", "background/v1"}
    src.close()
