"""RecordingWriter / RecordingReader: round trips, views, live reading, append, any split.

Helpers at the top are shared with test_recording_faults.py, test_recording_crash.py and
test_info_repair.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synth
from shotwatch.recording import (
    RecordingReader,
    RecordingWriter,
    decode_name,
    encode_name,
)
from shotwatch.schemas import (
    I0,
    Config,
    Cutout,
    DetectorInfo,
    RecordingError,
    Roi,
    RoiTable,
    ShotBlock,
    SourceInfo,
    roi_key,
)

DET = synth.DET
POINTS = [synth.I0, synth.BEAM, synth.SCAN]


def source_info(*, shape: tuple[int, int] = (64, 32), dtype: str = "uint16") -> SourceInfo:
    return SourceInfo(kind="sim", run=7, hightag=201902, points=POINTS, attrs={"beamline": 3},
                      detectors={DET: DetectorInfo(shape=shape, dtype=dtype, ev_per_adu=10.95)})


def plan_table(blocks_done: int, first_shots: dict[int, int], first_tags: dict[int, int]) -> RoiTable:
    """ROI plan of :func:`versioned_blocks`: a/v1 8x8, a/v2 4x6 from block 3, b/v1 deleted at block 5."""
    table = RoiTable()
    table.set(Roi(name="a", detector=DET, x=(0, 8), y=(0, 8)), shot=0, tag=first_tags[0])
    table.set(Roi(name="b", detector=DET, x=(8, 12), y=(8, 12)), shot=0, tag=first_tags[0])
    if blocks_done >= 3:
        table.set(Roi(name="a", detector=DET, x=(2, 8), y=(4, 8)), shot=first_shots[3], tag=first_tags[3])
    if blocks_done >= 5:
        table.delete("b", shot=first_shots[5])
    return table


def versioned_block(seed: int, i: int, n: int) -> ShotBlock:
    """Block ``i`` of the ROI plan, independent of the other blocks (own generator and tags)."""
    rois = {roi_key("a", 1 if i < 3 else 2): (8, 8) if i < 3 else (4, 6)}
    if i < 5:
        rois[roi_key("b", 1)] = (4, 4)
    rng = np.random.default_rng([seed, i])
    return synth.block(rng, first_tag=1_000_000 + 100_000 * i, n=n, rois=rois, frame_every=5)


def versioned_blocks(seed: int, sizes: list[int]) -> list[ShotBlock]:
    return [versioned_block(seed, i, n) for i, n in enumerate(sizes)]


def plan_points(blocks: list[ShotBlock]) -> tuple[dict[int, int], dict[int, int]]:
    """First shot and first tag of each block."""
    first_shots = dict(enumerate(np.concatenate([[0], np.cumsum([len(b) for b in blocks])]).astype(int).tolist()))
    first_tags = {i: int(b.tags[0]) for i, b in enumerate(blocks) if len(b)}
    return first_shots, first_tags


def write_plan(writer: RecordingWriter, blocks: list[ShotBlock], *, start: int = 0,
               commit_each: bool = False) -> None:
    """Write ``blocks[start:]``, switching ROI versions as :func:`plan_table` says."""
    first_shots, first_tags = plan_points(blocks)
    for i in range(start, len(blocks)):
        if i in (3, 5) or i == start:
            writer.set_rois(plan_table(i, first_shots, first_tags))
        writer.write(blocks[i])
        if commit_each:
            writer.commit()


def new_writer(path: Path, blocks: list[ShotBlock], **kwargs: object) -> RecordingWriter:
    first_tags = {0: int(blocks[0].tags[0])}
    return RecordingWriter.create(path, config=Config(), source=source_info(), points=POINTS,
                                  rois=plan_table(0, {0: 0}, first_tags), **kwargs)  # type: ignore[arg-type]


def crash(writer: RecordingWriter) -> None:
    """What the kernel does when a writer's process dies: its lock goes; nothing else happens."""
    writer._lock.release()


def assert_same(got: list[ShotBlock] | ShotBlock, expected: list[ShotBlock] | ShotBlock) -> None:
    """Same shots: tags, time, points (NaN = NaN), cutouts (keys, pixels, valid, detector), frames."""
    g = got if isinstance(got, ShotBlock) else ShotBlock.concat(got)
    e = expected if isinstance(expected, ShotBlock) else ShotBlock.concat(expected)
    if isinstance(got, list) and not got:
        assert len(e) == 0  # an empty view yields no blocks at all
        return
    np.testing.assert_array_equal(g.tags, e.tags)
    np.testing.assert_array_equal(g.time, e.time)
    assert sorted(g.points) == sorted(e.points)
    for name in e.points:
        np.testing.assert_array_equal(g.points[name], e.points[name], err_msg=name)
    assert sorted(g.cutouts) == sorted(e.cutouts)
    for key, c in e.cutouts.items():
        np.testing.assert_array_equal(g.cutouts[key].pixels, c.pixels, err_msg=key)
        np.testing.assert_array_equal(g.cutouts[key].valid, c.valid, err_msg=key)
        assert g.cutouts[key].detector == c.detector
    assert sorted(g.frames) == sorted(e.frames)
    for det, f in e.frames.items():
        np.testing.assert_array_equal(g.frames[det].shot, f.shot)
        np.testing.assert_array_equal(g.frames[det].pixels, f.pixels)


def per_shot_lengths(path: Path) -> dict[str, int]:
    """First-axis length of every array with dimension ``shot``, via plain zarr."""
    root = zarr.open_group(path, mode="r")
    out = {}
    for name, arr in root.arrays():
        out[name] = arr.shape[0]
    for name, group in root.groups():
        for sub, arr in group.members(max_depth=None):
            if isinstance(arr, zarr.Array) and arr.metadata.dimension_names[0] == "shot":
                out[f"{name}/{sub}"] = arr.shape[0]
    return out


SIZES = [40, 0, 130, 7, 60, 200, 1, 90]


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, list[ShotBlock]]:
    blocks = versioned_blocks(1, SIZES)
    path = tmp_path / "rec.zarr"
    with new_writer(path, blocks, commit_seconds=0.0) as writer:
        write_plan(writer, blocks)
        writer.mark("spot moved", tag=int(blocks[2].tags[5]), time=1.7e9)
    return path, blocks


# --- round trip ---------------------------------------------------------------------------


def test_round_trip_equals_the_blocks(recorded: tuple[Path, list[ShotBlock]]) -> None:
    path, blocks = recorded
    reader = RecordingReader(path)
    assert reader.committed == sum(SIZES) and reader.closed
    for size in (7, 33, 4096):
        assert_same(list(reader.blocks(size=size, frames=True)), blocks)
    assert reader.points == sorted(POINTS)
    assert reader.source == {"kind": "sim", "run": 7, "hightag": 201902, "beamline": 3}
    assert reader.detectors[DET].ev_per_adu == 10.95
    assert reader.config == Config()
    assert reader.marks == [{"shot": 40 + 5, "tag": int(blocks[2].tags[5]), "time": 1.7e9, "text": "spot moved"}]
    first = next(reader.blocks(size=4096))
    assert first.run == 7 and first.hightag == 201902


def test_roi_versions_and_active_cutouts(recorded: tuple[Path, list[ShotBlock]]) -> None:
    path, blocks = recorded
    reader = RecordingReader(path)
    rois = reader.rois
    a1, a2 = rois.versions["a"]
    s3 = sum(SIZES[:3])
    assert (a1.x, a1.y, a1.first_shot, a1.end_shot) == ((0, 8), (0, 8), 0, s3)
    assert (a2.x, a2.y, a2.first_shot, a2.first_tag, a2.end_shot) == ((2, 8), (4, 8), s3, int(blocks[3].tags[0]), None)
    assert [v.key for v in rois.versions["b"]] == ["b/v1"]
    # A block carries only the versions active for at least one of its shots.
    by_size = list(reader.blocks(size=10))
    assert set(by_size[0].cutouts) == {"a/v1", "b/v1"}
    assert set(by_size[-1].cutouts) == {"a/v2", "b/v1"}  # b was deleted: no newer version, all invalid
    assert not by_size[-1].cutouts["b/v1"].valid.any()
    assert by_size[-1].cutouts["a/v2"].detector == DET


def test_frames_and_select_views(recorded: tuple[Path, list[ShotBlock]]) -> None:
    path, blocks = recorded
    whole = ShotBlock.concat(blocks)
    reader = RecordingReader(path)
    tags = reader.tags()
    np.testing.assert_array_equal(tags, whole.tags)
    np.testing.assert_array_equal(reader.frames(DET).shot, whole.frames[DET].shot)
    a, b = int(tags[50]), int(tags[300])
    cases = {(a, b): (50, 300), (None, b): (0, 300), (a, None): (50, len(tags)), (None, None): (0, len(tags)),
             (a + 1, a + 1): (51, 51), (b, a): (300, 300)}
    for (lo, hi), (i, j) in cases.items():
        view = reader.select(tags=(lo, hi))
        assert view.shots == (i, j) and len(view) == j - i
        np.testing.assert_array_equal(view.tags(), tags[i:j])
        assert_same(list(view.blocks(size=64, frames=True)), whole.slice(i, j))
        np.testing.assert_array_equal(view.frames(DET).shot, whole.slice(i, j).frames[DET].shot)
    nested = reader.select(tags=(a, None)).select(tags=(None, b))
    assert nested.shots == (50, 300)
    assert reader.shots == (0, len(tags))  # select returned new views
    with pytest.raises(RecordingError, match="frame/nope"):
        reader.frames("nope")


def test_info_layout(recorded: tuple[Path, list[ShotBlock]]) -> None:
    path, blocks = recorded
    info = RecordingReader(path).info()
    assert list(info) == ["path", "format_version", "committed", "closed", "tags", "source", "detectors",
                          "points", "rois", "analysis", "darks", "frames", "marks", "bytes"]
    whole = ShotBlock.concat(blocks)
    steps = np.diff(whole.tags)
    assert info["tags"] == {"first": int(whole.tags[0]), "last": int(whole.tags[-1]),
                            "gaps": int((steps > steps.min()).sum())}
    assert info["rois"]["a"][1] == {"version": 2, "detector": DET, "x": [2, 8], "y": [4, 8],
                                    "first_shot": sum(SIZES[:3]), "first_tag": int(blocks[3].tags[0])}
    assert info["frames"] == {DET: len(whole.frames[DET].shot)}
    assert info["bytes"] > 0 and info["closed"] is True
    json.dumps(info, allow_nan=False)


def test_plain_readers_see_exactly_the_shots(recorded: tuple[Path, list[ShotBlock]]) -> None:
    path, _ = recorded
    assert set(per_shot_lengths(path).values()) == {sum(SIZES)}
    root = zarr.open_group(path, mode="r")
    point = root[f"point/{encode_name(synth.I0)}"]
    assert point.attrs["name"] == synth.I0
    assert tuple(root["roi/a/v2/pixels"].metadata.dimension_names) == ("shot", "y", "x")
    assert root.metadata.consolidated_metadata is None


# --- live reading, append ---------------------------------------------------------------


def test_reader_of_a_live_recording_sees_the_committed_prefix(tmp_path: Path) -> None:
    blocks = versioned_blocks(2, [300, 5000, 50, 4000])
    path = tmp_path / "live.zarr"
    writer = new_writer(path, blocks, commit_seconds=3600.0)
    write_plan(writer, blocks[:1])
    assert RecordingReader(path).committed == 0
    writer.commit()
    early = RecordingReader(path)
    write_plan(writer, blocks[:3], start=1)  # buffered, not committed
    writer.commit()
    write_plan(writer, blocks, start=3)  # still buffered
    assert early.committed == 300
    assert_same(list(early.blocks(frames=True)), blocks[:1])
    later = RecordingReader(path)
    assert later.committed == 5350 and not later.closed
    assert_same(list(later.blocks(frames=True)), blocks[:3])
    assert len(set(per_shot_lengths(path).values())) == 1  # capacity, the same everywhere
    writer.close()
    assert_same(list(RecordingReader(path).blocks(frames=True)), blocks)


def test_append_truncates_and_continues(tmp_path: Path) -> None:
    blocks = versioned_blocks(3, [50, 60, 70, 80, 90, 100])
    path = tmp_path / "app.zarr"
    writer = new_writer(path, blocks, commit_seconds=3600.0)
    write_plan(writer, blocks[:4], commit_each=True)
    writer.write(blocks[4])
    writer._write_data([blocks[4]], writer.committed, dict(writer._frames_done))  # uncommitted tail
    crash(writer)  # never closed
    appended = RecordingWriter.append(path, config=Config(), source=source_info(), points=POINTS)
    assert appended.committed == 260
    assert [v.key for v in appended.rois.all()] == ["a/v1", "a/v2", "b/v1"]
    assert set(per_shot_lengths(path).values()) == {260}
    write_plan(appended, blocks, start=4)
    appended.close()
    assert_same(list(RecordingReader(path).blocks(frames=True)), blocks)


def test_append_refuses_a_different_configuration(recorded: tuple[Path, list[ShotBlock]]) -> None:
    path, _ = recorded
    other = Config(i0=I0(name=synth.I0, min=0.1))
    with pytest.raises(RecordingError, match=r"differences in i0") as exc:
        RecordingWriter.append(path, config=other, source=source_info(), points=POINTS)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)
    with pytest.raises(RecordingError, match=rf"detector {DET} \(uint16\[64, 32\] -> float32"):
        RecordingWriter.append(path, config=Config(), source=source_info(dtype="float32"), points=POINTS)
    roi_only = Config(roi=[Roi(name="x", detector=DET, x=(0, 1), y=(0, 1))])
    RecordingWriter.append(path, config=roi_only, source=source_info(), points=POINTS).close()


def test_create_refuses_an_existing_path(recorded: tuple[Path, list[ShotBlock]]) -> None:
    path, blocks = recorded
    with pytest.raises(RecordingError, match="existing"):
        new_writer(path, blocks)


# --- refusing what is not ours ----------------------------------------------------------


def test_reader_refuses_unknown_version_and_foreign_stores(recorded: tuple[Path, list[ShotBlock]],
                                                            tmp_path: Path) -> None:
    path, _ = recorded
    root = zarr.open_group(path, mode="r+")
    root.attrs["shotwatch"] = {**root.attrs["shotwatch"], "version": 2}
    with pytest.raises(RecordingError) as exc:
        RecordingReader(path)
    msg = str(exc.value)
    assert str(path) in msg and "version 1" in msg and "version 2" in msg and "\n" not in msg
    zarr.create_group(tmp_path / "foreign.zarr", zarr_format=3)
    with pytest.raises(RecordingError, match="expected root attribute 'shotwatch'"):
        RecordingReader(tmp_path / "foreign.zarr")
    with pytest.raises(RecordingError, match="found nothing"):
        RecordingReader(tmp_path / "missing.zarr")


def test_name_encoding() -> None:
    assert encode_name("xfel_bl_3_st_5_direct_bm_1_pd/charge") == "xfel_bl_3_st_5_direct_bm_1_pd%2Fcharge"
    for name in ["a/b c", "50%~", "µ-det:1", "__x", ".", "..", "plain-name_1.0"]:
        enc = encode_name(name)
        assert set(enc) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-%")
        assert not enc.startswith("__") and enc not in (".", "..")
        assert decode_name(enc) == name


def test_a_point_that_appears_mid_run_is_nan_before(tmp_path: Path) -> None:
    blocks = versioned_blocks(4, [30, 40])
    late = "xfel_bl_3_late/value"
    blocks[1] = blocks[1].with_(points={**blocks[1].points, late: np.arange(40.0)})
    with new_writer(tmp_path / "p.zarr", blocks, commit_seconds=0.0) as w:
        write_plan(w, blocks)
    got = ShotBlock.concat(list(RecordingReader(tmp_path / "p.zarr").blocks()))
    assert np.isnan(got.points[late][:30]).all()
    np.testing.assert_array_equal(got.points[late][30:], np.arange(40.0))


def test_bad_blocks_are_refused_before_buffering(tmp_path: Path) -> None:
    blocks = versioned_blocks(5, [20, 20])
    with new_writer(tmp_path / "bad.zarr", blocks) as w:
        write_plan(w, blocks[:1])
        with pytest.raises(ValueError, match="tags: expected >"):
            w.write(blocks[0])
        unknown = blocks[1].with_(cutouts={"zz/v1": Cutout(np.zeros((20, 2, 2), np.uint16), np.ones(20, bool))})
        with pytest.raises(ValueError, match=r"cutouts\['zz/v1'\]"):
            w.write(unknown)
        wrong = blocks[1].with_(cutouts={"a/v1": Cutout(np.zeros((20, 2, 2), np.uint16), np.ones(20, bool))})
        with pytest.raises(ValueError, match=r"expected \[n, 8, 8\]"):
            w.write(wrong)
        lossy = blocks[1].with_(cutouts={"a/v1": Cutout(np.zeros((20, 8, 8), np.float32), np.ones(20, bool))})
        with pytest.raises(ValueError, match="expected uint16"):
            w.write(lossy)


# --- any split, any commit points ---------------------------------------------------------


@st.composite
def _splits(draw: st.DrawFn) -> tuple[list[int], list[bool], list[bool], int]:
    total = sum(_SPLIT_SIZES)
    cuts = sorted(draw(st.lists(st.integers(0, total), max_size=8)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    commits = draw(st.lists(st.booleans(), min_size=len(sizes), max_size=len(sizes)))
    drops = draw(st.lists(st.booleans(), min_size=len(sizes), max_size=len(sizes)))
    return sizes, commits, drops, draw(st.integers(16, 400))


_SPLIT_SIZES = [60, 70, 130, 50, 40, 30]
_SPLIT_BLOCKS = versioned_blocks(8, _SPLIT_SIZES)
_WHOLE = ShotBlock.concat(_SPLIT_BLOCKS)  # a/v1 then a/v2, b deleted; zero/invalid where inactive


def _dropped(piece: ShotBlock) -> tuple[ShotBlock, ShotBlock]:
    """``piece`` without the scan point and ``b/v1`` (as written), and as it should read back."""
    n, cut = len(piece), piece.cutouts["b/v1"]
    written = piece.with_(points={k: v for k, v in piece.points.items() if k != synth.SCAN},
                          cutouts={k: c for k, c in piece.cutouts.items() if k != "b/v1"})
    expected = piece.with_(points={**piece.points, synth.SCAN: np.full(n, np.nan)},
                           cutouts={**piece.cutouts, "b/v1": Cutout(np.zeros_like(cut.pixels), np.zeros(n, bool), DET)})
    return written, expected


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_splits())
def test_any_split_reads_back_the_same(tmp_path_factory: pytest.TempPathFactory,
                                       split: tuple[list[int], list[bool], list[bool], int]) -> None:
    """Any blocks, commits and read sizes; blocks may lack a point or cutout (read as missing)."""
    sizes, commits, drops, read_size = split
    path = tmp_path_factory.mktemp("split") / "s.zarr"
    first_shots, first_tags = plan_points(_SPLIT_BLOCKS)
    writer = RecordingWriter.create(path, config=Config(), source=source_info(), points=POINTS,
                                    rois=plan_table(5, first_shots, first_tags), commit_seconds=3600.0)
    start, expected = 0, []
    for n, commit, drop in zip(sizes, commits, drops, strict=True):
        piece = _WHOLE.slice(start, start + n)
        written, should = _dropped(piece) if drop else (piece, piece)
        writer.write(written)
        expected.append(should)
        start += n
        if commit:
            writer.commit()
    writer.close()
    assert_same(list(RecordingReader(path).blocks(size=read_size, frames=True)), ShotBlock.concat(expected))


def test_append_continues_the_recorded_roi_table(recorded: tuple[Path, list[ShotBlock]]) -> None:
    path, blocks = recorded
    writer = RecordingWriter.append(path, config=Config(), source=source_info(), points=POINTS)
    table = writer.rois
    first_tag = int(blocks[-1].tags[-1]) + 1000
    new = table.apply({"a": Roi(name="a", detector=DET, x=(0, 2), y=(0, 3))}, shot=writer.committed, tag=first_tag)
    assert [v.key for v in new] == ["a/v3"]
    writer.set_rois(table)
    more = synth.block(np.random.default_rng(9), first_tag=first_tag, n=25, rois={"a/v3": (3, 2)})
    writer.write(more)
    fresh = RoiTable()
    fresh.set(Roi(name="a", detector=DET, x=(1, 3), y=(0, 3)), shot=0, tag=0)
    with pytest.raises(RecordingError, match="roi/a/v1: expected the recorded version"):
        writer.set_rois(fresh)
    late = writer.rois
    late.set(Roi(name="a", detector=DET, x=(0, 4), y=(0, 4)), shot=5, tag=first_tag)
    with pytest.raises(RecordingError, match=r"roi/a/v4: expected first_shot >= \d+"):
        writer.set_rois(late)
    writer.close()
    reader = RecordingReader(path)
    assert [v.key for v in reader.rois.versions["a"]] == ["a/v1", "a/v2", "a/v3"]
    assert_same(list(reader.blocks(frames=True)), [*blocks, more])


def test_float_pixels_read_zero_where_a_version_was_not_active(tmp_path: Path) -> None:
    """FORMAT.md: pixels are zero where `valid` is false, for float detectors too (not NaN)."""
    rng = np.random.default_rng(11)
    blocks = [synth.block(rng, first_tag=2_000_000 + 1000 * i, n=10, rois={roi_key("a", 1 + (i >= 1)): (4, 4)},
                          dtype="float32", nan_fraction=0.0) for i in range(2)]
    first = RoiTable()
    first.set(Roi(name="a", detector=DET, x=(0, 4), y=(0, 4)), shot=0, tag=int(blocks[0].tags[0]))
    path = tmp_path / "f.zarr"
    with RecordingWriter.create(path, config=Config(), source=source_info(dtype="float32"), points=POINTS,
                                rois=first) as writer:
        writer.write(blocks[0])
        second = RoiTable()
        second.set(Roi(name="a", detector=DET, x=(0, 4), y=(0, 4)), shot=0, tag=int(blocks[0].tags[0]))
        second.set(Roi(name="a", detector=DET, x=(4, 8), y=(0, 4)), shot=10, tag=int(blocks[1].tags[0]))
        writer.set_rois(second)
        writer.write(blocks[1])
    root = zarr.open_group(path, mode="r")
    v1, v2 = (np.asarray(root[f"roi/a/v{k}/pixels"][:20]) for k in (1, 2))
    valid1, valid2 = (np.asarray(root[f"roi/a/v{k}/valid"][:20]) for k in (1, 2))
    assert v1.dtype == np.float32 and not valid1[10:].any() and not valid2[:10].any()
    assert (v1[10:] == 0).all() and (v2[:10] == 0).all()
