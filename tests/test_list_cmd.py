"""``shotwatch list``: run, array detectors and point detectors the source offers."""

from __future__ import annotations

from pathlib import Path

import pytest

from shotwatch.cli import main
from shotwatch.commands.list_cmd import format_listing
from shotwatch.schemas import DetectorInfo, SourceInfo


def test_demo_lists_detector_and_points(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("source sim, run ")
    assert "MPCCD-1N0-M06-004  1024 x 512  float32  10.95 eV/ADU" in out
    assert "point detectors (16 of 16):" in out
    for name in ("xfel_bl_3_st_5_pd_user_5_fitting_peak/voltage", "xfel_mon_bpm_bl3_0_3_beamstatus/summary",
                 "xfel_bl_3_st_5_motor_facility_14/position"):
        assert f"  {name}\n" in out


def test_filter_is_a_case_insensitive_substring(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "MOTOR_USER_1"]) == 0
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert lines == ["xfel_bl_3_st_5_motor_user_1/position", "xfel_bl_3_st_5_motor_user_15/position",
                     "xfel_bl_3_st_5_motor_user_18/position"]
    assert "array detectors (0 of 1):" in out
    assert main(["list", "mpccd"]) == 0
    assert "MPCCD-1N0-M06-004" in capsys.readouterr().out


def test_config_with_unknown_point_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[source]\npoints = ["no_such/thing"]\n')
    assert main(["list", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(cfg) in err and "no_such/thing" in err
    assert "xfel_bl_3_tc_bm_1_pd/charge" in err  # the names that exist


def test_format_listing_sorts_naturally_and_handles_unknown_run() -> None:
    info = SourceInfo(kind="sacla", detectors={"D-2": DetectorInfo(shape=(8, 4), dtype="uint16", ev_per_adu=1.0)},
                      points=["m_10", "m_2"])
    text = format_listing(info)
    assert text.splitlines()[0] == "source sacla, run unknown"
    assert text.index("m_2") < text.index("m_10")
    assert "D-2  8 x 4  uint16  1 eV/ADU" in text


def test_replay_config_lists_the_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_replay import record

    rec = record(tmp_path / "r.zarr", shots=120, frames_every=0)
    cfg = tmp_path / "replay.toml"
    cfg.write_text(f'[source]\nkind = "replay"\npath = "{rec}"\n')
    assert main(["list", "-c", str(cfg), "beamstatus"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("source replay, run 88")
    assert "MPCCD-1N0-M06-004" not in out  # filtered out
    assert "  xfel_mon_bpm_bl3_0_3_beamstatus/summary\n" in out
