"""Analysis versions and dark versions in a recording, and dark files (FORMAT.md).

The recorder and the reducers call these later; here the recording side: version 1 at
create, ``add_analysis`` at a block boundary (never rewriting one), what a crash between
recording a version and committing its first shot leaves, ``--append`` continuing the
numbering; ``dark/<det>/v<k>`` written whole, read back checked against the detector, and
opened by plain zarr and xarray; dark files written and refused in one line.
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

import synth
from shotwatch.cli import main
from shotwatch.recording import RecordingReader, RecordingReadError, RecordingWriter, repair
from shotwatch.recording.darkfile import read_dark_file, write_dark_file
from shotwatch.schemas import I0, Config, DarkFrame, RecordingError, Scan
from test_recording import (
    DET,
    POINTS,
    crash,
    plan_table,
    source_info,
    versioned_blocks,
    write_plan,
)
from test_recording_hostile import edit_json, edit_root, snapshot

CONFIG = Config(i0=I0(name=synth.I0, min=0.05), scan=Scan(name=synth.SCAN, edges=[-2000.0, 0.0, 4000.0]))
SECTIONS = {k: v for k, v in CONFIG.model_dump(mode="json").items() if k not in ("source", "record", "roi")}


def new(path: Path, blocks: list[Any], config: Config = CONFIG) -> RecordingWriter:
    return RecordingWriter.create(path, config=config, source=source_info(), points=POINTS,
                                  rois=plan_table(0, {0: 0}, {0: int(blocks[0].tags[0])}), commit_seconds=3600.0)


def changed(i0_min: float) -> dict[str, Any]:
    return {**SECTIONS, "i0": {**SECTIONS["i0"], "min": i0_min}}


def dark(seed: int, shape: tuple[int, int] = (64, 32), frames: int = 600) -> DarkFrame:
    rng = np.random.default_rng(seed)
    return DarkFrame(rng.normal(100, 3, shape).astype(np.float32), rng.gamma(2, 1, shape).astype(np.float32),
                     frames, 5_000_000 + seed, 5_000_000 + seed + 2 * frames)


# --- analysis versions -------------------------------------------------------------------------


def test_version_1_is_the_analysis_sections_and_takes_its_first_tag_at_the_first_commit(tmp_path: Path) -> None:
    blocks = versioned_blocks(21, [50, 40])
    w = new(tmp_path / "v.zarr", blocks)
    assert RecordingReader(tmp_path / "v.zarr").analysis_versions()[0].first_tag == -1  # not known yet
    write_plan(w, blocks, commit_each=True)
    w.close()
    (v1,) = RecordingReader(tmp_path / "v.zarr").analysis_versions()
    assert (v1.version, v1.first_shot, v1.first_tag, v1.by) == (1, 0, int(blocks[0].tags[0]), "")
    assert v1.config == SECTIONS and "roi" not in v1.config and "source" not in v1.config
    assert v1.time is not None


def test_add_analysis_appends_at_a_block_boundary_and_never_rewrites_one(tmp_path: Path) -> None:
    blocks = versioned_blocks(22, [50, 40, 30])
    path = tmp_path / "v.zarr"
    w = new(path, blocks)
    write_plan(w, blocks[:2], commit_each=True)
    before = RecordingReader(path).analysis_versions()[0]
    with pytest.raises(ValueError, match=r"first_shot: expected >= 90 \(shots written so far\), found 50"):
        w.add_analysis(changed(0.1), first_shot=50, first_tag=1, by="x", time=1.0)
    with pytest.raises(ValueError, match="expected the analysis sections only, found roi, source"):
        w.add_analysis({**changed(0.1), "roi": [], "source": {}}, first_shot=90, first_tag=1, by="x", time=1.0)
    assert w.add_analysis(changed(0.1), first_shot=90, first_tag=int(blocks[2].tags[0]), by="ana@bl3",
                          time=1.7e9) == 2
    write_plan(w, blocks, start=2)
    assert w.add_analysis(changed(0.2), first_shot=120, first_tag=-1, by="ana@bl3", time=1.7e9 + 5) == 3
    w.close()
    versions = RecordingReader(path).analysis_versions()
    assert [v.version for v in versions] == [1, 2, 3]
    assert versions[0] == before
    assert (versions[1].first_shot, versions[1].first_tag, versions[1].by) == (90, int(blocks[2].tags[0]), "ana@bl3")
    assert versions[1].config["i0"]["min"] == 0.1 and versions[2].first_shot == 120


def test_a_crash_between_recording_a_version_and_committing_its_first_shot(tmp_path: Path) -> None:
    """Kept while a reader looks; dropped by append and repair (like an ROI version started there)."""
    blocks = versioned_blocks(23, [50, 40, 30])
    path = tmp_path / "v.zarr"
    w = new(path, blocks)
    write_plan(w, blocks[:1], commit_each=True)
    assert w.add_analysis(changed(0.1), first_shot=50, first_tag=int(blocks[1].tags[0]), by="a", time=1.0) == 2
    write_plan(w, blocks[:2], start=1)  # buffered, never committed
    assert w.add_analysis(changed(0.2), first_shot=90, first_tag=int(blocks[2].tags[0]), by="a", time=2.0) == 3
    crash(w)
    reader = RecordingReader(path)
    assert reader.committed == 50 and [v.first_shot for v in reader.analysis_versions()] == [0, 50, 90]
    assert main(["info", str(path)]) == 0
    copy = Path(shutil.copytree(path, tmp_path / "copy.zarr"))
    done = repair(copy)
    assert done["analysis_dropped"] == [3]
    assert [v.version for v in RecordingReader(copy).analysis_versions()] == [1, 2]
    again = RecordingWriter.append(path, config=Config.model_validate({**SECTIONS, "i0": changed(0.1)["i0"]}),
                                   source=source_info(), points=POINTS, commit_seconds=3600.0)
    assert [v["version"] for v in again._analysis()] == [1, 2]  # v3 started after the last commit
    write_plan(again, blocks, start=1)
    assert again.add_analysis(changed(0.3), first_shot=120, first_tag=-1, by="b", time=3.0) == 3
    again.close()
    assert [v.config["i0"]["min"] for v in RecordingReader(path).analysis_versions()] == [0.05, 0.1, 0.3]


def test_append_compares_the_newest_analysis_version(tmp_path: Path) -> None:
    blocks = versioned_blocks(24, [50, 40])
    path = tmp_path / "v.zarr"
    w = new(path, blocks)
    write_plan(w, blocks[:1], commit_each=True)
    w.add_analysis(changed(0.1), first_shot=50, first_tag=-1, by="a", time=1.0)
    w.close()
    with pytest.raises(RecordingError, match="found differences in i0.min"):
        RecordingWriter.append(path, config=CONFIG, source=source_info(), points=POINTS)
    newest = Config.model_validate(changed(0.1))
    with RecordingWriter.append(path, config=newest, source=source_info(), points=POINTS) as again:
        write_plan(again, blocks, start=1)
    assert RecordingReader(path).committed == 90


def test_a_recording_without_the_attribute_has_version_1_from_its_config(tmp_path: Path) -> None:
    blocks = versioned_blocks(25, [30])
    path = tmp_path / "old.zarr"
    with new(path, blocks) as w:
        write_plan(w, blocks)
    edit_json(path / "zarr.json", lambda m: m["attributes"]["shotwatch"].pop("analysis"))
    (v1,) = RecordingReader(path).analysis_versions()
    assert (v1.version, v1.first_shot, v1.first_tag, v1.config) == (1, 0, int(blocks[0].tags[0]), SECTIONS)


ANALYSIS: list[Any] = [
    ("not-a-list", lambda a: {"x": 1}, "attribute analysis: expected a non-empty list"),
    ("empty", lambda a: [], "attribute analysis: expected a non-empty list"),
    ("skips", lambda a: [a[0], {**a[0], "version": 3}], "analysis[1].version: expected 2"),
    ("bool", lambda a: [{**a[0], "version": True}], "analysis[0].version"),
    ("string-shot", lambda a: [{**a[0], "first_shot": "0"}], "analysis[0].first_shot"),
    ("backwards", lambda a: [{**a[0], "first_shot": 9}, {**a[0], "version": 2, "first_shot": 3}],
     "analysis[1].first_shot: expected >= 9"),
    ("not-analysis", lambda a: [{**a[0], "config": {"source": {}}}], "analysis[0].config: expected the analysis"),
    ("extra", lambda a: [{**a[0], "who": "me"}], "analysis[0].who"),
    ("dark-missing", lambda a: [{**a[0], "config": {"calibration": {"dark": {DET: 4}}}}],
     f"analysis[0].config.calibration.dark.{DET}: expected a recorded dark version of {DET} (none), found 4"),
]


@pytest.mark.parametrize(("name", "edit", "contains"), ANALYSIS, ids=[c[0] for c in ANALYSIS])
def test_a_malformed_analysis_list_is_one_line(tmp_path: Path, name: str, edit: Callable[[Any], Any],
                                               contains: str, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = versioned_blocks(26, [30])
    path = tmp_path / "bad.zarr"
    with new(path, blocks) as w:
        write_plan(w, blocks)
    edit_json(path / "zarr.json", lambda m: m["attributes"]["shotwatch"].update(
        analysis=edit(m["attributes"]["shotwatch"]["analysis"])))
    with pytest.raises(RecordingError, match="expected") as exc:
        RecordingReader(path).analysis_versions()
    assert contains in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    assert main(["info", str(path), "--json"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# --- dark versions -----------------------------------------------------------------------------


def test_dark_versions_round_trip_and_open_with_xarray(tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    blocks = versioned_blocks(27, [60, 40])
    path = tmp_path / "d.zarr"
    w = new(path, blocks)
    write_plan(w, blocks[:1], commit_each=True)
    assert w.add_dark(DET, dark(1), time=1.7e9) == 1
    assert w.add_dark(DET, dark(2, frames=100), time=1.7e9 + 60) == 2
    assert w.add_analysis({**SECTIONS, "calibration": {**SECTIONS["calibration"], "dark": {DET: 2}}},
                          first_shot=60, first_tag=-1, by="a", time=1.0) == 2
    with pytest.raises(RecordingError, match=r"calibration.dark.MPCCD-1N0-M06-004: expected a recorded dark "
                                             r"version of MPCCD-1N0-M06-004 \(1, 2\), found 3"):
        w.add_analysis({"calibration": {"dark": {DET: 3}}}, first_shot=60, first_tag=-1, by="a", time=1.0)
    with pytest.raises(ValueError, match=r"expected the detector's shape \[64, 32\], found \[32, 64\]"):
        w.add_dark(DET, dark(3, shape=(32, 64)), time=0.0)
    with pytest.raises(ValueError, match="expected a detector the recording knows"):
        w.add_dark("other-detector", dark(3), time=0.0)
    write_plan(w, blocks, start=1)
    w.close()
    reader = RecordingReader(path)
    assert {d: [(v.version, v.frames) for v in vs] for d, vs in reader.darks().items()} == {DET: [(1, 600), (2, 100)]}
    got, want = reader.dark(DET, 2), dark(2, frames=100)
    np.testing.assert_array_equal(got.mean, want.mean)
    np.testing.assert_array_equal(got.std, want.std)
    assert (got.frames, got.first_tag, got.last_tag, got.mean.dtype) == (100, want.first_tag, want.last_tag,
                                                                         np.float32)
    assert reader.analysis_versions()[1].config["calibration"]["dark"] == {DET: 2}
    with pytest.raises(RecordingError, match="expected a recorded dark version"):
        reader.dark(DET, 3)
    tree = xr.open_datatree(path, engine="zarr", consolidated=False)
    node = tree[f"dark/{DET}/v2"]
    assert node["mean"].dims == ("y", "x") and node["mean"].shape == (64, 32)
    np.testing.assert_array_equal(node["std"].values, want.std)
    assert tree["tag"].shape == (100,)
    plain = zarr.open_group(path, mode="r")
    assert plain[f"dark/{DET}/v1"].attrs["frames"] == 600


def dark_recording(tmp_path: Path) -> Path:
    blocks = versioned_blocks(28, [30])
    path = tmp_path / "d.zarr"
    with new(path, blocks) as w:
        write_plan(w, blocks)
        w.add_dark(DET, dark(1), time=1.0)
    return path


DARK_DAMAGE: list[Any] = [
    ("attrs", lambda v: edit_json(v / "zarr.json", lambda m: m["attributes"].update(frames=0)),
     RecordingError, "dark/MPCCD-1N0-M06-004/v1: expected attributes"),
    ("dtype", lambda v: edit_json(v / "std" / "zarr.json", lambda m: m.update(data_type="float64")),
     RecordingError, "v1/std: expected a float32 (y, x) array, found float64[64, 32]"),
    ("shape", lambda v: [edit_json(v / a / "zarr.json", lambda m: m.update(shape=[32, 32])) for a in ("mean", "std")],
     RecordingError, r"expected the detector's shape [64, 32], found [32, 32]"),
    ("mismatch", lambda v: edit_json(v / "std" / "zarr.json", lambda m: m.update(shape=[64, 16])),
     RecordingError, "expected mean and std of one shape, found [64, 32] and [64, 16]"),
    ("missing-chunk", lambda v: (v / "mean" / "c.0.0").unlink(),
     RecordingError, "mean: expected 1 chunk file(s) for a dark of 64 x 32 pixels, found 0"),
    ("fifo", lambda v: ((v / "mean" / "c.0.0").unlink(), __import__("os").mkfifo(v / "mean" / "c.0.0")),
     RecordingError, "as chunk c.0.0, found a FIFO"),
    ("garbage", lambda v: (v / "std" / "c.0.0").write_bytes(b"\x02\x01" + b"\x00" * 30),
     RecordingReadError, "std: expected a readable chunk c.0.0, found it damaged"),
]


@pytest.mark.parametrize(("name", "damage", "error", "contains"), DARK_DAMAGE, ids=[c[0] for c in DARK_DAMAGE])
def test_a_damaged_dark_version_is_refused_in_one_line(tmp_path: Path, name: str, damage: Callable[[Path], Any],
                                                       error: type[Exception], contains: str) -> None:
    path = dark_recording(tmp_path)
    damage(path / "dark" / DET / "v1")
    reader = RecordingReader(path)  # the shots stay readable
    with pytest.raises(error) as exc:
        reader.dark(DET, 1)
    assert contains in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_a_dark_version_a_crash_left_half_built_is_invisible_and_repaired(tmp_path: Path) -> None:
    path = dark_recording(tmp_path)
    half = path / "dark" / DET / ".v2.0123abcd"
    shutil.copytree(path / "dark" / DET / "v1", half)
    (half / "std" / "c.0.0").unlink()
    assert [v.version for v in RecordingReader(path).darks()[DET]] == [1]
    edit_root(path, closed=False)
    assert repair(path)["temp_files_removed"] == 1 and not half.exists()


# --- info ---------------------------------------------------------------------------------------


def test_info_shows_analysis_and_darks_as_interface_md_lays_them_out(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    blocks = versioned_blocks(29, [40, 20])
    path = tmp_path / "i.zarr"
    with new(path, blocks) as w:
        write_plan(w, blocks[:1], commit_each=True)
        w.add_dark(DET, dark(4), time=5.0)
        w.add_analysis(changed(0.2), first_shot=40, first_tag=int(blocks[1].tags[0]), by="a", time=6.0)
        write_plan(w, blocks, start=1)
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["analysis"] == [
        {"version": 1, "first_shot": 0, "first_tag": int(blocks[0].tags[0]), "config": SECTIONS},
        {"version": 2, "first_shot": 40, "first_tag": int(blocks[1].tags[0]), "config": changed(0.2)}]
    d = dark(4)
    assert info["darks"] == {DET: [{"version": 1, "frames": 600, "first_tag": d.first_tag, "last_tag": d.last_tag}]}
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"analysis   v1 from shot 0 (tag {int(blocks[0].tags[0])}): i0, scan" in out
    assert f"analysis   v2 from shot 40 (tag {int(blocks[1].tags[0])}): i0, scan" in out
    assert f"dark       {DET} v1: 600 frames, tags {d.first_tag} .. {d.last_tag}" in out


# --- dark files ----------------------------------------------------------------------------------


def test_a_dark_file_round_trips(tmp_path: Path) -> None:
    darks = {DET: dark(5), "xfel/odd name": dark(6, shape=(8, 4), frames=10)}
    path = tmp_path / "dark.zarr"
    write_dark_file(path, darks, source={"kind": "sim", "run": 7})
    got = read_dark_file(path)
    assert sorted(got) == sorted(darks)
    for det, frame in darks.items():
        np.testing.assert_array_equal(got[det].mean, frame.mean)
        np.testing.assert_array_equal(got[det].std, frame.std)
        assert (got[det].frames, got[det].first_tag, got[det].last_tag) == (frame.frames, frame.first_tag,
                                                                            frame.last_tag)
    root = zarr.open_group(path, mode="r")
    assert root.attrs["shotwatch"]["format"] == "shotwatch.dark" and root.attrs["shotwatch"]["source"]["run"] == 7
    assert root["xfel%2Fodd%20name"].attrs["name"] == "xfel/odd name"
    assert root[f"{DET}/mean"].metadata.dimension_names == ("y", "x")
    with pytest.raises(RecordingError, match="expected a new dark file path, found an existing one"):
        write_dark_file(path, darks, source={})
    with pytest.raises(ValueError, match="expected mean and std of one shape"):
        write_dark_file(tmp_path / "bad.zarr", {DET: DarkFrame(darks[DET].mean, darks[DET].std[:4], 1, 0, 0)},
                        source={})
    assert not (tmp_path / "bad.zarr").exists()


def _dark_file(tmp_path: Path) -> Path:
    path = tmp_path / "dark.zarr"
    write_dark_file(path, {DET: dark(7)}, source={"kind": "sim"})
    return path


def _root(path: Path, **update: Any) -> None:
    edit_json(path / "zarr.json", lambda m: m["attributes"]["shotwatch"].update(update))


DARK_FILES: list[Any] = [
    ("a-recording", None, "expected format 'shotwatch.dark' version 1 (a dark file), found format "
                          "'shotwatch.recording' version 1"),
    ("nothing", lambda p: shutil.rmtree(p), "expected a shotwatch dark file (a zarr v3 group), found nothing"),
    ("version-2", lambda p: _root(p, version=2), "expected format 'shotwatch.dark' version 1 (a dark file), "
                                                 "found format 'shotwatch.dark' version 2"),
    ("no-attr", lambda p: edit_json(p / "zarr.json", lambda m: m["attributes"].clear()),
     "expected root attribute 'shotwatch' of a dark file, found none"),
    ("dtype", lambda p: edit_json(p / DET / "mean" / "zarr.json", lambda m: m.update(data_type="uint16",
                                                                                   fill_value=0)),
     "mean: expected a float32 (y, x) array, found uint16[64, 32]"),
    ("fill-not-of-dtype", lambda p: edit_json(p / DET / "mean" / "zarr.json", lambda m: m.update(data_type="uint16")),
     f"{DET}: expected valid zarr v3 metadata below it, found TypeError: Invalid type: NaN"),
    ("one-d", lambda p: edit_json(p / DET / "std" / "zarr.json", lambda m: m.update(
        shape=[2048], dimension_names=["y"], chunk_grid={"name": "regular", "configuration": {"chunk_shape": [2048]}})),
     "std: expected a float32 (y, x) array, found float32[2048]"),
    ("shapes", lambda p: edit_json(p / DET / "std" / "zarr.json", lambda m: m.update(shape=[64, 31])),
     "expected mean and std of one shape, found [64, 32] and [64, 31]"),
    ("bigger-than-disk", lambda p: [edit_json(p / DET / a / "zarr.json", lambda m: m.update(shape=[100_000, 32]))
                                    for a in ("mean", "std")],
     "mean: expected 1563 chunk file(s) for a dark of 100000 x 32 pixels, found 1"),
    ("symlink", lambda p: ((p / DET / "mean" / "c.0.0").unlink(), (p / DET / "mean" / "c.0.0").symlink_to("/dev/zero")),
     "as chunk c.0.0, found a symbolic link"),
    ("fifo-meta", lambda p: ((p / DET / "zarr.json").unlink(), __import__("os").mkfifo(p / DET / "zarr.json")),
     "zarr.json: expected a regular file, found a FIFO"),
    ("attrs", lambda p: edit_json(p / DET / "zarr.json", lambda m: m["attributes"].update(first_tag="x")),
     "expected attributes name (the detector), frames >= 1 and first_tag <= last_tag"),
]


@pytest.mark.parametrize(("name", "damage", "contains"), DARK_FILES, ids=[c[0] for c in DARK_FILES])
def test_a_bad_dark_file_is_refused_in_one_line(tmp_path: Path, name: str, damage: Callable[[Path], Any] | None,
                                                contains: str) -> None:
    if damage is None:
        blocks = versioned_blocks(30, [10])
        path = tmp_path / "rec.zarr"
        with new(path, blocks) as w:
            write_plan(w, blocks)
    else:
        path = _dark_file(tmp_path)
        damage(path)
    before = snapshot(path) if path.exists() else []
    with pytest.raises(RecordingError) as exc:
        read_dark_file(path)
    msg = str(exc.value)
    assert msg.startswith(str(path)) and "\n" not in msg and contains in msg, msg
    if path.exists():
        assert snapshot(path) == before
