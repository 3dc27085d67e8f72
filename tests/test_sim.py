"""The simulator: protocol conformance, SACLA-like facts, determinism, physics, delivery modes."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from shotwatch.schemas import Config, Roi, ShotBlock, SimSource, SourceError, load_config, roi_key
from shotwatch.sources import Source, open_source
from shotwatch.sources.sim import DETECTOR, POINTS, Simulator
from shotwatch.sources.sim_detector import ADU_PER_PHOTON, SHAPE, PixelSynth
from shotwatch.sources.sim_physics import BEAM, DELAY, I0
from source_conformance import SourceConformance

BRAGG = Roi(name="bragg", detector=DETECTOR, x=(184, 216), y=(284, 316))
BACKGROUND = Roi(name="background", detector=DETECTOR, x=(400, 432), y=(800, 832))
ROIS = {roi_key("bragg", 1): BRAGG, roi_key("background", 1): BACKGROUND}


def fast(seed: int = 7, *, frames_every: int = 0, rois: dict[str, Roi] | None = None,
         points: list[str] | None = None) -> Simulator:
    sim = Simulator(SimSource(seed=seed, rate=0, points=points), frames_every=frames_every,
                    rois=ROIS if rois is None else rois)
    sim.open()
    return sim


def read_n(sim: Source, n: int) -> ShotBlock:
    blocks: list[ShotBlock] = []
    while sum(map(len, blocks)) < n:
        block = sim.read(timeout=1.0)
        if block is not None:
            blocks.append(block.validate())
    return ShotBlock.concat(blocks).slice(0, n)


class TestSimFastConformance(SourceConformance):
    @pytest.fixture
    def source_factory(self) -> Callable[[], Source]:
        return lambda: Simulator(SimSource(seed=3, rate=0), frames_every=500)


class TestSimPacedConformance(SourceConformance):
    @pytest.fixture
    def source_factory(self) -> Callable[[], Source]:
        return lambda: Simulator(SimSource(seed=3, rate=60), frames_every=60)


def test_tags_are_sacla_like() -> None:
    block = read_n(fast(), 5000)
    steps = np.diff(block.tags)
    assert set(np.unique(steps)) <= {2, 4}
    assert 0 < np.count_nonzero(steps == 4) < 0.02 * len(steps)  # occasional missing tags
    assert np.all(block.tags % 2 == 0)
    assert block.run is not None and block.hightag == 201902


def test_same_seed_same_shots_and_independent_of_block_size() -> None:
    a, b = read_n(fast(11), 3000), read_n(fast(11), 3000)
    np.testing.assert_array_equal(a.tags, b.tags)
    for key in ROIS:
        np.testing.assert_array_equal(a.cutouts[key].pixels, b.cutouts[key].pixels)
    for name in POINTS:
        np.testing.assert_array_equal(a.points[name], b.points[name])
    # The paced mode sees the same shots (tags, points) as the fast one.
    paced = Simulator(SimSource(seed=11, rate=240), frames_every=0)
    c = read_n(paced, 40)
    np.testing.assert_array_equal(c.tags, a.tags[:40])
    np.testing.assert_array_equal(c.points[I0], a.points[I0][:40])
    assert not np.array_equal(read_n(fast(12), 100).points[I0], a.points[I0][:100])


def test_points_float64_with_occasional_nan_counted() -> None:
    sim = fast()
    block = read_n(sim, 12000)
    assert set(block.points) == set(POINTS) and len(POINTS) >= 16
    nan = {k: int(np.isnan(v).sum()) for k, v in block.points.items()}
    assert sum(nan.values()) > 0
    missing = sim.status().missing
    for name, count in nan.items():
        assert missing.get(name, 0) >= count


def test_beam_off_bursts_have_no_i0() -> None:
    block = read_n(fast(5), 40000)
    beam = block.points[BEAM]
    off = beam == 0
    assert 0.005 < off.mean() < 0.3
    i0 = block.points[I0]
    assert np.nanmax(np.abs(i0[off])) < 0.02
    on = (beam == 1) & np.isfinite(i0)
    assert 0.15 < np.mean(i0[on]) < 0.3
    assert 0.2 < np.std(i0[on]) / np.mean(i0[on]) < 0.6  # SASE fluctuations


def test_delay_scan_steps_through_the_demo_bins() -> None:
    block = read_n(fast(), 4000)
    ps = block.points[DELAY] * 0.001
    values, counts = np.unique(ps[np.isfinite(ps)], return_counts=True)
    dwell = values[counts > 100]
    np.testing.assert_allclose(dwell, np.round(np.arange(-0.9, 3.0, 0.2), 3), atol=1e-9)


def test_unknown_point_and_detector_are_errors_listing_names() -> None:
    with pytest.raises(SourceError, match="found 'nope'.*") as exc:
        Simulator(SimSource(points=["nope"]), frames_every=0).open()
    assert I0 in str(exc.value)
    bad = Roi(name="r", detector="MPCCD-XXX", x=(0, 4), y=(0, 4))
    with pytest.raises(SourceError, match=DETECTOR):
        Simulator(SimSource(), frames_every=0, rois={"r/v1": bad}).open()
    with pytest.raises(SourceError, match="MPCCD-XXX"):
        fast().set_rois(rois={"r/v1": bad})
    outside = Roi(name="r", detector=DETECTOR, x=(500, 600), y=(0, 4))
    with pytest.raises(SourceError, match="512"):
        fast().set_rois(rois={"r/v1": outside})


def test_points_restriction_and_factory_adds_analysis_points() -> None:
    block = read_n(fast(points=[BEAM]), 10)
    assert list(block.points) == [BEAM]
    demo = load_config(None)
    cfg = Config.model_validate({**demo.model_dump(), "source": {"kind": "sim", "rate": 0, "points": [BEAM]}})
    src = open_source(cfg, frames_every=0)
    block = read_n(src, 10)
    assert set(block.points) == {BEAM, I0, DELAY}
    assert set(block.cutouts) == {"bragg/v1", "background/v1"}


def test_describe_has_ground_truth() -> None:
    info = fast(2019).describe()
    truth = info.attrs["truth"]
    assert {"t0_ps", "amplitude", "seed", "photon_energy_ev"} <= set(truth)
    assert truth["seed"] == 2019 and -1.0 < truth["t0_ps"] < 3.0
    assert info.detectors[DETECTOR].shape == SHAPE
    assert info.detectors[DETECTOR].ev_per_adu == pytest.approx(3.65 * 3.0)


def test_paced_mode_delivers_full_frames_in_real_time() -> None:
    sim = Simulator(SimSource(seed=1, rate=60), frames_every=60, rois=ROIS)
    sim.open()
    t = time.monotonic()
    blocks = []
    while time.monotonic() - t < 0.5:
        block = sim.read(timeout=0.2)
        if block is not None:
            blocks.append(block.validate())
    n = sum(map(len, blocks))
    assert 20 <= n <= 40  # 60 Hz for 0.5 s
    assert all(len(b) <= 6 for b in blocks)  # <= 0.1 s each
    frames = blocks[0].frames[DETECTOR]
    assert frames.pixels.shape[1:] == SHAPE and frames.pixels.dtype == np.float32
    assert not blocks[0].cutouts
    t = time.monotonic()
    sim.read(timeout=0.0)
    assert time.monotonic() - t < 0.1


def test_fast_mode_frames_every_and_cutouts_agree_with_frames() -> None:
    sim = fast(frames_every=500)
    block = read_n(sim, 2400)
    frames = block.frames[DETECTOR]
    expected = np.arange(0, 2400, 500)
    assert set(frames.shot) <= set(expected) and len(frames.shot) >= len(expected) - 1
    cut = block.cutouts["bragg/v1"]
    assert cut.pixels.dtype == np.float32 and cut.detector == DETECTOR
    for k, shot in enumerate(frames.shot):
        np.testing.assert_array_equal(cut.pixels[shot], frames.pixels[k, 284:316, 184:216])
    assert not cut.valid.all() or sim.status().missing.get(DETECTOR, 0) == 0
    assert not np.any(cut.pixels[~cut.valid])


def _photons(pixels: np.ndarray) -> np.ndarray:
    return np.where(pixels > 1000 / 10.95, pixels, 0).sum(axis=(-2, -1)) / ADU_PER_PHOTON


@pytest.mark.parametrize("roi", [BRAGG, BACKGROUND], ids=["bragg", "background"])
def test_cutout_statistically_identical_to_frame_region(roi: Roi) -> None:
    synth = PixelSynth(4)
    n, ones = 300, np.ones(300)
    direct = synth.render(roi.y, roi.x, ones, ones)
    from_frames = np.concatenate([
        synth.frames(ones[:30], ones[:30])[:, roi.y[0]:roi.y[1], roi.x[0]:roi.x[1]] for _ in range(n // 30)
    ])
    a, b = _photons(direct), _photons(from_frames)
    sem = np.sqrt(a.var() / n + b.var() / n) + 1e-9
    assert abs(a.mean() - b.mean()) < 4 * sem
    dark_a, dark_b = direct[direct < 50], from_frames[from_frames < 50]
    assert dark_a.std() == pytest.approx(dark_b.std(), rel=0.02)


@pytest.mark.parametrize("seed", [2019, 4])
def test_t0_recovered_within_one_bin(seed: int) -> None:
    sim = fast(seed)
    block = read_n(sim, 4800)
    truth = sim.describe().attrs["truth"]
    bragg = _photons(block.cutouts["bragg/v1"].pixels)
    i0 = block.points[I0]
    ok = block.cutouts["bragg/v1"].valid & (block.points[BEAM] > 0.5) & (i0 >= 0.05)
    edges = np.linspace(-1.0, 3.0, 21)
    j = np.digitize(block.points[DELAY] * 0.001, edges) - 1
    on = block.tags % 4 == 0
    diff = np.full(20, np.nan)
    for b in range(20):
        sel_on, sel_off = ok & (j == b) & on, ok & (j == b) & ~on
        norm_on = bragg[sel_on].sum() / i0[sel_on].sum()
        norm_off = bragg[sel_off].sum() / i0[sel_off].sum()
        diff[b] = norm_on / norm_off - 1
    late = np.mean(diff[-3:])
    assert late == pytest.approx(truth["amplitude"], abs=0.08)
    first = int(np.argmax(diff < late / 2))
    centre = 0.5 * (edges[first] + edges[first + 1])
    assert abs(centre - truth["t0_ps"]) <= 0.2 + 1e-9


def test_bragg_spot_is_centred_in_the_demo_roi() -> None:
    cut = read_n(fast(9), 2400).cutouts["bragg/v1"]
    mean = np.where(cut.pixels > 1000 / 10.95, cut.pixels, 0).mean(axis=0)
    rows, cols = np.indices(mean.shape)
    centroid = (float((rows * mean).sum() / mean.sum()), float((cols * mean).sum() / mean.sum()))
    assert centroid == pytest.approx((15.5, 15.5), abs=0.2)


def test_factory_dispatches_facility_kinds_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    calls: list[tuple[object, int | None]] = []
    fake = types.ModuleType("shotwatch.sources.sacla")

    def make(config: Config, *, frames_every: int | None = None) -> str:
        calls.append((config, frames_every))
        return "made"

    fake.make = make  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shotwatch.sources.sacla", fake)
    cfg = Config.model_validate({"source": {"kind": "sacla"}, "record": {"frames_every": 7}})
    assert open_source(cfg) == "made"
    assert calls == [(cfg, 7)]


def test_importing_sources_pulls_in_no_facility_or_storage_modules() -> None:
    import subprocess
    import sys

    code = ("import sys, shotwatch.sources; "
            "bad = [m for m in ('zarr', 'zmq', 'dbpy', 'olpy', 'karabo_bridge') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_demo_config_reduces_to_the_truth_with_the_summary_reducer() -> None:
    """The demo, reduced by the real reducers, shows the step at t0 (skips until they exist)."""
    try:
        from shotwatch.reducers.analysis import Analysis
        from shotwatch.reducers.summary import SummaryReducer
    except ImportError:
        pytest.skip("shotwatch.reducers.summary not available yet")
    demo = load_config(None)
    cfg = Config.model_validate({**demo.model_dump(), "source": {"kind": "sim", "seed": 2019, "rate": 0}})
    src = open_source(cfg, frames_every=0)
    info = src.describe()
    reducer = SummaryReducer(Analysis.from_config(cfg, ev_per_adu={d: i.ev_per_adu for d, i in info.detectors.items()}))
    state = reducer.init()
    state = reducer.update(state, read_n(src, 4800))
    result = reducer.result(state)
    assert result["shots"]["vetoed"]["xfel_mon_bpm_bl3_0_3_beamstatus/summary"] > 0
    bins = result["scan"]["rois"]["bragg"]
    diff = np.array(bins["on"]["norm"], dtype=float) / np.array(bins["off"]["norm"], dtype=float) - 1
    centres = np.array(result["scan"]["centers"])
    first = int(np.argmax(diff < info.attrs["truth"]["amplitude"] / 2))
    assert abs(centres[first] - info.attrs["truth"]["t0_ps"]) <= 0.2 + 1e-9


def test_a_late_reader_loses_old_shots_and_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    import shotwatch.sources.sim as sim_module

    monkeypatch.setattr(sim_module, "LATE_SECONDS", 0.2)
    sim = Simulator(SimSource(seed=1, rate=200), frames_every=0)
    sim.open()
    t = time.monotonic()
    time.sleep(0.5)
    block = sim.read(timeout=0.5)
    assert block is not None
    lost = sim.status().counters["shots lost (reader late)"]
    assert 60 <= lost <= 200 * (time.monotonic() - t)  # 200 Hz: all but the newest 0.05 s
    assert any("behind" in n for n in sim.notices())
    assert sim.notices() == []
    sim.close()
