"""`shotwatch run | console | replay` up to the point where the screen would be taken."""

from __future__ import annotations

from pathlib import Path

import pytest

from shotwatch.cli import build_parser, main


def test_flags_parse_as_interface_md_says() -> None:
    parser = build_parser()
    run = parser.parse_args(["run", "-c", "x.toml", "-o", "out.zarr", "--refresh", "2", "--low-bandwidth"])
    assert (run.config, run.out, run.refresh, run.low_bandwidth) == ("x.toml", "out.zarr", 2.0, True)
    con = parser.parse_args(["console", "--connect", "tcp://127.0.0.1:5561", "--read-only"])
    assert (con.connect, con.read_only, con.refresh, con.low_bandwidth) == ("tcp://127.0.0.1:5561", True, None, False)
    rep = parser.parse_args(["replay", "r.zarr", "--max"])
    assert (rep.recording, rep.max, rep.speed) == ("r.zarr", True, 1.0)
    assert parser.parse_args(["replay", "r.zarr", "--speed", "4"]).speed == 4.0


@pytest.mark.parametrize("argv", [
    ["run", "--refresh", "0"], ["console", "--refresh", "fast"], ["replay", "r.zarr", "--speed", "2", "--max"],
    ["replay", "r.zarr", "--speed", "-1"],
])
def test_bad_flags_exit_2_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("shotwatch: error:") and err.count("\n") == 1


def test_replay_of_nothing_and_console_without_recorder_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "none.zarr")]) == 2
    assert "none.zarr" in capsys.readouterr().err
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert main(["console"]) == 2
    err = capsys.readouterr().err
    assert "expected a running recorder" in err and err.count("\n") == 1


def test_run_with_a_bad_config_exits_2_before_taking_the_screen(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[i0]\nname = 'x'\nmin = -1\n")
    assert main(["run", "-c", str(bad), "-o", str(tmp_path / "r.zarr")]) == 2
    assert "i0.min" in capsys.readouterr().err
