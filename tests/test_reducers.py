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
    DarkFrame,
    DetectorInfo,
    PointPumpProbe,
    RoiVersion,
    ShotBlock,
    TagModuloPumpProbe,
    Veto,
    parse_config,
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
    assert shot_table(b, a, {}).values["r/v1"].tolist() == [6.0]
    assert roi_sums(pix, ev_per_adu=2.0, threshold_ev=None).energy.tolist() == [32.0]


def test_integer_shortcut_matches_float_definition_at_the_cutoff() -> None:
    rng = np.random.default_rng(3)
    pix = rng.integers(0, 400, (50, 7, 9)).astype(np.uint16)
    for g, thr in [(3.65, 365.0), (0.1, 30.0), (10.95, 1000.0), (1 / 3, 33.0)]:
        e = pix.astype(np.float64) * g
        ref = np.where(e < thr, 0.0, e).sum(axis=(1, 2))
        np.testing.assert_allclose(roi_sums(pix, ev_per_adu=g, threshold_ev=thr).energy, ref, rtol=1e-12)
        f = pix.astype(np.float32)
        np.testing.assert_allclose(roi_sums(f, ev_per_adu=g, threshold_ev=thr).energy, ref, rtol=1e-12)


def test_large_sums_stay_exact() -> None:
    pix = np.full((2, 64, 64), 65535, np.uint16)  # 2.7e8 ADU: beyond float32's exact range
    assert roi_sums(pix, ev_per_adu=1.0, threshold_ev=1.0).energy.tolist() == [65535.0 * 4096] * 2


def test_nonfinite_pixels_count_zero_and_invalid_is_nan() -> None:
    # INTERFACE.md: a non-finite pixel contributes 0 and is counted; no usable pixel -> NaN
    pix = np.array([[[1.0, np.nan]], [[2.0, 3.0]], [[-np.inf, 3.0]], [[np.inf, 3.0]], [[np.nan, np.inf]]],
                   np.float32)
    a = Analysis(ev_per_adu={DET: 1.0}, threshold_ev=0.5)
    b = ShotBlock(np.array([2, 4, 6, 8, 10], np.int64), np.zeros(5), {},
                  {"r/v1": Cutout(pix, np.array([True, False, True, True, True]), DET)})
    t = shot_table(b, a, {})
    v = t.values["r/v1"]
    assert v[0] == 1.0 and math.isnan(v[1]) and v[2] == 3.0 and v[3] == 3.0 and math.isnan(v[4])
    assert t.nonfinite["r/v1"].tolist() == [1, 0, 1, 1, 2]


def test_ev_per_adu_override_and_missing_detector() -> None:
    cfg = Config(calibration=Calibration(ev_per_adu={DET: 4.0}))
    dets = {DET: DetectorInfo(shape=(4, 4), dtype="uint16", ev_per_adu=1.0),
            "other": DetectorInfo(shape=(4, 4), dtype="uint16", ev_per_adu=2.0)}
    a = Analysis.from_config(cfg, detectors=dets)
    assert dict(a.ev_per_adu) == {DET: 4.0, "other": 2.0}
    b = block([2], cutouts={"r/v1": ([3], [True])})
    assert shot_table(b, a, {}).values["r/v1"].tolist() == [12.0]
    with pytest.raises(ConfigError, match="det"):
        shot_table(b, Analysis(ev_per_adu={"other": 1.0}), {})
    # no valid shot: nothing to calibrate, no error
    assert math.isnan(shot_table(block([2], cutouts={"r/v1": ([0], [False])}), Analysis(), {}).values["r/v1"][0])


# --- darks, masks, non-finite pixels (INTERFACE.md "value") -------------------------------------

FRAME_DARK = np.array([[10.0, 20.0, 30.0, 0.0], [1.5, 2.5, np.nan, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
RECT = RoiVersion("r", 1, DET, (1, 3), (0, 2), 0, 2)  # columns 1, 2 and rows 0, 1 of a 3 x 4 detector


def dark_table(pixels: list[list[list[float]]], dtype: str, **kw: object) -> tuple[list[float], list[int]]:
    n = len(pixels)
    b = ShotBlock(np.arange(2, 2 + 2 * n, 2, dtype=np.int64), np.zeros(n), {},
                  {"r/v1": Cutout(np.array(pixels, dtype), np.ones(n, bool), DET)})
    base: dict[str, object] = dict(ev_per_adu={DET: 2.0}, threshold_ev=1.5,
                                   darks={DET: DarkFrame(FRAME_DARK, np.zeros((3, 4), np.float32), 10, 0, 9)})
    base.update(kw)
    t = shot_table(b, Analysis(**base), {"r/v1": RECT})  # type: ignore[arg-type]
    return t.values["r/v1"].tolist(), t.nonfinite["r/v1"].tolist()


@pytest.mark.parametrize("dtype", ["uint16", "float32", "int32"])
def test_dark_subtracted_before_gain_and_threshold(dtype: str) -> None:
    # dark under the ROI: [[20, 30], [2.5, NaN]]; raw [[25, 31], [3, 7]] -> [[5, 1], [0.5, NaN]] ADU
    # x 2 eV/ADU = [[10, 2], [1, NaN]] eV; 1 < 1.5 eV threshold: zeroed; NaN (dark): 0 and counted
    values, nonfinite = dark_table([[[25, 31], [3, 7]], [[20, 29], [2, 0]]], dtype)
    # shot 2: [[0, -1], [-0.5, NaN]] ADU -> [[0, -2], [-1, -]] eV, all below 1.5: zeroed
    assert values == [12.0, 0.0] and nonfinite == [1, 1]
    values, _ = dark_table([[[25, 31], [3, 7]]], dtype, threshold_ev=None, photon_energy_ev=4.0)
    assert values == [(10 + 2 + 1) / 4]  # no threshold: every finite pixel, negative ones too


@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32", "float64"])
@pytest.mark.parametrize("threshold", [None, 0.0, 30.0, 60.0, 150.0, 1e6])
def test_dark_sums_match_the_definition_in_every_regime(dtype: str, threshold: float | None) -> None:
    # thresholds selecting all, about half, a few and none of the pixels: the dark part is
    # gathered (few or nearly all selected) or a dense product (in between); all must agree
    rng = np.random.default_rng(4)
    pix = rng.poisson(40.0, (150, 6, 9)).astype(dtype)
    dark = rng.normal(20.0, 4.0, (6, 9)).astype(np.float32)
    masked = np.zeros((6, 9), bool)
    masked[2, 3] = True
    got = roi_sums(pix, ev_per_adu=1.5, threshold_ev=threshold, dark=dark, masked=masked).energy
    energy = (pix.astype(np.float64) - dark.astype(np.float64)) * 1.5
    if threshold is not None:
        energy = np.where(energy < threshold, 0.0, energy)
    want = np.where(masked, 0.0, energy).reshape(150, -1)
    np.testing.assert_allclose(got, [math.fsum(row) for row in want], rtol=1e-12, atol=1e-9)


def test_masks_and_noisy_pixels_never_count() -> None:
    mask = np.zeros((3, 4), bool)
    mask[0, 1] = True  # the ROI's first pixel (10 eV in shot 1)
    values, nonfinite = dark_table([[[25, 31], [3, 7]]], "uint16", masks={DET: mask})
    assert values == [2.0] and nonfinite == [1]
    mask[1, 2] = True  # masking the NaN-dark pixel: it is no longer counted as non-finite
    values, nonfinite = dark_table([[[25, 31], [3, 7]]], "uint16", masks={DET: mask})
    assert values == [2.0] and nonfinite == [0]
    mask[0, 2] = mask[1, 1] = True  # every pixel masked: no usable pixel, NaN
    values, nonfinite = dark_table([[[25, 31], [3, 7]]], "uint16", masks={DET: mask})
    assert math.isnan(values[0]) and nonfinite == [0]
    # all pixels non-finite or masked: NaN; a raw NaN among finite ones: 0 and counted
    values, nonfinite = dark_table([[[np.nan, np.inf], [3, 7]], [[np.nan, 31], [3, 7]]], "float32",
                                   masks={DET: np.array([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]], bool)})
    assert math.isnan(values[0]) and nonfinite == [3, 2] and values[1] == 2.0


def test_from_config_builds_masks_and_checks_shapes() -> None:
    dets = {DET: DetectorInfo(shape=(3, 4), dtype="uint16", ev_per_adu=2.0)}
    std = np.array([[0, 9, 0, 0], [0, 0, 0, 0], [0, 0, 0, 5]], np.float32)
    dark = DarkFrame(FRAME_DARK, std, 10, 0, 9)
    cfg = parse_config({"mask": [{"detector": DET, "x": [0, 1], "y": [1, 3]}, {"detector": "gone", "x": [0, 9], "y": [0, 9]}],
                        "calibration": {"dark_noise_max_adu": 5.0}}, origin="f.toml")
    a = Analysis.from_config(cfg, detectors=dets, darks={DET: dark})
    want = np.zeros((3, 4), bool)
    want[1:3, 0] = True  # the rectangle
    want[0, 1] = True  # std 9 > 5 (std 5 is not above)
    assert a.masks[DET].tolist() == want.tolist() and list(a.masks) == [DET]  # unknown detector: no mask yet
    outside = parse_config({"mask": [{"detector": DET, "x": [2, 5], "y": [0, 1]}]}, origin="f.toml")
    with pytest.raises(ConfigError, match=r"^f.toml: mask\[0\]: expected a rectangle inside det \(3 rows x 4 "
                                          r"columns, x <= 4, y <= 3\), found x = \[2, 5\], y = \[0, 1\]$"):
        Analysis.from_config(outside, detectors=dets, origin="f.toml")
    small = DarkFrame(np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32), 10, 0, 9)
    with pytest.raises(ConfigError, match=r"calibration.dark: expected a dark of det's shape 3 x 4, found 2 x 4"):
        Analysis.from_config(Config(), detectors=dets, darks={DET: small})


def test_a_dark_needs_the_rectangle() -> None:
    # the reducers slice the dark with the version's rectangle: without it, a clear error
    b = block([2], cutouts={"r/v1": ([3], [True])})
    a = Analysis(ev_per_adu={DET: 1.0}, darks={DET: DarkFrame(FRAME_DARK, FRAME_DARK, 1, 0, 0)})
    with pytest.raises(ValueError, match="needs this version's rectangle"):
        shot_table(b, a, {})


# --- shot table ---------------------------------------------------------------------------


def test_shot_table_columns() -> None:
    a = full_analysis(scan_scale=0.5, scan_offset=0.25, pump_probe=PointPumpProbe(name=SHUT, threshold=0.5))
    b = block([10, 12, 14, 16], {PD: [2.0, 0.5, np.nan, 11.0], MOTOR: [0.0, 3.5, np.nan, 1.0],
                                 SHUT: [1.0, 0.0, np.nan, 0.5]})
    t = shot_table(b, a, {})
    assert t.vetoed["i0"].tolist() == [False, True, True, True]
    assert t.vetoed[BEAM].tolist() == [True] * 4  # missing point: NaN for every shot
    assert t.accepted.tolist() == [False] * 4
    assert t.scan.tolist()[:2] == [0.25, 2.0] and t.bin.tolist() == [0, 1, -1, 0]
    assert t.laser.tolist() == [1, 0, -1, 0]
    assert np.isnan(shot_table(b, Analysis(), {}).i0).all()
    assert shot_table(b, Analysis(), {}).laser.tolist() == [-1] * 4


def test_veto_bounds() -> None:
    a = Analysis(vetoes=(Veto(name=BEAM, min=0.5), Veto(name=PD, max=2.0), Veto(name=MOTOR)))
    b = block([2, 4, 6], {BEAM: [np.inf, 0.4, np.nan], PD: [-np.inf, 2.0, 2.5], MOTOR: [1.0, np.inf, np.nan]})
    t = shot_table(b, a, {})
    assert t.vetoed[BEAM].tolist() == [False, True, True]
    assert t.vetoed[PD].tolist() == [False, False, True]
    assert t.vetoed[MOTOR].tolist() == [False, False, True]


# --- summary ------------------------------------------------------------------------------


NULL_SIDE = {"count": 0, "norm": None, "sem_norm": None}
NULL_DIFF = {"diff": None, "diff_sem": None, "rel": None, "rel_sem": None}


def test_no_shots_is_null() -> None:
    a = full_analysis()
    for out in (reduce(a), reduce(a, block([], {}))):
        assert out["shots"] == {"total": 0, "accepted": 0, "vetoed": {"i0": 0, BEAM: 0}}
        assert out["analysis_version"] == 1 and out["rois"] == {} and out["channels"] == {}
        assert out["scan"]["outside"] == 0 and out["scan"]["centers"] == [0.5, 1.5]
    # a ROI with valid shots but none accepted: count 0, every statistic null
    out = reduce(a, block([2], {PD: [0.1], BEAM: [1.0], MOTOR: [0.5]}, {"r/v1": ([5], [True])}))
    assert out["rois"]["r"] == {"count": 0, "sum": None, "mean": None, "norm": None, "sem_norm": None,
                                "mean_ratio": None, "nonfinite": 0, "on": NULL_SIDE, "off": NULL_SIDE, **NULL_DIFF}
    assert out["scan"]["rois"]["r"]["sem"] == [None, None]
    assert out["scan"]["rois"]["r"]["sem_norm"] == [None, None]
    assert out["scan"]["rois"]["r"]["on"]["sem_norm"] == [None, None]
    assert out["scan"]["rois"]["r"]["diff_sem"] == [None, None]


def _sem_norm(v: list[float], i0: list[float]) -> float:
    """INTERFACE.md's definition, written out: √(n/(n−1)·Σ(v − norm·I0)²)/ΣI0."""
    n, norm = len(v), math.fsum(v) / math.fsum(i0)
    d2 = math.fsum((x - norm * i) ** 2 for x, i in zip(v, i0, strict=True))
    return math.sqrt(n / (n - 1) * d2) / math.fsum(i0)


def test_hand_computed_statistics() -> None:
    a = full_analysis(pump_probe=TagModuloPumpProbe(cycle=4, on=[0]))
    b = block([4, 6, 8, 10, 12, 16],
              {PD: [2.0, 4.0, 1.0, 5.0, 0.5, 3.0], BEAM: [1.0, 1.0, 1.0, 0.0, 1.0, 1.0],
               MOTOR: [0.5, 0.7, 2.0, 0.1, 1.0, 0.25]},
              {"r/v1": ([4, 4, 3, 9, 1, 9], [True] * 6)})
    out = reduce(a, b)
    # accepted: tags 4, 6, 8, 16 (tag 10 beam veto, tag 12 i0 veto); on: 4, 8, 16 (tag % 4 == 0)
    assert out["shots"] == {"total": 6, "accepted": 4, "vetoed": {"i0": 1, BEAM: 1}}
    r = out["rois"]["r"]
    assert r["count"] == 4 and r["sum"] == 20.0 and r["mean"] == pytest.approx(5.0)
    assert r["norm"] == pytest.approx(20 / 10)
    assert r["sem_norm"] == pytest.approx(_sem_norm([4, 4, 3, 9], [2, 4, 1, 3]))
    assert r["mean_ratio"] == pytest.approx((2 + 1 + 3 + 3) / 4)
    assert r["nonfinite"] == 0
    on_norm, on_sem = 16 / 6, _sem_norm([4, 3, 9], [2, 1, 3])
    assert r["on"] == {"count": 3, "norm": pytest.approx(on_norm), "sem_norm": pytest.approx(on_sem)}
    assert r["off"] == {"count": 1, "norm": pytest.approx(1.0), "sem_norm": None}  # one shot: no error
    assert r["diff"] == pytest.approx(on_norm - 1.0)
    assert r["rel"] == pytest.approx(on_norm - 1.0)  # off.norm = 1
    assert r["diff_sem"] is None and r["rel_sem"] is None  # off has no sem_norm
    s = out["scan"]
    assert s["outside"] == 0  # 2.0 is the last edge: in the last bin
    rb = s["rois"]["r"]
    assert rb["count"] == [3, 1]
    assert rb["norm"] == [pytest.approx(17 / 9), pytest.approx(3.0)]
    assert rb["sem"][0] == pytest.approx(np.std([2.0, 1.0, 3.0], ddof=1) / math.sqrt(3))
    assert rb["sem_norm"][0] == pytest.approx(_sem_norm([4, 4, 9], [2, 4, 3]))
    assert rb["sem"][1] is None and rb["sem_norm"][1] is None  # one shot
    assert rb["on"]["count"] == [2, 1] and rb["off"]["count"] == [1, 0]
    assert rb["on"]["sem_norm"] == [pytest.approx(_sem_norm([4, 9], [2, 3])), None]
    assert rb["off"]["norm"] == [pytest.approx(1.0), None]
    assert rb["diff"] == [pytest.approx(13 / 5 - 1.0), None]
    assert rb["diff_sem"] == [None, None]  # off has one shot in bin 0, none in bin 1


def test_diff_and_rel_errors_with_both_sides() -> None:
    a = full_analysis(vetoes=(), scan_name=None, edges=(), pump_probe=TagModuloPumpProbe(cycle=4, on=[0, 1]))
    v, i0 = [5, 7, 3, 4, 6, 2, 8, 9], [2.0, 3.0, 1.5, 2.5, 2.0, 1.0, 3.0, 4.0]
    tags = [4, 8, 12, 16, 6, 10, 14, 18]  # even tags: % 4 == 0 on (first four), == 2 off
    b = block(sorted(tags), {PD: [i for _, i in sorted(zip(tags, i0, strict=True))]},
              {"r/v1": ([x for _, x in sorted(zip(tags, v, strict=True))], [True] * 8)})
    r = reduce(a, b)["rois"]["r"]
    on_n, off_n = math.fsum(v[:4]) / math.fsum(i0[:4]), math.fsum(v[4:]) / math.fsum(i0[4:])
    on_s, off_s = _sem_norm(v[:4], i0[:4]), _sem_norm(v[4:], i0[4:])
    assert r["diff"] == pytest.approx(on_n - off_n, rel=1e-12)
    assert r["diff_sem"] == pytest.approx(math.hypot(on_s, off_s), rel=1e-12)
    assert r["rel"] == pytest.approx((on_n - off_n) / off_n, rel=1e-12)
    assert r["rel_sem"] == pytest.approx(math.sqrt(on_s**2 + (on_n / off_n) ** 2 * off_s**2) / abs(off_n), rel=1e-12)


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
    assert out["rois"] == {"r": {"count": 2, "sum": 8.0, "mean": 4.0, "norm": None, "sem_norm": None,
                                 "mean_ratio": None, "nonfinite": 0}}
    assert out["scan"] is None and out["channels"] == {}


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
    assert rows[0] == ("center,r.count,r.norm,r.sem,r.on.norm,r.off.norm,"
                       "r.sem_norm,r.on.sem_norm,r.off.sem_norm,r.diff,r.diff_sem,r.rel,r.rel_sem")
    sem_norm = repr(_sem_norm([4, 4], [2, 4]))
    # tags 4 and 8 on, 6 off (cycle 2, on = [0]: every even tag is on)
    assert rows[1] == f"0.5,2,1.3333333333333333,0.5,1.3333333333333333,,{sem_norm},{sem_norm},,,,,"
    assert rows[2] == "1.5,1,3.0,,3.0,,,,,,,,"
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
