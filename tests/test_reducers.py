"""Hand-computed cases for shot_table, SummaryReducer and the text outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from shotwatch.reducers import Analysis, SummaryReducer, format_table, per_shot_csv, scan_csv, shot_table
from shotwatch.reducers._sums import roi_sums
from shotwatch.schemas import (
    I0,
    Calibration,
    Config,
    ConfigError,
    Cutout,
    PointPumpProbe,
    ShotBlock,
    TagModuloPumpProbe,
    Veto,
)

DET = "det"
PD = "pd/charge"
BEAM = "beam/status"
MOTOR = "motor/position"
SHUT = "laser/shutter"


def block(tags: list[int], points: dict[str, list[float]] | None = None,
          cutouts: dict[str, tuple[list[float], list[bool]]] | None = None) -> ShotBlock:
    """A block whose ROIs are 1x1 cutouts holding the given ADU (uint16)."""
    n = len(tags)
    cuts = {k: Cutout(np.array(v, np.uint16).reshape(n, 1, 1), np.array(ok, bool), DET)
            for k, (v, ok) in (cutouts or {}).items()}
    return ShotBlock(np.array(tags, np.int64), np.arange(n, dtype=np.float64) + 1.7e9,
                     {k: np.array(v, np.float64) for k, v in (points or {}).items()}, cuts).validate()


def reduce(analysis: Analysis, *blocks: ShotBlock) -> dict:
    r = SummaryReducer(analysis)
    s = r.init()
    for b in blocks:
        s = r.update(s, b)
    out = r.result(s)
    json.dumps(out, allow_nan=False)  # the layout is always valid JSON
    return out


def full_analysis(**kw: object) -> Analysis:
    base: dict[str, object] = dict(
        ev_per_adu={DET: 1.0}, i0=I0(name=PD, min=1.0, max=10.0),
        vetoes=(Veto(name=BEAM, min=0.5),), scan_name=MOTOR, edges=(0.0, 1.0, 2.0),
        pump_probe=TagModuloPumpProbe(cycle=2, on=[0]),
    )
    base.update(kw)
    return Analysis(**base)  # type: ignore[arg-type]


# --- calibration --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint8", "int32", "float32", "float64"])
def test_calibrated_sum_threshold_and_photons(dtype: str) -> None:
    # ADU 1, 5, 10, 0 at 2 eV/ADU = 2, 10, 20, 0 eV; threshold 10 keeps 10 + 20 (10 is not below)
    pix = np.array([[[1, 5], [10, 0]]], dtype)
    a = Analysis(ev_per_adu={DET: 2.0}, threshold_ev=10.0, photon_energy_ev=5.0)
    b = ShotBlock(np.array([2], np.int64), np.array([0.0]), {}, {"r/v1": Cutout(pix, np.array([True]), DET)})
    assert shot_table(b, a).values["r/v1"].tolist() == [6.0]
    assert roi_sums(pix, ev_per_adu=2.0, threshold_ev=None).tolist() == [32.0]


def test_integer_shortcut_matches_float_definition_at_the_cutoff() -> None:
    rng = np.random.default_rng(3)
    pix = rng.integers(0, 400, (50, 7, 9)).astype(np.uint16)
    for g, thr in [(3.65, 365.0), (0.1, 30.0), (10.95, 1000.0), (1 / 3, 33.0)]:
        e = pix.astype(np.float64) * g
        ref = np.where(e < thr, 0.0, e).sum(axis=(1, 2))
        np.testing.assert_allclose(roi_sums(pix, ev_per_adu=g, threshold_ev=thr), ref, rtol=1e-12)
        f = pix.astype(np.float32)
        np.testing.assert_allclose(roi_sums(f, ev_per_adu=g, threshold_ev=thr), ref, rtol=1e-12)


def test_large_sums_stay_exact() -> None:
    pix = np.full((2, 64, 64), 65535, np.uint16)  # 2.7e8 ADU: beyond float32's exact range
    assert roi_sums(pix, ev_per_adu=1.0, threshold_ev=1.0).tolist() == [65535.0 * 4096] * 2


def test_nan_pixel_makes_value_nan_and_invalid_is_nan() -> None:
    pix = np.array([[[1.0, np.nan]], [[2.0, 3.0]], [[-np.inf, 3.0]], [[np.inf, 3.0]]], np.float32)
    a = Analysis(ev_per_adu={DET: 1.0}, threshold_ev=0.5)
    b = ShotBlock(np.array([2, 4, 6, 8], np.int64), np.zeros(4), {},
                  {"r/v1": Cutout(pix, np.array([True, False, True, True]), DET)})
    v = shot_table(b, a).values["r/v1"]
    assert math.isnan(v[0]) and math.isnan(v[1])  # NaN is not below the threshold: kept
    assert v[2] == 3.0 and v[3] == np.inf  # -inf is below: zeroed


def test_ev_per_adu_override_and_missing_detector() -> None:
    cfg = Config(calibration=Calibration(ev_per_adu={DET: 4.0}))
    a = Analysis.from_config(cfg, ev_per_adu={DET: 1.0, "other": 2.0})
    assert dict(a.ev_per_adu) == {DET: 4.0, "other": 2.0}
    b = block([2], cutouts={"r/v1": ([3], [True])})
    assert shot_table(b, a).values["r/v1"].tolist() == [12.0]
    with pytest.raises(ConfigError, match="det"):
        shot_table(b, Analysis(ev_per_adu={"other": 1.0}))
    # no valid shot: nothing to calibrate, no error
    assert math.isnan(shot_table(block([2], cutouts={"r/v1": ([0], [False])}), Analysis()).values["r/v1"][0])


# --- shot table ---------------------------------------------------------------------------


def test_shot_table_columns() -> None:
    a = full_analysis(scan_scale=0.5, scan_offset=0.25, pump_probe=PointPumpProbe(name=SHUT, threshold=0.5))
    b = block([10, 12, 14, 16], {PD: [2.0, 0.5, np.nan, 11.0], MOTOR: [0.0, 3.5, np.nan, 1.0],
                                 SHUT: [1.0, 0.0, np.nan, 0.5]})
    t = shot_table(b, a)
    assert t.vetoed["i0"].tolist() == [False, True, True, True]
    assert t.vetoed[BEAM].tolist() == [True] * 4  # missing point: NaN for every shot
    assert t.accepted.tolist() == [False] * 4
    assert t.scan.tolist()[:2] == [0.25, 2.0] and t.bin.tolist() == [0, 1, -1, 0]
    assert t.laser.tolist() == [1, 0, -1, 0]
    assert np.isnan(shot_table(b, Analysis()).i0).all()
    assert shot_table(b, Analysis()).laser.tolist() == [-1] * 4


def test_veto_bounds() -> None:
    a = Analysis(vetoes=(Veto(name=BEAM, min=0.5), Veto(name=PD, max=2.0), Veto(name=MOTOR)))
    b = block([2, 4, 6], {BEAM: [np.inf, 0.4, np.nan], PD: [-np.inf, 2.0, 2.5], MOTOR: [1.0, np.inf, np.nan]})
    t = shot_table(b, a)
    assert t.vetoed[BEAM].tolist() == [False, True, True]
    assert t.vetoed[PD].tolist() == [False, False, True]
    assert t.vetoed[MOTOR].tolist() == [False, False, True]


# --- summary ------------------------------------------------------------------------------


def test_no_shots_is_null() -> None:
    a = full_analysis()
    for out in (reduce(a), reduce(a, block([], {}))):
        assert out["shots"] == {"total": 0, "accepted": 0, "vetoed": {"i0": 0, BEAM: 0}}
        assert out["rois"] == {}
        assert out["scan"]["outside"] == 0 and out["scan"]["centers"] == [0.5, 1.5]
    # a ROI with valid shots but none accepted: count 0, every statistic null
    out = reduce(a, block([2], {PD: [0.1], BEAM: [1.0], MOTOR: [0.5]}, {"r/v1": ([5], [True])}))
    assert out["rois"]["r"] == {"count": 0, "sum": None, "mean": None, "norm": None, "mean_ratio": None,
                                "on": {"count": 0, "norm": None}, "off": {"count": 0, "norm": None}}
    assert out["scan"]["rois"]["r"]["sem"] == [None, None]


def test_hand_computed_statistics() -> None:
    a = full_analysis(pump_probe=TagModuloPumpProbe(cycle=4, on=[0]))
    b = block([4, 6, 8, 10, 12],
              {PD: [2.0, 4.0, 1.0, 5.0, 0.5], BEAM: [1.0, 1.0, 1.0, 0.0, 1.0], MOTOR: [0.5, 0.7, 2.0, 0.1, 1.0]},
              {"r/v1": ([4, 4, 3, 9, 1], [True, True, True, True, True])})
    out = reduce(a, b)
    # accepted: tags 4, 6, 8 (tag 10 beam veto, tag 12 i0 veto)
    assert out["shots"] == {"total": 5, "accepted": 3, "vetoed": {"i0": 1, BEAM: 1}}
    r = out["rois"]["r"]
    assert r["count"] == 3 and r["sum"] == 11.0 and r["mean"] == pytest.approx(11 / 3)
    assert r["norm"] == pytest.approx(11 / 7)
    assert r["mean_ratio"] == pytest.approx((2 + 1 + 3) / 3)
    assert r["on"] == {"count": 2, "norm": pytest.approx(7 / 3)}  # tags 4, 8
    assert r["off"] == {"count": 1, "norm": pytest.approx(1.0)}  # tag 6
    s = out["scan"]
    assert s["outside"] == 0  # 2.0 is the last edge: in the last bin
    rb = s["rois"]["r"]
    assert rb["count"] == [2, 1]
    assert rb["norm"] == [pytest.approx(8 / 6), pytest.approx(3.0)]
    assert rb["sem"][0] == pytest.approx(np.std([2.0, 1.0], ddof=1) / math.sqrt(2))
    assert rb["sem"][1] is None  # one shot
    assert rb["on"]["count"] == [1, 1] and rb["off"]["count"] == [1, 0]
    assert rb["off"]["norm"] == [pytest.approx(1.0), None]


def test_outside_counts_nan_and_out_of_range_scan() -> None:
    a = full_analysis()
    b = block([2, 4, 6, 8, 10], {PD: [2.0] * 5, BEAM: [1.0] * 5, MOTOR: [np.nan, -0.1, 2.0, 2.01, 0.0]},
              {"r/v1": ([1] * 5, [True] * 5)})
    out = reduce(a, b)
    assert out["scan"]["outside"] == 3
    assert out["scan"]["rois"]["r"]["count"] == [1, 1]
    assert out["rois"]["r"]["count"] == 5  # top level ignores the bins


def test_without_i0_scan_or_pump_probe() -> None:
    a = Analysis(ev_per_adu={DET: 1.0})
    out = reduce(a, block([2, 4], {}, {"r/v1": ([3, 5], [True, True])}))
    assert out["shots"] == {"total": 2, "accepted": 2, "vetoed": {}}
    assert out["rois"] == {"r": {"count": 2, "sum": 8.0, "mean": 4.0, "norm": None, "mean_ratio": None}}
    assert out["scan"] is None


def test_undecided_laser_only_in_the_total() -> None:
    a = full_analysis(pump_probe=PointPumpProbe(name=SHUT, threshold=0.5))
    b = block([2, 4, 6], {PD: [2.0] * 3, BEAM: [1.0] * 3, MOTOR: [0.5] * 3, SHUT: [1.0, np.nan, 0.0]},
              {"r/v1": ([2, 4, 6], [True] * 3)})
    r = reduce(a, b)["rois"]["r"]
    assert r["count"] == 3 and r["on"]["count"] == 1 and r["off"]["count"] == 1


def test_vetoes_counted_separately() -> None:
    a = full_analysis(vetoes=(Veto(name=BEAM, min=0.5), Veto(name=SHUT, max=1.0)))
    b = block([2, 4, 6], {PD: [0.0, 2.0, 2.0], BEAM: [0.0, 0.0, 1.0], SHUT: [5.0, 0.0, 0.0]})
    out = reduce(a, b)
    assert out["shots"] == {"total": 3, "accepted": 1, "vetoed": {"i0": 1, BEAM: 2, SHUT: 1}}


def test_multi_version_keys() -> None:
    a = Analysis(ev_per_adu={DET: 1.0})
    one = block([2, 4], {}, {"bg/v1": ([1, 0], [True, False]), "bg/v2": ([0, 2], [False, True]),
                             "spot/v3": ([0, 0], [False, False]), "spot/v4": ([7, 7], [True, True])})
    out = reduce(a, one)
    assert list(out["rois"]) == ["bg/v1", "bg/v2", "spot"]  # spot/v3 never valid: spot is unique
    only_v2 = block([6], {}, {"bg/v1": ([0], [False]), "bg/v2": ([2], [True])})
    assert list(reduce(a, only_v2)["rois"]) == ["bg"]


def test_update_returns_new_state() -> None:
    r = SummaryReducer(full_analysis())
    s0 = r.init()
    s1 = r.update(s0, block([2], {PD: [2.0], BEAM: [1.0]}, {"r/v1": ([1], [True])}))
    assert s0.total == 0 and s1.total == 1 and s0.stats == {}


# --- text outputs -------------------------------------------------------------------------


def test_per_shot_csv() -> None:
    a = full_analysis()
    b1 = block([2, 4], {PD: [2.0, np.nan], BEAM: [1.0, 1.0], MOTOR: [0.1, 5.0]},
               {"r/v1": ([3, 0], [True, False])})
    b2 = block([6], {PD: [0.1 + 0.2], BEAM: [1.0], MOTOR: [1.0]}, {"r/v2": ([4], [True])})
    lines = list(per_shot_csv([b1, block([]), b2], a, roi_names=["r", "gone"]))
    assert lines[0] == "tag,time,i0,accepted,scan,laser_on,r,gone\n"
    assert lines[1] == "2,1700000000.0,2.0,1,0.1,1,3.0,\n"
    assert lines[2] == "4,1700000001.0,,0,5.0,1,,\n"
    assert lines[3] == "6,1700000000.0,0.30000000000000004,0,1.0,1,4.0,\n"
    assert float(lines[3].split(",")[2]) == 0.1 + 0.2
    bare = list(per_shot_csv([b1], Analysis(ev_per_adu={DET: 1.0}), roi_names=["r"]))
    assert bare[1] == "2,1700000000.0,,1,,,3.0\n"


def test_scan_csv_and_table() -> None:
    a = full_analysis()
    b = block([4, 6, 8], {PD: [2.0, 4.0, 1.0], BEAM: [1.0] * 3, MOTOR: [0.5, 0.7, 1.5]},
              {"r/v1": ([4, 4, 3], [True] * 3)})
    out = reduce(a, b)
    text = scan_csv(out)
    rows = text.splitlines()
    assert rows[0] == "center,r.count,r.norm,r.sem,r.on.norm,r.off.norm"
    assert rows[1] == "0.5,2,1.3333333333333333,0.5,1.3333333333333333,"  # every tag even: all on
    assert rows[2] == "1.5,1,3.0,,3.0,"
    assert scan_csv(reduce(Analysis())) == "center\n"
    table = format_table(out)
    assert "3 total, 3 accepted" in table and "r" in table and "outside" in table
    assert format_table(reduce(Analysis())).startswith("shots: 0 total")


# --- golden layout ------------------------------------------------------------------------

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden_summary.json"


def golden_blocks() -> list[ShotBlock]:
    """Two small blocks of hand-picked numbers: tag gap, NaNs, a veto, two versions of one ROI."""
    return [
        block([2, 4, 6, 8], {PD: [2.0, 4.0, np.nan, 1.5], BEAM: [1.0, 1.0, 1.0, 0.0], MOTOR: [0.25, 1.5, 0.5, 2.0]},
              {"bg/v1": ([3, 5, 7, 9], [True, True, True, False]), "spot/v1": ([10, 20, 30, 40], [True] * 4)}),
        block([12, 14, 16], {PD: [3.0, 2.5, 5.0], BEAM: [1.0] * 3, MOTOR: [1.0, np.nan, 0.75]},
              {"bg/v2": ([6, 8, 1], [True, True, True]), "spot/v1": ([50, 60, 70], [True, False, True])}),
    ]


def test_golden_summary() -> None:
    a = full_analysis(pump_probe=TagModuloPumpProbe(cycle=4, on=[0]), threshold_ev=2.0, photon_energy_ev=2.0)
    got = reduce(a, *golden_blocks())
    assert got == json.loads(GOLDEN.read_text())
