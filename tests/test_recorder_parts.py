"""Recorder building blocks: cutting, frame decimation, health figures, output paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shotwatch.recorder.cut import cut_block, decimate_frames
from shotwatch.recorder.health import Health
from shotwatch.recorder.paths import fill_template, free_path, log_path_for
from shotwatch.schemas import Cutout, Frames, RoiVersion, ShotBlock
from synth import DET


def _frames_block(n: int, *, with_frame: list[int]) -> ShotBlock:
    tags = np.arange(100, 100 + 2 * n, 2, dtype=np.int64)
    pix = np.arange(len(with_frame) * 6 * 5, dtype=np.float32).reshape(len(with_frame), 6, 5)
    frames = {DET: Frames(pix, np.asarray(with_frame, np.int64))}
    return ShotBlock(tags, np.full(n, np.nan), frames=frames).validate()


def _version(key_version: int = 1, x: tuple[int, int] = (1, 3), y: tuple[int, int] = (2, 5)) -> RoiVersion:
    return RoiVersion("spot", key_version, DET, x, y, 0, 100)


def test_cut_from_frames_marks_shots_without_frame_invalid() -> None:
    block = _frames_block(4, with_frame=[0, 2, 3])
    out = cut_block(block, {"spot/v1": _version()})
    cut = out.cutouts["spot/v1"]
    assert cut.detector == DET
    assert cut.pixels.shape == (4, 3, 2)
    assert cut.valid.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(cut.pixels[2], block.frames[DET].pixels[1, 2:5, 1:3])
    assert not cut.pixels[1].any()


def test_cut_keeps_delivered_cutouts_and_drops_inactive_keys() -> None:
    block = _frames_block(2, with_frame=[])
    given = Cutout(np.ones((2, 3, 2), np.float32), np.array([True, False]))
    block = block.with_(cutouts={"spot/v1": given, "old/v1": given})
    out = cut_block(block, {"spot/v1": _version()})
    assert set(out.cutouts) == {"spot/v1"}
    assert out.cutouts["spot/v1"].valid.tolist() == [True, False]
    assert out.cutouts["spot/v1"].detector == DET


def test_cut_without_frames_is_all_invalid() -> None:
    block = ShotBlock(np.array([1, 3], np.int64), np.full(2, np.nan))
    out = cut_block(block, {"spot/v1": _version()})
    assert not out.cutouts["spot/v1"].valid.any()


@pytest.mark.parametrize("every", [1, 3, 7])
def test_decimation_keeps_one_frame_every_n_shots_across_blocks(every: int) -> None:
    kept_shots: list[int] = []
    first, nxt = 0, 0
    for n in (5, 4, 9, 1, 6):
        block = _frames_block(n, with_frame=list(range(n)))
        out, nxt = decimate_frames(block, first_shot=first, every=every, next_shot=nxt)
        if DET in out.frames:
            kept_shots += (out.frames[DET].shot + first).tolist()
        first += n
    assert kept_shots == list(range(0, first, every))


def test_decimation_zero_keeps_none() -> None:
    block = _frames_block(3, with_frame=[0, 1, 2])
    out, _ = decimate_frames(block, first_shot=0, every=0, next_shot=0)
    assert out.frames == {}


def test_health_counts_gaps_rate_and_age() -> None:
    h = Health(window=5.0)
    tags = np.array([10, 12, 14, 18, 20], np.int64)  # one tag (16) missing
    h.add(ShotBlock(tags, np.full(5, np.nan), run=7), now=100.0)
    h.add(ShotBlock(np.array([22, 28], np.int64), np.full(2, np.nan), run=7), now=101.0)  # 24, 26 missing
    assert h.tag_gaps == 3
    assert h.last_tag == 28 and h.shots == 7 and h.run == 7
    assert h.age(now=103.5) == pytest.approx(2.5)
    assert h.rate(now=102.0) == pytest.approx(7 / 2.0)
    assert h.rate(now=200.0) == 0.0


def test_fill_template_and_log_path() -> None:
    p = fill_template("rec/{run}-{time}.zarr", run=42, now=0.0)
    assert p == Path("rec/42-19700101-000000.zarr")
    assert fill_template("out.zarr", run=5, first=True) == Path("out.zarr")
    assert fill_template("out.zarr", run=5, first=False) == Path("out-5.zarr")
    assert log_path_for(Path("d/out.zarr")) == Path("d/out.log")


def test_free_path_adds_the_first_free_suffix(tmp_path: Path) -> None:
    assert free_path(tmp_path / "r-5.zarr") == tmp_path / "r-5.zarr"
    (tmp_path / "r-5.zarr").mkdir()
    (tmp_path / "r-5-2.zarr").mkdir()
    assert free_path(tmp_path / "r-5.zarr") == tmp_path / "r-5-3.zarr"
