"""[alias] and [[channel]]: the expression language, its namespace, and evaluation per shot.

Expected values are written out by hand (numbers in the test), never computed by the code under
test: each operator, each function, NaN propagation, x/0 and other non-finite results.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from shotwatch.reducers import Analysis, SummaryReducer, per_shot_csv, shot_table
from shotwatch.schemas import (
    I0,
    Config,
    ConfigError,
    Cutout,
    DetectorInfo,
    PointPumpProbe,
    RoiVersion,
    ShotBlock,
    Veto,
    parse_config,
)
from shotwatch.schemas.expr import Bin, Call, ExprError, Name, Neg, Num, Pixels, parse

DET = "det"
NAN = float("nan")
# per shot: ROI a (1 x 2 pixels, or 1 x 3 in version 2), ROI b (1 x 1), points p/1, p/2
A1 = [[1, 2], [3, 4], [0, 0], [5, 5]]  # a/v1 valid at shots 0, 1, 3 -> 3, 7, -, 10
A1_OK = [True, True, False, True]
A2 = [[0, 0, 0], [0, 0, 0], [2, 2, 2], [0, 0, 0]]  # a/v2 valid at shot 2 -> 6 (3 pixels)
A2_OK = [False, False, True, False]
B = [4, 0, 2, 8]
B_OK = [True, True, True, False]  # b invalid at shot 3
P1, P2 = [1.0, 2.0, NAN, 0.5], [0.5, 0.25, 1.0, 4.0]
A = [3.0, 7.0, 6.0, 10.0]  # a's value at each shot, whichever version
PIX_A = [2.0, 2.0, 3.0, 2.0]


def block() -> ShotBlock:
    cut = {
        "a/v1": Cutout(np.array(A1, np.uint16).reshape(4, 1, 2), np.array(A1_OK), DET),
        "a/v2": Cutout(np.array(A2, np.uint16).reshape(4, 1, 3), np.array(A2_OK), DET),
        "b/v1": Cutout(np.array(B, np.uint16).reshape(4, 1, 1), np.array(B_OK), DET),
    }
    return ShotBlock(np.array([10, 12, 14, 16], np.int64), np.zeros(4),
                     {"p/1": np.array(P1), "p/2": np.array(P2)}, cut).validate()


VERSIONS = {"a/v1": RoiVersion("a", 1, DET, (0, 2), (0, 1), 0, 10, 2),
            "a/v2": RoiVersion("a", 2, DET, (0, 3), (0, 1), 2, 14, 3),
            "b/v1": RoiVersion("b", 1, DET, (5, 6), (0, 1), 0, 10)}


def channel_values(*exprs: str, **extra: object) -> dict[str, list[float]]:
    channels = tuple((f"c{i}", parse(e)) for i, e in enumerate(exprs))
    a = Analysis(ev_per_adu={DET: 1.0}, aliases={"d1": "p/1", "d2": "p/2"}, channels=channels, **extra)  # type: ignore[arg-type]
    t = shot_table(block(), a, VERSIONS)
    return {k: v.tolist() for k, v in t.channels.items()}


def same(got: list[float], want: list[float]) -> bool:
    return all((math.isnan(w) and math.isnan(g)) or g == pytest.approx(w, rel=1e-12) for g, w in zip(got, want, strict=True))


# --- evaluation, operator by operator ------------------------------------------------------------


@pytest.mark.parametrize(("expr", "want"), [
    ("a + b", [7.0, 7.0, 8.0, NAN]),
    ("a - b", [-1.0, 7.0, 4.0, NAN]),
    ("a * b", [12.0, 0.0, 12.0, NAN]),
    ("a / b", [0.75, NAN, 3.0, NAN]),  # 7 / 0: NaN, never an error or an infinity
    ("-a", [-3.0, -7.0, -6.0, -10.0]),
    ("(a + 1) * 2", [8.0, 16.0, 14.0, 22.0]),
    ("a + 1 * 2", [5.0, 9.0, 8.0, 12.0]),
    ("2.5e1 - a", [22.0, 18.0, 19.0, 15.0]),
    ("abs(b - a)", [1.0, 7.0, 4.0, NAN]),
    ("sqrt(b)", [2.0, 0.0, math.sqrt(2.0), NAN]),
    ("sqrt(b - a)", [1.0, NAN, NAN, NAN]),  # negative: NaN
    ("log(b)", [math.log(4.0), NAN, math.log(2.0), NAN]),  # log 0 = -inf: NaN
    ("exp(b)", [math.exp(4.0), 1.0, math.exp(2.0), NAN]),
    ("exp(1000 * a)", [NAN, NAN, NAN, NAN]),  # overflow: NaN
    ("min(a, b, 5)", [3.0, 0.0, 2.0, NAN]),
    ("max(a, b)", [4.0, 7.0, 6.0, NAN]),  # NaN propagates through min/max too
    ("pixels(a)", PIX_A),  # the rectangle of the version valid at each shot
    ("pixels(b)", [1.0, 1.0, 1.0, NAN]),
    ("a - pixels(a) / pixels(b) * b", [-5.0, 7.0, 0.0, NAN]),
    ("d1 + d2", [1.5, 2.25, NAN, 4.5]),  # aliases: the points' values
    ("min(a / 0, 5)", [NAN, NAN, NAN, NAN]),  # an intermediate infinity is NaN, not min'd away
    ("1 / (1 / (a - a))", [NAN, NAN, NAN, NAN]),
    ("a / 0", [NAN, NAN, NAN, NAN]),
    ("0 * b / b", [0.0, NAN, 0.0, NAN]),
    ("nope_roi + 1", [NAN] * 4),  # a name no block holds (an ROI deleted earlier): NaN
])
def test_each_operator(expr: str, want: list[float]) -> None:
    got = channel_values(expr)["c0"]
    assert same(got, want), (expr, got, want)


def test_earlier_channels_and_photons() -> None:
    got = channel_values("a / 2", "c0 * c0 - b", photon_energy_ev=2.0)
    # ROI values in photons: a = 1.5, 3.5, 3, 5; b = 2, 0, 1, -
    assert same(got["c0"], [0.75, 1.75, 1.5, 2.5])
    assert same(got["c1"], [0.5625 - 2.0, 3.0625, 1.25, NAN])


def test_named_values_stand_for_points() -> None:
    # I0 a channel (a sum of two diodes), a veto on an alias, the scan a channel, pump-probe a channel
    channels = (("i0sum", parse("d1 + d2")), ("delay", parse("d2 * 10")), ("gate", parse("b - 1")))
    a = Analysis(ev_per_adu={DET: 1.0}, aliases={"d1": "p/1", "d2": "p/2"}, channels=channels,
                 i0=I0(name="i0sum", min=1.0, max=4.0), vetoes=(Veto(name="d2", max=2.0),),
                 scan_name="delay", edges=(0.0, 5.0, 50.0), pump_probe=PointPumpProbe(name="gate", threshold=0.0))
    t = shot_table(block(), a, VERSIONS)
    assert same(t.i0.tolist(), [1.5, 2.25, NAN, 4.5])
    assert t.vetoed["i0"].tolist() == [False, False, True, True]
    assert t.vetoed["d2"].tolist() == [False, False, False, True]
    assert t.accepted.tolist() == [True, True, False, False]
    assert same(t.scan.tolist(), [5.0, 2.5, 10.0, 40.0]) and t.bin.tolist() == [1, 0, 1, 1]
    assert t.laser.tolist() == [1, 0, 1, -1]  # gate = b - 1: 3, -1, 1, NaN (undecided)


def test_channel_statistics_and_per_shot_columns() -> None:
    channels = (("sub", parse("a - b")),)
    a = Analysis(ev_per_adu={DET: 1.0}, channels=channels, i0=I0(name="p/2", min=0.1))
    r = SummaryReducer(a)
    out = r.result(r.update(r.init(), block(), versions=VERSIONS))
    # sub = -1, 7, 4, NaN with I0 0.5, 0.25, 1, 4: S = the first three
    c = out["channels"]["sub"]
    assert c["count"] == 3 and c["sum"] == 10.0 and c["norm"] == pytest.approx(10 / 1.75)
    assert c["mean_ratio"] == pytest.approx((-2 + 28 + 4) / 3) and c["nonfinite"] == 0
    norm = 10 / 1.75
    d2 = (-1 - norm * 0.5) ** 2 + (7 - norm * 0.25) ** 2 + (4 - norm * 1.0) ** 2
    assert c["sem_norm"] == pytest.approx(math.sqrt(3 / 2 * d2) / 1.75)
    rows = list(per_shot_csv([block()], a, roi_names=["a", "b"], versions=VERSIONS))
    assert rows[0] == "tag,time,i0,accepted,scan,laser_on,a,b,sub\n"
    assert rows[1].endswith(",3.0,4.0,-1.0\n") and rows[4].endswith(",10.0,,\n")


# --- the parser ---------------------------------------------------------------------------------


def test_parse_tree() -> None:
    assert parse(" a - pixels(a)/2") == Bin("-", Name("a", 2), Bin("/", Pixels("a", 13), Num(2.0, 16), 6), 2)
    assert parse("-min(x, 1)") == Neg(Call("min", (Name("x", 6), Num(1.0, 9)), 2), 1)


@pytest.mark.parametrize(("text", "expected", "column"), [
    ("bragg -* bg", "a complete expression", 8),
    ("bragg +", "a complete expression", None),
    ("(bragg", "a complete expression", 1),
    ("", "an expression", None),
    ("bragg.real", "a number, a name", 1),
    ("bragg[0]", "names, numbers", 6),
    ("bragg ** 2", "one of + - * /", 7),
    ("bragg // 2", "one of + - * /", 7),
    ("bragg % 2", "names, numbers", 7),
    ("__import__(1)", "a call of abs", 1),
    ("open(bragg)", "a call of abs", 1),
    ("bragg.__class__", "a number, a name", 1),
    ("lambda: 1", "names, numbers", 7),
    ("'s'", "names, numbers", 1),
    ("brägg", "names, numbers", 3),
    ("sqrt(a, b)", "sqrt() with one argument", 1),
    ("min(a)", "min() with two or more", 1),
    ("max(a, b=1)", "names, numbers", 9),
    ("max(a, *b)", "max() with plain arguments", 1),
    ("pixels(1)", "pixels(ROI) with one ROI name", 1),
    ("pixels(a, b)", "pixels(ROI) with one ROI name", 1),
    ("log", "log(...) called with arguments", 1),
    ("a if b else c", "a number, a name", 1),
    ("a < b", "names, numbers", 3),
    ("True", "a number or a name", 1),
    ("1e999", "a finite number", 1),
    ("a # comment", "names, numbers", 3),
    ("a\nb", "names, numbers", 2),
    ("-" * 200 + "a", "an expression nested at most 64 deep", 66),
    ("x" * 1001, "at most 1000 characters", None),
])
def test_parse_refuses(text: str, expected: str, column: int | None) -> None:
    with pytest.raises(ExprError) as info:
        parse(text)
    assert f"expected {expected}" in str(info.value) and info.value.column == column, str(info.value)


# --- one namespace, checked at load and against a recording's ROIs ----------------------------------

ROIS = ('[[roi]]\nname = "bragg"\ndetector = "D"\nx = [0, 4]\ny = [0, 4]\n'
        '[[roi]]\nname = "bg"\ndetector = "D"\nx = [4, 8]\ny = [0, 4]\n')


def load(text: str) -> Config:
    return parse_config(tomllib.loads(text), origin="f.toml")


@pytest.mark.parametrize(("text", "where", "what"), [
    (ROIS + '[[channel]]\nname = "s"\nexpr = "bragx - bg"\n', "channel[0].expr",
     "expected the name of an ROI of this file, an alias or an earlier channel at column 1, found 'bragx'"),
    (ROIS + '[[channel]]\nname = "s"\nexpr = "bragg -* bg"\n', "channel[0].expr",
     "expected a complete expression (invalid syntax) at column 8, found '*'"),
    (ROIS + '[[channel]]\nname = "a"\nexpr = "b + 1"\n[[channel]]\nname = "b"\nexpr = "a * 2"\n',
     "channel[0].expr", "expected no cycle between channels at column 1, found a -> b -> a"),
    (ROIS + '[[channel]]\nname = "a"\nexpr = "a + 1"\n', "channel[0].expr", "found a -> a"),
    (ROIS + '[[channel]]\nname = "a"\nexpr = "b + 1"\n[[channel]]\nname = "b"\nexpr = "bg"\n', "channel[0].expr",
     "expected an earlier channel at column 1, found 'b' (channel[1], defined after this one)"),
    (ROIS + '[[channel]]\nname = "bragg"\nexpr = "bg"\n', "channel[0].name",
     "expected a name no ROI, alias or other channel has, found 'bragg' (an ROI of this file)"),
    (ROIS + '[alias]\nbg = "p/q"\n', "alias.bg", "expected a name no ROI has, found 'bg'"),
    (ROIS + '[alias]\nx = "p/q"\n[[channel]]\nname = "x"\nexpr = "1"\n', "channel[0].name", "(an alias)"),
    (ROIS + '[alias]\nd = "p/q"\n[[channel]]\nname = "c"\nexpr = "bg + pixels(d)"\n', "channel[0].expr",
     "expected pixels() of an ROI at column 13, found pixels(d) of an alias (a point detector)"),
    (ROIS + '[[channel]]\nname = "c"\nexpr = "1"\n[[channel]]\nname = "e"\nexpr = "pixels(c)"\n', "channel[1].expr",
     "found pixels(c) of a channel"),
    (ROIS + '[[channel]]\nname = "c"\nexpr = "pixels(nope)"\n', "channel[0].expr",
     "expected pixels() of an ROI of this file at column 8, found 'nope'"),
    (ROIS + '[[channel]]\nname = "time"\nexpr = "bg"\n', "channel[0].name", "expected a name other than"),
    (ROIS + '[[channel]]\nname = "a-b"\nexpr = "bg"\n', "channel[0].name", "expected a name made of"),
    (ROIS + '[alias]\ntag = "x"\n', "alias.tag", "expected a name other than"),
    (ROIS + '[alias]\nx = ""\n', "alias.x", "at least 1 character"),
    ('[[channel]]\nname = "c"\nexpr = "a - i0"\n', "channel[0].expr", "found 'i0'"),
    (ROIS + '[[channel]]\nname = "c"\nexpr = "1"\n[[channel]]\nname = "c"\nexpr = "2"\n', "channel",
     "expected unique names"),
    ('[[roi]]\nname = "scan"\ndetector = "D"\nx = [0, 4]\ny = [0, 4]\n', "roi[0].name", "expected a name other than"),
    ('[alarm]\nbeam = "beam"\n', "alarm.beam", "expected the name of a [[veto]] (none), found 'beam'"),
])
def test_namespace_errors_name_the_key_and_column(text: str, where: str, what: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(text)
    line = str(info.value)
    assert line.startswith(f"f.toml: {where}: ") and what in line and "\n" not in line, line


def test_names_deferred_without_rois_then_checked_against_a_recording() -> None:
    # an analysis file for reduce -c may have no [[roi]]: ROI names are checked where the ROIs are known
    cfg = load('[alias]\nd = "p/1"\n[[channel]]\nname = "s"\nexpr = "bragg - bg * d"\n[i0]\nname = "s"\nmin = 1\n')
    dets = {DET: DetectorInfo(shape=(8, 8), dtype="uint16", ev_per_adu=1.0)}
    Analysis.from_config(cfg, detectors=dets, roi_names=["bragg", "bg"])
    with pytest.raises(ConfigError, match=r"^rec.zarr: channel\[0\]\.expr: expected the name of an ROI of "
                                          r"rec.zarr, an alias or an earlier channel at column 9, found 'bg'$"):
        Analysis.from_config(cfg, detectors=dets, roi_names=["bragg"], origin="rec.zarr")
    # the points it reads: the alias's (a channel reads none of its own)
    assert cfg.analysis_point_keys() == [("alias.d", "p/1")]


def test_points_to_record_include_aliases() -> None:
    cfg = load('[source]\npoints = ["p/0"]\n[alias]\nd = "p/1"\n[i0]\nname = "d"\nmin = 1\n'
               '[[veto]]\nname = "p/2"\n[scan]\nname = "p/3"\nedges = [0, 1]\n')
    assert cfg.analysis_points() == ["p/2", "p/3", "p/1"]
    assert cfg.recorded_points(["p/0", "p/9"]) == ["p/0", "p/2", "p/3", "p/1"]
    everything = load('[alias]\nd = "p/1"\n')  # sim without source.points: all it offers
    assert everything.recorded_points(["p/0", "p/9"]) == ["p/0", "p/9", "p/1"]


def test_dark_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    from shotwatch.schemas import load_config

    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "a.toml"
    path.write_text('[calibration]\ndark = "darks/d1.zarr"\ndark_noise_max_adu = 8.0\n')
    assert load_config(path).calibration.dark == str(tmp_path / "cfg" / "darks" / "d1.zarr")
    path.write_text('[calibration]\ndark = { "MPCCD-1" = 2 }\n')  # a recording's dark version
    assert load_config(path).calibration.dark == {"MPCCD-1": 2}
