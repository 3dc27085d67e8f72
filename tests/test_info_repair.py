"""``shotwatch info REC [--json]`` and ``shotwatch repair REC`` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shotwatch.cli import main
from shotwatch.recording import RecordingReader
from test_recording import POINTS, crash, new_writer, per_shot_lengths, versioned_blocks, write_plan

INFO_KEYS = ["path", "format_version", "committed", "closed", "tags", "source", "detectors", "points", "rois",
             "analysis", "darks", "frames", "marks", "bytes"]


def crashed_recording(tmp_path: Path) -> tuple[Path, int]:
    """A recording whose writer died after writing (not committing) a tail, with a stray temp file."""
    blocks = versioned_blocks(21, [100, 80, 60, 4500, 50])
    path = tmp_path / "crashed.zarr"
    writer = new_writer(path, blocks, commit_seconds=3600.0)
    write_plan(writer, blocks[:4], commit_each=True)
    committed = writer.committed
    write_plan(writer, blocks, start=4)
    writer._write_data(writer._pending, committed, dict(writer._frames_done))  # data past `committed`, as a crash leaves
    (path / "tag" / "zarr.json.0123abcd.partial").write_bytes(b"{")
    crash(writer)
    return path, committed


def test_info_json_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, committed = crashed_recording(tmp_path)
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert list(info) == INFO_KEYS
    assert info["committed"] == committed and info["closed"] is False and info["format_version"] == 1
    assert info["points"] == sorted(POINTS)
    assert [v["version"] for v in info["rois"]["a"]] == [1, 2]
    assert set(info["tags"]) == {"first", "last", "gaps"}
    assert info["detectors"]["MPCCD-1N0-M06-004"]["shape"] == [64, 32]


def test_info_summary_is_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, committed = crashed_recording(tmp_path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{committed} committed" in out and "shotwatch repair" in out
    assert "roi        a v2 on MPCCD-1N0-M06-004: x [2, 8) y [4, 8)" in out
    assert "frames     MPCCD-1N0-M06-004:" in out


def test_info_of_nothing_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tmp_path / "missing.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("shotwatch: error: ") and "missing.zarr" in err and err.count("\n") == 1


def test_repair_trims_closes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    xr = pytest.importorskip("xarray")
    path, committed = crashed_recording(tmp_path)
    assert len(set(per_shot_lengths(path).values())) == 1 and per_shot_lengths(path)["tag"] > committed
    assert main(["repair", str(path)]) == 0
    out = capsys.readouterr().out
    assert "tag: trimmed from" in out and "removed 1 temporary file" in out
    assert out.strip().endswith(f"repaired: {committed} committed shots, closed")
    assert set(per_shot_lengths(path).values()) == {committed}
    assert not list(path.rglob("*.partial"))
    assert RecordingReader(path).closed
    tree = xr.open_datatree(path, engine="zarr", consolidated=False)
    assert tree["tag"].shape == (committed,) and tree["roi/a/v2/valid"].shape == (committed,)
    assert main(["repair", str(path)]) == 0
    assert "nothing to repair" in capsys.readouterr().out
