"""Damaged and unusual recordings: the reader, append and repair refuse them in one line or cope.

What a hostile-input sweep found (docs/bad-inputs.md B1, B3-B6, B13): a recording without ROIs,
``committed`` larger than the arrays (repair must never grow an array), missing or damaged
arrays and ROI groups, wrong dtypes, an invalid ``detectors`` attribute, undecodable chunks,
and tags that are not strictly increasing. Everything is built in-process from one small
recording (copied per test); the command line is driven through ``shotwatch.cli.main``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from shotwatch.cli import main
from shotwatch.recording import RecordingReader, RecordingReadError, RecordingWriter, repair
from shotwatch.recording._format import trim_array
from shotwatch.recording._layout import Layout
from shotwatch.schemas import Config, RecordingError, RoiTable, ShotBlock
from test_recording import (
    POINTS,
    assert_same,
    crash,
    new_writer,
    per_shot_lengths,
    source_info,
    versioned_blocks,
    write_plan,
)

SIZES = [40, 0, 130, 7, 60, 200, 1, 90]  # 528 shots; a/v1, a/v2 from block 3, b/v1 until block 5
TOTAL = sum(SIZES)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ShotBlock]]:
    blocks = versioned_blocks(5, SIZES)
    path = tmp_path_factory.mktemp("hostile") / "rec.zarr"
    with new_writer(path, blocks, commit_seconds=0.0) as writer:
        write_plan(writer, blocks)
    return path, blocks


@pytest.fixture
def rec(original: tuple[Path, list[ShotBlock]], tmp_path: Path) -> Path:
    """A fresh copy of the module's recording."""
    return Path(shutil.copytree(original[0], tmp_path / "rec.zarr"))


def edit_json(path: Path, fn: Callable[[dict[str, Any]], object]) -> None:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def edit_root(rec: Path, **attrs: Any) -> None:
    edit_json(rec / "zarr.json", lambda m: m["attributes"]["shotwatch"].update(attrs))


def snapshot(path: Path) -> list[tuple[str, int, int]]:
    """Every file of the recording but the lock file (which says who locked it last)."""
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in path.rglob("*") if p.is_file() and p.name != ".lock")


def chunk_files(array_dir: Path) -> list[Path]:
    return sorted(f for f in array_dir.iterdir() if f.is_file() and f.name != "zarr.json")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(rec: Path, *contains: str) -> str:
    """RecordingReader(rec) raises RecordingError, one line holding ``rec`` and ``contains``."""
    with pytest.raises(RecordingError) as info:
        RecordingReader(rec)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{rec}: ") and "expected" in msg and "found" in msg, msg
    for c in contains:
        assert c in msg, (c, msg)
    return msg


def one_line_error(result: tuple[int, str, str], code: int, *contains: str) -> str:
    rc, out, err = result
    assert (rc, out) == (code, ""), (rc, out, err)
    assert err.count("\n") == 1 and err.startswith("shotwatch: error: ") and "Traceback" not in err, err
    for c in contains:
        assert c in err, (c, err)
    return err


# --- B1: a recording without ROIs ------------------------------------------------------------


def test_a_recording_without_rois_reads_appends_and_repairs(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    blocks = [b.__class__(b.tags, b.time, b.points, {}, {}) for b in versioned_blocks(3, [30, 20])]
    path = tmp_path / "noroi.zarr"
    with RecordingWriter.create(path, config=Config(), source=source_info(), rois=RoiTable(), points=POINTS,
                                commit_seconds=0.0) as w:
        w.write(blocks[0])
    reader = RecordingReader(path)
    assert reader.committed == 30 and reader.rois.all() == [] and reader.info()["rois"] == {}
    assert_same(list(reader.blocks(size=7)), blocks[0])
    with RecordingWriter.append(path, config=Config(), source=source_info(), points=POINTS,
                                commit_seconds=0.0) as w:
        assert w.rois.all() == []
        w.write(blocks[1])
    assert_same(list(RecordingReader(path).blocks(frames=True)), blocks)
    assert cli(capsys, "info", str(path))[0] == 0
    code, out, _ = cli(capsys, "reduce", str(path), "--json")
    assert code == 0 and json.loads(out)["shots"]["total"] == 50 and json.loads(out)["rois"] == {}
    assert repair(path)["committed"] == 50


# --- B3: committed larger than the arrays ------------------------------------------------------


def test_committed_beyond_the_arrays_is_refused_by_reader_and_append(rec: Path) -> None:
    edit_root(rec, committed=10_000)
    refused(rec, "tag: expected at least 10000 shots (committed), found 528")
    before = snapshot(rec)
    with pytest.raises(RecordingError, match="expected at least 10000 shots"):
        RecordingWriter.append(rec, config=Config(), source=source_info(), points=POINTS)
    assert snapshot(rec) == before


def test_repair_recovers_the_prefix_every_array_holds_and_never_grows(
        rec: Path, original: tuple[Path, list[ShotBlock]], capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    edit_root(rec, committed=10_000)
    with caplog.at_level("WARNING", logger="shotwatch.recording"):
        code, out, _ = cli(capsys, "repair", str(rec))
    assert code == 0 and out.strip().endswith(f"repaired: {TOTAL} committed shots, closed"), out
    assert "committed said 10000 shots" in caplog.text and f"recovered the {TOTAL} shots" in caplog.text
    assert set(per_shot_lengths(rec).values()) == {TOTAL}  # nothing grew
    reader = RecordingReader(rec)
    assert reader.committed == TOTAL and reader.closed
    assert_same(list(reader.blocks(frames=True)), original[1])


def test_repair_of_one_short_array_keeps_the_common_prefix(rec: Path, original: tuple[Path, list[ShotBlock]]) -> None:
    i0 = next(p for p in (rec / "point").iterdir() if p.is_dir() and "fitting_peak" in p.name)
    edit_json(i0 / "zarr.json", lambda m: m.update(shape=[100]))
    refused(rec, f"{rec}: point/{i0.name}: expected at least 528 shots (committed), found 100")
    done = repair(rec)
    assert (done["committed"], done["committed_was"], done["was_closed"]) == (100, TOTAL, False)
    assert done["short"] == {f"point/{i0.name}": 100}
    assert set(per_shot_lengths(rec).values()) == {100}
    got, want = ShotBlock.concat(list(RecordingReader(rec).blocks())), ShotBlock.concat(original[1]).slice(0, 100)
    np.testing.assert_array_equal(got.tags, want.tags)
    for name in POINTS:
        np.testing.assert_array_equal(got.points[name], want.points[name])
    assert sorted(got.cutouts) == ["a/v1", "b/v1"]  # a/v2 started after shot 100: removed
    np.testing.assert_array_equal(got.cutouts["a/v1"].pixels, want.cutouts["a/v1"].pixels)


def test_repair_drops_trailing_shots_whose_tag_was_never_written(tmp_path: Path) -> None:
    blocks = versioned_blocks(9, [50, 70])
    path = tmp_path / "crashed.zarr"
    writer = new_writer(path, blocks, commit_seconds=3600.0)
    write_plan(writer, blocks, commit_each=True)  # arrays at capacity (4096), 120 shots written
    crash(writer)
    assert per_shot_lengths(path)["tag"] > 120
    edit_root(path, committed=100_000)
    done = repair(path)
    assert done["committed"] == 120 and set(per_shot_lengths(path).values()) == {120}
    assert_same(list(RecordingReader(path).blocks(frames=True)), blocks)


def test_repair_refuses_non_increasing_tags_inside_the_prefix_and_changes_nothing(rec: Path) -> None:
    zarr.open_array(rec / "tag", mode="r+")[300] = 5  # a garbled tag in the middle
    edit_root(rec, committed=10_000)
    before = snapshot(rec)
    with pytest.raises(RecordingError, match=r"tag: expected strictly increasing tags, found tag\[300\] = 5"):
        repair(rec)
    assert snapshot(rec) == before


def test_trim_array_never_grows(rec: Path) -> None:
    arr = zarr.open_array(rec / "time", mode="r+")
    with pytest.raises(ValueError, match="expected at least 600 rows"):
        trim_array(arr, 600)
    assert arr.shape == (TOTAL,)


# --- B4: repair of a recording without tag/time ------------------------------------------------


@pytest.mark.parametrize("name", ["tag", "time"])
def test_missing_tag_or_time_is_one_line_everywhere(rec: Path, name: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(rec / name)
    with pytest.raises(RecordingError, match=f"expected array '{name}' of a recording, found none"):
        Layout.discover(zarr.open_group(rec, mode="r"), rec)
    refused(rec, f"'{name}'")
    before = snapshot(rec)
    one_line_error(cli(capsys, "repair", str(rec)), 2, str(rec), f"'{name}'")
    assert snapshot(rec) == before


def test_tag_as_a_group_is_refused(rec: Path) -> None:
    shutil.rmtree(rec / "tag")
    zarr.open_group(rec, mode="r+").create_group("tag")
    refused(rec, "expected array 'tag' of a recording, found a group")


# --- B5: damaged ROI version groups ------------------------------------------------------------


@pytest.mark.parametrize("array", ["pixels", "valid"])
def test_a_missing_roi_array_is_named(rec: Path, array: str, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(rec / "roi" / "a" / "v1" / array)
    refused(rec, f"roi/a/v1/{array}: expected an array")
    one_line_error(cli(capsys, "reduce", str(rec), "--json"), 2, f"roi/a/v1/{array}")
    before = snapshot(rec)
    one_line_error(cli(capsys, "repair", str(rec)), 2, f"roi/a/v1/{array}")
    assert snapshot(rec) == before


ROI_ATTRS: list[Any] = [
    ("empty", lambda a: a.clear(), ["roi/a/v1: expected attributes name, detector, x, y", "found none"]),
    ("no-x", lambda a: a.pop("x"), ["roi/a/v1", "found no x"]),
    ("x-string", lambda a: a.update(x="0:8"), ["roi/a/v1: expected attribute x = [x0, x1]", "'0:8'"]),
    ("x-reversed", lambda a: a.update(x=[8, 0]), ["roi/a/v1", "[8, 0]"]),
    ("x-bool", lambda a: a.update(x=[False, True]), ["roi/a/v1", "[False, True]"]),
    ("name-other", lambda a: a.update(name="z"), ["roi/a/v1: expected attribute name = 'a'", "'z'"]),
    ("detector-number", lambda a: a.update(detector=3), ["roi/a/v1: expected attribute detector", "3"]),
    ("first-shot-negative", lambda a: a.update(first_shot=-1), ["roi/a/v1", "first_shot", "-1"]),
    ("first-tag-float", lambda a: a.update(first_tag=1.5), ["roi/a/v1", "first_tag", "1.5"]),
    ("outside-detector", lambda a: a.update(x=[24, 9999]), ["roi/a/v1", "32 columns", "[24, 9999]"]),
    ("not-the-pixels", lambda a: a.update(x=[0, 10]), ["roi/a/v1", "expected pixels of 8 x 10", "found 8 x 8"]),
    ("after-next-version", lambda a: a.update(first_shot=500), ["roi/a/v2: expected first_shot >= 500"]),
]


@pytest.mark.parametrize(("name", "damage", "contains"), ROI_ATTRS, ids=[c[0] for c in ROI_ATTRS])
def test_damaged_roi_attributes_are_named(rec: Path, name: str, damage: Callable[[dict[str, Any]], object],
                                          contains: list[str]) -> None:
    edit_json(rec / "roi" / "a" / "v1" / "zarr.json", lambda m: damage(m["attributes"]))
    refused(rec, *contains)


def test_a_version_group_a_crash_left_without_arrays_is_fine(rec: Path) -> None:
    # set_rois at the last commit, crash before its arrays were made: no shot of it is committed
    group = zarr.open_group(rec / "roi", mode="r+").create_group("c")
    group.create_group("v1", attributes={"name": "c", "detector": "MPCCD-1N0-M06-004", "x": [0, 4],
                                         "y": [0, 4], "first_shot": TOTAL, "first_tag": 1})
    reader = RecordingReader(rec)
    assert [v.key for v in reader.rois.all()] == ["a/v1", "a/v2", "b/v1", "c/v1"]
    assert "c/v1" not in ShotBlock.concat(list(reader.blocks())).cutouts


def test_a_foreign_group_beside_the_versions_is_ignored(rec: Path) -> None:
    zarr.open_group(rec / "roi" / "a", mode="r+").create_group("notes")
    assert RecordingReader(rec).committed == TOTAL


# --- B6: lengths, dtypes, detectors, chunks ------------------------------------------------------


@pytest.mark.parametrize(("array", "dtype", "expected"), [
    ("tag", "float64", "expected dtype int64, found float64"),
    ("time", "int64", "expected dtype float64, found int64"),
    ("roi/a/v1/valid", "uint8", "expected dtype bool, found uint8"),
])
def test_wrong_dtypes_are_refused(rec: Path, array: str, dtype: str, expected: str) -> None:
    edit_json(rec / array / "zarr.json", lambda m: m.update(data_type=dtype, fill_value=0))
    refused(rec, f"{array}: {expected}")


def test_a_point_array_of_two_dimensions_is_refused(rec: Path) -> None:
    p = next(d for d in (rec / "point").iterdir() if d.is_dir())

    def two_d(m: dict[str, Any]) -> None:
        m.update(shape=[TOTAL, 2], dimension_names=["shot", "x"])
        m["chunk_grid"]["configuration"]["chunk_shape"] = [4096, 2]
    edit_json(p / "zarr.json", two_d)
    refused(rec, f"point/{p.name}: expected 1 dimension(s), found shape [{TOTAL}, 2]")


@pytest.mark.parametrize(("detectors", "contains"), [
    ({"MPCCD-1N0-M06-004": {"shape": "big"}}, ["detectors.MPCCD-1N0-M06-004.shape", "'big'"]),
    ({"MPCCD-1N0-M06-004": {"shape": [64, 32], "ev_per_adu": 1.0}}, ["detectors.MPCCD-1N0-M06-004.dtype"]),
    ({"MPCCD-1N0-M06-004": {"shape": [64, 32], "dtype": "nonsense", "ev_per_adu": 1.0}}, ["dtype 'nonsense'"]),
    ({"MPCCD-1N0-M06-004": {"shape": [64, 32], "dtype": "uint16", "ev_per_adu": -2}}, ["ev_per_adu -2"]),
    ({"MPCCD-1N0-M06-004": {"shape": [0, 32], "dtype": "uint16", "ev_per_adu": 1}}, ["shape [0, 32]"]),
    ([1, 2], ["attribute detectors: expected an object", "[1, 2]"]),
])
def test_an_invalid_detectors_attribute_is_refused(rec: Path, detectors: Any, contains: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    edit_root(rec, detectors=detectors)
    refused(rec, *contains)
    one_line_error(cli(capsys, "info", str(rec)), 2, "detectors")
    one_line_error(cli(capsys, "reduce", str(rec), "--json"), 2, "detectors")


@pytest.mark.parametrize(("key", "value", "contains"), [
    ("source", "sim", ["attribute source: expected an object", "'sim'"]),
    ("marks", {"a": 1}, ["attribute marks: expected a list"]),
    ("marks", [{"text": "x"}], ["attribute marks[0]: expected", "{'text': 'x'}"]),
])
def test_invalid_source_and_marks_attributes_are_refused(rec: Path, key: str, value: Any,
                                                         contains: list[str]) -> None:
    edit_root(rec, **{key: value})
    refused(rec, *contains)


def test_a_corrupt_tag_chunk_is_one_line_exit_1(rec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chunk_files(rec / "tag")[0].write_bytes(b"garbage")
    with pytest.raises(RecordingReadError, match=r"tag: expected a readable chunk c\.0, found it damaged"):
        RecordingReader(rec)
    for argv in (["info", str(rec)], ["reduce", str(rec), "--json"], ["repair", str(rec)]):
        one_line_error(cli(capsys, *argv), 1, str(rec), "tag", "c.0")


def test_a_corrupt_cutout_chunk_is_named_while_reading(rec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = chunk_files(rec / "roi" / "a" / "v2" / "pixels")
    files[-1].write_bytes(b"\x00" * 40)
    reader = RecordingReader(rec)  # opening reads only tag
    with pytest.raises(RecordingReadError, match=rf"roi/a/v2/pixels: expected a readable chunk {files[-1].name}"):
        list(reader.blocks(size=64))
    one_line_error(cli(capsys, "reduce", str(rec), "--json"), 1, "roi/a/v2/pixels", files[-1].name)


def test_a_corrupt_frame_chunk_is_named(rec: Path) -> None:
    det = next(d for d in (rec / "frame").iterdir() if d.is_dir())
    chunk_files(det / "pixels")[0].write_bytes(b"garbage")
    reader = RecordingReader(rec)
    with pytest.raises(RecordingReadError, match=f"frame/{det.name}/pixels"):
        reader.frames(json.loads((det / "zarr.json").read_text())["attributes"]["name"])


# --- B13: committed = true, tags that are not strictly increasing -------------------------------


@pytest.mark.parametrize(("attrs", "contains"), [
    ({"committed": True}, ["'committed'", "True"]),
    ({"committed": 1.0}, ["'committed'", "1.0"]),
    ({"version": True}, ["version 1", "version True"]),
])
def test_bools_and_floats_are_not_whole_numbers(rec: Path, attrs: dict[str, Any], contains: list[str]) -> None:
    edit_root(rec, **attrs)
    refused(rec, *contains)


def test_deleted_tag_chunks_are_refused_before_reading(rec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for f in chunk_files(rec / "tag"):
        f.unlink()
    refused(rec, "tag: expected 1 chunk file(s) for 528 committed shots, found 0", "chunk files missing")
    one_line_error(cli(capsys, "info", str(rec)), 2, "tag")


def test_a_repeated_tag_is_refused(rec: Path) -> None:
    tag = zarr.open_array(rec / "tag", mode="r+")
    tag[200] = tag[199]
    refused(rec, f"tag: expected strictly increasing tags, found tag[200] = {int(tag[199])} after {int(tag[199])}")


# --- wording ------------------------------------------------------------------------------------


def test_a_regular_file_is_called_one(tmp_path: Path) -> None:
    f = tmp_path / "file.zarr"
    f.write_text("hello")
    with pytest.raises(RecordingError, match="found a regular file"):
        RecordingReader(f)
    with pytest.raises(RecordingError, match="found nothing"):
        RecordingReader(tmp_path / "nope.zarr")


def test_the_good_recording_is_unchanged_by_the_checks(original: tuple[Path, list[ShotBlock]]) -> None:
    path, blocks = original
    before = snapshot(path)
    reader = RecordingReader(path)
    assert_same(list(reader.blocks(size=33, frames=True)), blocks)
    assert reader.info()["tags"]["first"] == int(blocks[0].tags[0])
    assert snapshot(path) == before
