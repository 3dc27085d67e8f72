"""``reduce`` layouts with channels and error bars, and ``report``, on a recording written here.

The recording is written with RecordingWriter from seeded float32 blocks (a NaN patch on one
ROI, aliases and a background-subtracted channel in its configuration, a hostile mark), so
these tests need no recorder and run in-process.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shotwatch.cli import main
from shotwatch.recording import RecordingWriter
from shotwatch.schemas import Cutout, DetectorInfo, RoiTable, ShotBlock, SourceInfo, parse_config

DET = "MPCCD-1"
PD1, PD2, MOTOR, BEAM = "bl/pd_1/charge", "bl/pd_2/charge", "bl/motor/position", "bl/beam/status"
CONFIG: dict[str, Any] = {
    "calibration": {"threshold_ev": 0.0},
    "alias": {"d1": PD1, "d2": PD2},
    "channel": [{"name": "i0sum", "expr": "d1 + d2"},
                {"name": "net", "expr": "bragg - pixels(bragg) / pixels(bg) * bg"}],
    "i0": {"name": "i0sum", "min": 0.05},
    "veto": [{"name": BEAM, "min": 0.5}],
    "roi": [{"name": "bragg", "detector": DET, "x": [0, 4], "y": [0, 4]},
            {"name": "bg", "detector": DET, "x": [8, 16], "y": [8, 12]}],
    "scan": {"name": MOTOR, "unit": "ps", "edges": {"start": 0.0, "stop": 4.0, "count": 4}},
    "pump_probe": {"mode": "tag-modulo", "cycle": 4, "on": [0]},
}


def blocks(n_blocks: int = 3, size: int = 200) -> list[ShotBlock]:
    rng = np.random.default_rng(5)
    out = []
    for k in range(n_blocks):
        tags = 1000 + 2 * np.arange(k * size, (k + 1) * size, dtype=np.int64)
        i0 = rng.gamma(4.0, 0.05, (2, size))
        bragg = rng.poisson(50.0 * (i0.sum(0) / 0.4)[:, None, None], (size, 4, 4)).astype(np.float32)
        bg = rng.poisson(5.0, (size, 4, 8)).astype(np.float32)
        bg[:, 0, :2] = np.nan  # a NaN patch: contributes 0, counted in nonfinite
        points = {PD1: i0[0], PD2: i0[1], MOTOR: rng.uniform(0, 4, size), BEAM: (rng.random(size) > 0.05) * 1.0}
        out.append(ShotBlock(tags, 1.7e9 + tags / 60.0, points,
                             {"bragg/v1": Cutout(bragg, np.ones(size, bool), DET),
                              "bg/v1": Cutout(bg, np.ones(size, bool), DET)}).validate())
    return out


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "run.zarr"
    cfg = parse_config(CONFIG, origin="test")
    table = RoiTable()
    table.apply({r.name: r for r in cfg.roi}, shot=0, tag=1000)
    source = SourceInfo(kind="sim", run=7, points=[PD1, PD2, MOTOR, BEAM],
                        detectors={DET: DetectorInfo(shape=(16, 16), dtype="float32", ev_per_adu=1.0)})
    w = RecordingWriter.create(path, config=cfg, source=source, rois=table, points=cfg.recorded_points([]))
    for b in blocks():
        w.write(b)
    w.mark("pump <b>on</b> | delay `scan` & more\nsecond line", tag=1200, time=1.7e9 + 10)
    w.close()
    return path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_json_has_channels_nonfinite_and_errors(cli: Any, rec: Path) -> None:
    code, out, err = cli("reduce", str(rec), "--json")
    assert (code, err) == (0, "")
    r = json.loads(out)
    assert r["analysis_version"] == 1 and list(r["channels"]) == ["i0sum", "net"]
    assert r["rois"]["bg"]["nonfinite"] == 2 * r["rois"]["bg"]["count"]  # two NaN pixels a shot
    assert r["channels"]["net"]["nonfinite"] == 0
    # the channel equals its definition from the ROI numbers, shot by shot; here summed
    net, bragg, bg = r["channels"]["net"], r["rois"]["bragg"], r["rois"]["bg"]
    assert net["count"] == bragg["count"] and net["sum"] == pytest.approx(bragg["sum"] - 16 / 32 * bg["sum"])
    for key in ("rois", "channels"):
        for entry in r["scan"][key].values():
            assert set(entry) == {"count", "norm", "sem", "sem_norm", "on", "off", "diff", "diff_sem", "rel", "rel_sem"}
    assert r["shots"]["vetoed"] == {"i0": r["shots"]["vetoed"]["i0"], BEAM: r["shots"]["vetoed"][BEAM]}


def test_other_analysis_has_no_version_and_flags_conflict(cli: Any, rec: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[i0]\nname = "bl/pd_1/charge"\nmin = 0.01\n[[channel]]\nname = "ratio"\nexpr = "bragg / bg"\n')
    code, out, _ = cli("reduce", str(rec), "-c", str(other), "--json")
    r = json.loads(out)
    assert code == 0 and r["analysis_version"] is None and list(r["channels"]) == ["ratio"]
    assert r["scan"] is None and "on" not in r["rois"]["bragg"]  # sections missing from -c are off
    code, out, err = cli("reduce", str(rec), "--analysis-version", "2")
    assert code == 2 and "expected one of the recording's analysis versions (1), found 2" in err
    code, out, err = cli("reduce", str(rec), "--analysis-version", "1", "-c", str(other))
    assert code == 2 and "expected -c or --analysis-version, found both" in err
    assert cli("reduce", str(rec), "--analysis-version", "1", "--json")[1] == cli("reduce", str(rec), "--json")[1]


def test_csv_columns_existing_first_then_channels_then_errors(cli: Any, rec: Path) -> None:
    code, out, _ = cli("reduce", str(rec), "--csv")
    header = out.splitlines()[0].split(",")
    base = ["count", "norm", "sem", "on.norm", "off.norm"]
    extra = ["sem_norm", "on.sem_norm", "off.sem_norm", "diff", "diff_sem", "rel", "rel_sem"]
    keys = ["bg", "bragg", "i0sum", "net"]
    assert header == ["center", *[f"{k}.{c}" for k in keys for c in base], *[f"{k}.{c}" for k in keys for c in extra]]
    r = json.loads(cli("reduce", str(rec), "--json")[1])
    rows = [line.split(",") for line in out.splitlines()[1:]]
    assert len(rows) == 4
    assert float(rows[2][header.index("net.diff_sem")]) == r["scan"]["channels"]["net"]["diff_sem"][2]


def test_per_shot_has_channel_columns_after_the_rois(cli: Any, rec: Path) -> None:
    code, out, _ = cli("reduce", str(rec), "--per-shot")
    lines = out.splitlines()
    assert lines[0] == "tag,time,i0,accepted,scan,laser_on,bg,bragg,i0sum,net"
    first = dict(zip(lines[0].split(","), lines[1].split(","), strict=True))
    assert float(first["i0"]) == float(first["i0sum"])  # i0 is the channel
    assert float(first["net"]) == pytest.approx(float(first["bragg"]) - 0.5 * float(first["bg"]), rel=1e-12)
    assert len(lines) == 601


def test_table_shows_channels_and_sem_norm(cli: Any, rec: Path) -> None:
    out = cli("reduce", str(rec))[1]
    assert "norm ± sem_norm" in out and re.search(r"^net +\d+ ", out, re.M) and "diff" in out


def test_report_is_markdown_an_elog_takes(cli: Any, rec: Path, tmp_path: Path) -> None:
    code, md, err = cli("report", str(rec))
    assert (code, err) == (0, "")
    r = json.loads(cli("reduce", str(rec), "--json")[1])
    for heading in ("# shotwatch report: `run.zarr`", "## Shots", "## ROIs and channels", "## Scan: `bl/motor/position` (ps)",
                    "### `net`", "## Marks", "## Analysis versions"):
        assert heading in md.splitlines(), heading
    assert md.count("```") % 2 == 0 and "<" not in md.replace("&lt;", "")  # no raw HTML from a mark
    assert "pump &lt;b&gt;on&lt;/b&gt; \\| delay 'scan' &amp; more second line" in md
    tables = _tables(md)
    assert all(len({len(row) for row in t}) == 1 for t in tables)  # every row as wide as its header
    keys = next(t for t in tables if t[0][0] == "key")
    bragg = next(row for row in keys if row[0] == "`bragg`")
    b = r["rois"]["bragg"]
    assert bragg[2] == str(b["count"]) and bragg[4] == f"{b['norm']:.4g} ± {b['sem_norm']:.2g}"
    assert f"| `{BEAM}` | {r['shots']['vetoed'][BEAM]} |" in md
    scan_tables = [t for t in tables if t[0][0] == "center"]
    assert len(scan_tables) == 4 and all(len(t) == 2 + 4 for t in scan_tables)
    assert "o = value, | = ± sem_norm" in md and "on − off (diff ± diff_sem)" in md
    out = tmp_path / "report.md"
    assert cli("report", str(rec), "-o", str(out))[0] == 0
    assert out.read_text().splitlines()[0] == "# shotwatch report: `run.zarr`"
    code, _, err = cli("report", str(rec), "-o", str(rec / "x.md"))
    assert code == 2 and "expected a file outside the recording" in err


def _tables(md: str) -> list[list[list[str]]]:
    tables, cur = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("| "):
            cur.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def test_text_plot_draws_gaps_and_bars() -> None:
    from shotwatch.commands._textplot import text_plot

    lines = text_plot([0.0, 1.0, 2.0, 3.0], [1.0, None, 3.0, math.nan], [0.5, None, None, 1.0], width=31, height=9)
    grid = [line.split("|", 1)[1] for line in lines[:9]]
    cols = {i for row in grid for i, ch in enumerate(row) if ch != " "}
    assert cols == {0, 20}  # bins 1 and 3 have no value: nothing drawn there
    assert sum(row[:1] == "|" for row in grid) >= 2 and any(row[:1] == "o" for row in grid)
    assert text_plot([0.0], [None], [None]) == ["(no bin has a value)"]


# --- bad input (docs/bad-inputs.md, "Analysis: masks, aliases and channels") ----------------------

ROIS_TOML = ('[[roi]]\nname = "bragg"\ndetector = "D"\nx = [0, 4]\ny = [0, 4]\n'
             '[[roi]]\nname = "bg"\ndetector = "D"\nx = [4, 8]\ny = [0, 4]\n')
BAD_CONFIGS = [
    ("unknown-name", ROIS_TOML + '[[channel]]\nname = "net"\nexpr = "bragg - bgg"\n',
     "channel[0].expr: expected the name of an ROI of this file, an alias or an earlier channel at column 9, "
     "found 'bgg'"),
    ("syntax", ROIS_TOML + '[[channel]]\nname = "net"\nexpr = "bragg - (bg"\n',
     "channel[0].expr: expected a complete expression ('(' was never closed) at column 9, found '('"),
    ("cycle", ROIS_TOML + '[[channel]]\nname = "a"\nexpr = "b + bg"\n[[channel]]\nname = "b"\nexpr = "a - bragg"\n',
     "channel[0].expr: expected no cycle between channels at column 1, found a -> b -> a"),
    ("channel-named-like-roi", ROIS_TOML + '[[channel]]\nname = "bg"\nexpr = "bragg / 2"\n',
     "channel[0].name: expected a name no ROI, alias or other channel has, found 'bg' (an ROI of this file)"),
    ("pixels-of-a-point", ROIS_TOML + '[alias]\ni0a = "bl/pd/charge"\n[[channel]]\nname = "n"\nexpr = "bragg / pixels(i0a)"\n',
     "channel[0].expr: expected pixels() of an ROI at column 16, found pixels(i0a) of an alias (a point detector)"),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_channel_configs_are_one_line_code_2(cli: Any, tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    code, out, err = cli("config", "check", str(path))
    assert (code, out) == (2, "") and err == f"shotwatch: error: {path}: {message}\n"


@pytest.mark.parametrize(("text", "message"), [
    ('[[mask]]\ndetector = "MPCCD-1"\nx = [10, 20]\ny = [0, 4]\n',
     "mask[0]: expected a rectangle inside MPCCD-1 (16 rows x 16 columns, x <= 16, y <= 16), found x = [10, 20], y = [0, 4]"),
    ('[[mask]]\ndetector = "MPCCD-9"\nx = [0, 2]\ny = [0, 4]\n',
     "mask[0].detector: expected detectors that {rec} holds (MPCCD-1), found 'MPCCD-9'"),
    ('[[channel]]\nname = "bragg"\nexpr = "bg * 2"\n',
     "channel[0].name: expected a name no ROI, alias or other channel has, found 'bragg' (an ROI of {rec})"),
    ('[[channel]]\nname = "n"\nexpr = "bragg - spot"\n',
     "channel[0].expr: expected the name of an ROI of {rec}, an alias or an earlier channel at column 9, found 'spot'"),
    ('[alias]\nx = "bl/nope"\n',
     "alias.x: expected a point detector that {rec} holds ({points}), found 'bl/nope'"),
])
def test_reduce_checks_the_analysis_against_the_recording(cli: Any, rec: Path, tmp_path: Path, text: str,
                                                          message: str) -> None:
    path = tmp_path / "a.toml"
    path.write_text(text)
    before = sorted((p, p.stat().st_mtime_ns) for p in rec.rglob("*"))
    code, out, err = cli("reduce", str(rec), "-c", str(path), "--json")
    points = ", ".join(sorted([BEAM, MOTOR, PD1, PD2]))
    assert (code, out) == (2, "") and err == f"shotwatch: error: {path}: {message.format(rec=rec, points=points)}\n"
    assert sorted((p, p.stat().st_mtime_ns) for p in rec.rglob("*")) == before  # the recording untouched


def test_division_by_zero_is_nan_never_an_error(cli: Any, rec: Path, tmp_path: Path) -> None:
    path = tmp_path / "zero.toml"
    path.write_text('[i0]\nname = "bl/pd_1/charge"\nmin = 0.01\n'
                    '[[channel]]\nname = "z"\nexpr = "bragg / (bg - bg)"\n[[channel]]\nname = "half"\nexpr = "bragg / 2"\n')
    code, out, err = cli("reduce", str(rec), "-c", str(path), "--json")
    r = json.loads(out)
    assert (code, err) == (0, "") and r["channels"]["z"]["count"] == 0 and r["channels"]["z"]["norm"] is None
    assert r["channels"]["half"]["sum"] == pytest.approx(r["rois"]["bragg"]["sum"] / 2)
    code, out, err = cli("reduce", str(rec), "-c", str(path), "--per-shot")
    assert (code, err) == (0, "") and out.splitlines()[1].split(",")[-2] == ""  # z: an empty cell


def test_record_with_aliases_channels_and_a_mask_equals_reduce(tmp_path: Path) -> None:
    # the live summary (record --summary-json) is the reduction of the recording, to the digit;
    # aliased points are recorded even where source.points leaves them out
    import os
    import subprocess
    import sys

    from shotwatch.schemas import demo_text

    text = demo_text().replace("rate = 30.0", "rate = 0").replace(
        '# points = [...]', 'points = ["xfel_mon_bpm_bl3_0_3_beamstatus/summary", "xfel_bl_3_st_5_motor_user_1/position"]')
    text = text.replace('name = "xfel_bl_3_st_5_pd_user_5_fitting_peak/voltage"', 'name = "i0sum"')
    text += ('\n[alias]\nd1 = "xfel_bl_3_st_5_pd_user_5_fitting_peak/voltage"\nd2 = "xfel_bl_3_tc_bm_1_pd/charge"\n'
             '[[channel]]\nname = "i0sum"\nexpr = "d1 + d2 / 1000"\n'
             '[[channel]]\nname = "net"\nexpr = "bragg - pixels(bragg) / pixels(background) * background"\n'
             '[[mask]]\ndetector = "MPCCD-1N0-M06-004"\nx = [184, 190]\ny = [284, 316]\n')
    (tmp_path / "c.toml").write_text(text)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "shotwatch", "record", "-c", "c.toml", "--shots", "300", "-o", "r.zarr",
                        "--summary-json", "live.json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    live = json.loads((tmp_path / "live.json").read_text())
    out = subprocess.run([sys.executable, "-m", "shotwatch", "reduce", "r.zarr", "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert live == json.loads(out.stdout)
    assert list(live["channels"]) == ["i0sum", "net"] and live["channels"]["net"]["count"] > 0
    info = subprocess.run([sys.executable, "-m", "shotwatch", "info", "r.zarr", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert json.loads(info.stdout)["points"] == sorted([
        "xfel_mon_bpm_bl3_0_3_beamstatus/summary", "xfel_bl_3_st_5_motor_user_1/position",
        "xfel_bl_3_shutter_1_open_valid/status",
        "xfel_bl_3_st_5_pd_user_5_fitting_peak/voltage", "xfel_bl_3_tc_bm_1_pd/charge"])
