"""The simulator: protocol conformance, SACLA-like facts, determinism, physics, delivery modes."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable

import numpy as np
import pytest

from shotwatch.schemas import Config, Cutout, Roi, ShotBlock, SimSource, SourceError, load_config, roi_key
from shotwatch.sources import Source, open_source
from shotwatch.sources.sim import DETECTOR, POINTS, Share, Simulator
from shotwatch.sources.sim_detector import SHAPE
from shotwatch.sources.sim_photons import ADU_PER_PHOTON
from shotwatch.sources.sim_physics import BEAM, DELAY, I0, SHUTTER
from source_conformance import SourceConformance

BRAGG = Roi(name="bragg", detector=DETECTOR, x=(184, 216), y=(284, 316))
BACKGROUND = Roi(name="background", detector=DETECTOR, x=(400, 432), y=(800, 832))
ROIS = {roi_key("bragg", 1): BRAGG, roi_key("background", 1): BACKGROUND}
THRESHOLD_ADU = 1000 / 10.95  # the demo's 1 keV photon threshold


def fast(seed: int = 7, *, frames_every: int = 0, rois: dict[str, Roi] | None = None,
         points: list[str] | None = None, **cfg: object) -> Simulator:
    sim = Simulator(SimSource.model_validate({"seed": seed, "rate": 0, "points": points, **cfg}),
                    frames_every=frames_every, rois=ROIS if rois is None else rois)
    sim.open()
    return sim


def read_n(sim: Source, n: int) -> ShotBlock:
    blocks: list[ShotBlock] = []
    while sum(map(len, blocks)) < n:
        block = sim.read(timeout=1.0)
        if block is not None:
            blocks.append(block.validate())
    return ShotBlock.concat(blocks).slice(0, n)


def dark_of(roi: Roi, shots: int = 400) -> np.ndarray:
    """Mean of ``shots`` closed-shutter cutouts (another seed: the sensor is the same)."""
    cut = read_n(fast(99, rois={"d/v1": roi}, shutter="closed"), shots).cutouts["d/v1"]
    return np.nanmean(cut.pixels[cut.valid], axis=0)  # NaN-patch glitches left out


def photons(pixels: np.ndarray, dark: np.ndarray) -> np.ndarray:
    """Per-shot photons of dark-subtracted cutouts with the demo's threshold."""
    above = np.where(pixels - dark > THRESHOLD_ADU, pixels - dark, 0)
    return np.nansum(above, axis=(-2, -1)) / ADU_PER_PHOTON


class TestSimFastConformance(SourceConformance):
    @pytest.fixture
    def source_factory(self) -> Callable[[], Source]:
        return lambda: Simulator(SimSource(seed=3, rate=0), frames_every=500)


class TestSimPacedConformance(SourceConformance):
    @pytest.fixture
    def source_factory(self) -> Callable[[], Source]:
        return lambda: Simulator(SimSource(seed=3, rate=30), frames_every=30)


def test_tags_are_sacla_like() -> None:
    block = read_n(fast(), 5000)
    steps = np.diff(block.tags)
    assert set(np.unique(steps)) <= {2, 4, 6}  # two missing in a row: rarely
    assert 0 < np.count_nonzero(steps > 2) < 0.02 * len(steps)  # occasional missing tags
    assert np.all(block.tags % 2 == 0)
    assert block.run is not None and block.hightag == 201902
    # BL3's clock: 30 shots/s, so time advances 1/30 s per tag step of 2 (missing tags too).
    np.testing.assert_allclose(np.diff(block.time), steps / 2 / 30.0, atol=1e-6)


def test_same_seed_same_shots_and_paced_sees_the_same() -> None:
    a, b = read_n(fast(11), 3000), read_n(fast(11), 3000)
    np.testing.assert_array_equal(a.tags, b.tags)
    for key in ROIS:
        np.testing.assert_array_equal(a.cutouts[key].pixels, b.cutouts[key].pixels)
    for name in POINTS:
        np.testing.assert_array_equal(a.points[name], b.points[name])
    paced = Simulator(SimSource(seed=11, rate=240), frames_every=0, rois=ROIS)
    c = read_n(paced, 40)
    np.testing.assert_array_equal(c.tags, a.tags[:40])
    np.testing.assert_array_equal(c.points[I0], a.points[I0][:40])
    frames = c.frames[DETECTOR]
    for k, shot in enumerate(frames.shot):  # the paced frames hold the fast mode's cutouts
        np.testing.assert_array_equal(frames.pixels[k, 284:316, 184:216], a.cutouts["bragg/v1"].pixels[shot])
    assert not np.array_equal(read_n(fast(12), 100).points[I0], a.points[I0][:100])


def test_points_float64_with_occasional_nan_counted() -> None:
    sim = fast(rois={})
    block = read_n(sim, 12000)
    assert set(block.points) == set(POINTS) and len(POINTS) >= 16
    nan = {k: int(np.isnan(v).sum()) for k, v in block.points.items()}
    assert sum(nan.values()) > 0
    missing = sim.status().missing
    for name, count in nan.items():
        assert missing.get(name, 0) >= count


def test_beam_off_bursts_have_no_i0_and_the_shutter_closes_now_and_then() -> None:
    block = read_n(fast(5, rois={}), 40000)
    beam = block.points[BEAM]
    off = beam == 0
    assert 0.005 < off.mean() < 0.3
    i0 = block.points[I0]
    assert np.nanmax(np.abs(i0[off])) < 0.02
    on = (beam == 1) & np.isfinite(i0)
    assert 0.15 < np.mean(i0[on]) < 0.3
    assert 0.2 < np.std(i0[on]) / np.mean(i0[on]) < 0.6  # SASE fluctuations
    shut = block.points[SHUTTER] == 0
    assert 0 < shut.mean() < 0.1
    assert np.nanmax(np.abs(i0[shut])) < 0.02  # no X-rays at the sample


def test_delay_scan_steps_through_the_demo_bins_at_3_s_per_step() -> None:
    block = read_n(fast(rois={}), 4000)
    ps = block.points[DELAY] * 0.001
    values, counts = np.unique(ps[np.isfinite(ps)], return_counts=True)
    dwell = values[counts > 50]
    np.testing.assert_allclose(dwell, np.round(np.arange(-0.9, 3.0, 0.2), 3), atol=1e-9)
    first_seen = [block.time[np.argmax(ps == v)] for v in dwell]  # the first sweep: 60 s
    np.testing.assert_allclose(np.diff(first_seen), 3.0, atol=0.05)  # 3 s per step


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


@pytest.mark.parametrize(("line", "found"), [('shutter = "dark"', "found 'dark'"), ('full_frames = "yes"', "found 'yes'")])
def test_bad_sim_options_are_one_line_errors_naming_the_key(line: str, found: str) -> None:
    from shotwatch.schemas import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"^bad.toml: source\.\w+: expected .*" + found + "$"):
        parse_config(tomllib.loads(f"[source]\n{line}\n"), origin="bad.toml")


def test_points_restriction_and_factory_adds_analysis_points() -> None:
    block = read_n(fast(points=[BEAM]), 10)
    assert list(block.points) == [BEAM]
    demo = load_config(None)
    cfg = Config.model_validate({**demo.model_dump(), "source": {"kind": "sim", "rate": 0, "points": [BEAM]}})
    src = open_source(cfg, frames_every=0)
    block = read_n(src, 10)
    assert set(block.points) == {BEAM, I0, DELAY} | {v.name for v in demo.veto}
    assert set(block.cutouts) == {"bragg/v1", "background/v1"}


def test_describe_has_ground_truth() -> None:
    info = fast(2019).describe()
    truth = info.attrs["truth"]
    assert {"t0_ps", "amplitude", "seed", "photon_energy_ev", "clock_hz", "sensor"} <= set(truth)
    assert truth["seed"] == 2019 and -1.0 < truth["t0_ps"] < 3.0 and truth["clock_hz"] == 30.0
    assert info.detectors[DETECTOR].shape == SHAPE
    assert info.detectors[DETECTOR].ev_per_adu == pytest.approx(3.65 * 3.0)
    assert info.attrs["shutter"] == "auto" and info.attrs["full_frames"] is False


def test_paced_mode_delivers_full_frames_at_30_hz() -> None:
    sim = Simulator(SimSource(seed=1, rate=30), frames_every=30, rois=ROIS)
    sim.open()
    t = time.monotonic()
    blocks = []
    while time.monotonic() - t < 1.0:
        block = sim.read(timeout=0.2)
        if block is not None:
            blocks.append(block.validate())
    n = sum(map(len, blocks))
    assert 20 <= n <= 40  # 30 Hz for 1 s
    assert all(len(b) <= 3 for b in blocks)  # <= 0.1 s each
    frames = blocks[0].frames[DETECTOR]
    assert frames.pixels.shape[1:] == SHAPE and frames.pixels.dtype == np.float32
    assert not blocks[0].cutouts
    t = time.monotonic()
    sim.read(timeout=0.0)
    assert time.monotonic() - t < 0.1


def test_frames_every_picks_slots_and_changes_no_shot() -> None:
    sim = fast(frames_every=500)
    block = read_n(sim, 2400)
    frames = block.frames[DETECTOR]
    slots = (block.tags - sim.truth.first_tag) // 2
    picked = np.flatnonzero((slots % 500 == 0) & block.cutouts["bragg/v1"].valid)
    np.testing.assert_array_equal(frames.shot, picked)
    cut = block.cutouts["bragg/v1"]
    assert cut.pixels.dtype == np.float32 and cut.detector == DETECTOR
    for k, shot in enumerate(frames.shot):
        np.testing.assert_array_equal(cut.pixels[shot], frames.pixels[k, 284:316, 184:216])
    assert not np.any(cut.pixels[~cut.valid])
    plain = read_n(fast(frames_every=0), 2400)  # frames or not, every shot is the same
    for key in ROIS:
        np.testing.assert_array_equal(plain.cutouts[key].pixels, block.cutouts[key].pixels)


@pytest.mark.parametrize("roi", [BRAGG, BACKGROUND, Roi(name="edge", detector=DETECTOR, x=(0, 512), y=(1000, 1024))],
                         ids=["bragg", "background", "bottom-rows"])
def test_full_frames_mode_frames_hold_the_cutouts_bit_for_bit(roi: Roi) -> None:
    cutouts = read_n(fast(4, rois={"r/v1": roi}), 48).cutouts["r/v1"]
    full = read_n(fast(4, rois={"r/v1": roi}, full_frames=True), 48)
    assert not full.cutouts
    frames = full.frames[DETECTOR]
    np.testing.assert_array_equal(frames.shot, np.flatnonzero(cutouts.valid))  # every shot with a frame
    region = frames.pixels[:, roi.y[0]:roi.y[1], roi.x[0]:roi.x[1]]
    np.testing.assert_array_equal(region, cutouts.pixels[cutouts.valid])  # NaN where NaN, equal elsewhere


def test_frames_are_raw_a_structured_pedestal_of_hundreds_of_adu() -> None:
    block = read_n(fast(8, rois={}, full_frames=True, shutter="closed"), 40)
    frames = block.frames[DETECTOR].pixels
    assert block.points[BEAM].mean() > 0.5 and not np.any(block.points[SHUTTER] == 1)  # beam on, shut
    mean = np.nanmean(frames, axis=0)
    assert 200 < np.median(mean) < 600  # hundreds of ADU
    top, bottom = np.median(mean[:512]), np.median(mean[512:])
    assert abs(bottom - top) > 30  # the sensor's halves differ
    columns = np.median(mean[:512], axis=0)
    assert np.std(columns) > 5  # each column has its own offset
    noise = np.nanstd(frames, axis=0)
    assert np.median(noise) == pytest.approx(6.0, rel=0.15)  # dark noise, 6 ADU
    hot = np.argwhere((mean - np.median(mean)) > 1000)
    assert 3 <= len(hot) <= 20 and np.all(noise[tuple(hot.T)] > 60)  # a few hot, noisy pixels
    assert any(800 <= r < 832 and 400 <= c < 432 for r, c in hot)  # one in the demo's background ROI


def test_nan_patch_overlaps_the_background_roi_on_a_few_shots() -> None:
    block = read_n(fast(3), 3000)
    bg, bragg = block.cutouts["background/v1"], block.cutouts["bragg/v1"]
    bad = np.isnan(bg.pixels).any(axis=(1, 2))
    assert 0.01 < bad.mean() < 0.06
    assert not np.isnan(bragg.pixels).any()
    where = np.argwhere(np.isnan(bg.pixels[bad]).any(axis=0))
    assert where[:, 0].min() >= 16 and where[:, 1].min() >= 16  # the patch is the ROI's corner
    assert 0 < np.isnan(bg.pixels[bad][0]).sum() < 0.2 * 16 * 16  # a small fraction of it


def test_a_dark_makes_roi_sums_photons_again() -> None:
    """Without a dark the pedestal is the ROI sum; minus a closed-shutter dark, photons are back."""
    sim = fast(2019)
    block = read_n(sim, 1200)
    cut = block.cutouts["bragg/v1"]
    pix = cut.pixels[cut.valid]
    raw = np.where(pix > THRESHOLD_ADU, pix, 0).sum(axis=(1, 2)) / ADU_PER_PHOTON
    dark = dark_of(BRAGG)
    signal = photons(pix, dark)
    assert np.mean(raw) > 3 * np.mean(signal)  # without a dark, every pixel passes the threshold
    i0 = block.points[I0][cut.valid]
    ok = np.isfinite(i0) & (i0 > 0.05)
    assert 60 < np.mean(signal[ok]) < 300  # ~150 photons per mean shot, laser off
    assert np.corrcoef(signal[ok], i0[ok])[0, 1] > 0.8  # photons follow I0; the pedestal does not
    assert np.corrcoef(raw[ok] - np.mean(raw[ok]), i0[ok])[0, 1] > 0.5
    assert np.mean(photons(dark_of(BRAGG, 100)[None], dark)) < 1  # a dark minus a dark is nothing


def test_background_photons_follow_the_scattering_profile() -> None:
    """Photons per unit intensity in an empty region = 600 x its share of exp(-r/1500) x Lorentzian."""
    roi = Roi(name="r", detector=DETECTOR, x=(100, 164), y=(500, 564))
    block = read_n(fast(12, rois={"r/v1": roi}), 3000)
    cut = block.cutouts["r/v1"]
    intensity = block.points[I0] / 0.25  # the I0 monitor reads 0.25 V at the mean full beam
    ok = cut.valid & np.isfinite(intensity)
    got = photons(cut.pixels[ok], dark_of(roi)).sum() / intensity[ok].sum()
    rows = (np.exp(-500 / 1500) - np.exp(-564 / 1500)) / (1 - np.exp(-1024 / 1500))
    cols = (np.arctan((164 - 256) / 400) - np.arctan((100 - 256) / 400)) / (2 * np.arctan(256 / 400))
    assert got == pytest.approx(600 * rows * cols, rel=0.05)


def test_the_demo_says_how_to_take_a_dark_and_its_recipe_gives_one() -> None:
    from shotwatch.schemas import demo_text, parse_config

    text = demo_text()
    assert "shotwatch dark -c dark.toml --shots 600 -o dark.zarr" in text
    assert '# dark = "dark.zarr"' in text and 'shutter = "closed"' in text
    dark_toml = text.replace('shutter = "auto"', 'shutter = "closed"').replace("rate = 30.0", "rate = 0")
    config = parse_config(tomllib.loads(dark_toml), origin="dark.toml")
    block = read_n(open_source(config, frames_every=0), 300)
    assert np.all(block.points[SHUTTER] == 0) and block.points[BEAM].mean() > 0.5
    shutter_veto = next(v for v in config.veto if v.name == SHUTTER)  # what [alarm] beam names
    assert shutter_veto.min is not None and np.all(block.points[SHUTTER] < shutter_veto.min)  # X-rays off
    cut = block.cutouts["bragg/v1"]
    assert photons(cut.pixels[cut.valid], dark_of(BRAGG)).max() < 1  # not a photon on the spot


@pytest.mark.parametrize("seed", [2019, 4])
def test_t0_recovered_within_one_bin(seed: int) -> None:
    sim = fast(seed)
    block = read_n(sim, 4800)
    truth = sim.describe().attrs["truth"]
    bragg = photons(block.cutouts["bragg/v1"].pixels, dark_of(BRAGG))
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
    above = cut.pixels - dark_of(BRAGG)
    mean = np.where(above > THRESHOLD_ADU, above, 0).mean(axis=0)
    rows, cols = np.indices(mean.shape)
    centroid = (float((rows * mean).sum() / mean.sum()), float((cols * mean).sum() / mean.sum()))
    assert centroid == pytest.approx((15.5, 15.5), abs=0.2)


def test_scripted_events_change_only_their_slots_and_every_share_sees_them() -> None:
    events = [{"event": "beam-off", "start": 100, "slots": 60}, {"event": "i0-drop", "start": 1000, "slots": 60},
              {"event": "stall", "start": 1100, "slots": 90}]
    plain = read_n(fast(6, rois=ROIS, shutter="open"), 1400)
    sim = fast(6, rois=ROIS, shutter="open", events=events)
    got = read_n(sim, 1300)
    first = sim.truth.first_tag
    slots = (got.tags - first) // 2
    assert not ((slots >= 1100) & (slots < 1190)).any()  # the stall: no shot at all
    keep = np.isin(plain.tags, got.tags)
    assert keep.sum() == len(got)
    ref = plain.select(keep)
    off, drop = (slots >= 100) & (slots < 160), (slots >= 1000) & (slots < 1060)
    assert (got.points[BEAM][off] == 0).all() and np.nanmax(np.abs(got.points[I0][off])) < 0.02
    np.testing.assert_allclose(np.nanmean(got.points[I0][drop]) / np.nanmean(ref.points[I0][drop]), 0.1, rtol=0.15)
    assert got.cutouts["bragg/v1"].pixels[drop].sum() < ref.cutouts["bragg/v1"].pixels[drop].sum()
    same = ~(off | drop)
    for name in (I0, BEAM, DELAY):  # photons are drawn per chunk, so only points stay shot for shot
        np.testing.assert_array_equal(got.points[name][same], ref.points[name][same])
    halves = [Simulator(SimSource(seed=6, rate=0, shutter="open", events=events), frames_every=0, rois=ROIS,
                        share=Share(k, 2), block_shots=500) for k in (0, 1)]
    parts = [read_n(h, 1100) for h in halves]
    both = ShotBlock.concat([p.select(p.tags < got.tags[-1] + 1) for p in parts])
    order = np.argsort(both.tags)
    np.testing.assert_array_equal(both.tags[order], got.tags)
    np.testing.assert_array_equal(both.cutouts["bragg/v1"].pixels[order], got.cutouts["bragg/v1"].pixels)


def test_start_after_continues_the_same_stream() -> None:
    whole = read_n(fast(6, rois={}), 3000)
    later = fast(6, rois={})
    later.start_after(int(whole.tags[1999]))
    rest = read_n(later, 1000)
    np.testing.assert_array_equal(rest.tags, whole.tags[2000:])
    np.testing.assert_array_equal(rest.points[I0], whole.points[I0][2000:])


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


def test_demo_config_reduces_to_the_truth_with_a_dark_and_not_without() -> None:
    """The demo, reduced by the real reducers: with the dark subtracted it shows the step at t0;
    on raw pixels the pedestal swamps it (what ``calibration.dark`` is for)."""
    from shotwatch.reducers.analysis import Analysis
    from shotwatch.reducers.summary import SummaryReducer

    demo = load_config(None)
    cfg = Config.model_validate({**demo.model_dump(), "source": {"kind": "sim", "seed": 2019, "rate": 0}})
    src = open_source(cfg, frames_every=0)
    info = src.describe()
    reducer = SummaryReducer(Analysis.from_config(cfg, ev_per_adu={d: i.ev_per_adu for d, i in info.detectors.items()}))
    raw = read_n(src, 4800)
    darks = {"bragg/v1": dark_of(BRAGG), "background/v1": dark_of(BACKGROUND)}
    dark_subtracted = raw.with_(cutouts={k: Cutout(np.where(c.valid[:, None, None], c.pixels - darks[k], 0),
                                                   c.valid, c.detector) for k, c in raw.cutouts.items()})
    truth = info.attrs["truth"]
    for block, found in ((dark_subtracted, True), (raw, False)):
        result = reducer.result(reducer.update(reducer.init(), block))
        assert result["shots"]["vetoed"][BEAM] > 0
        bins = result["scan"]["rois"]["bragg"]
        diff = np.array(bins["on"]["norm"], dtype=float) / np.array(bins["off"]["norm"], dtype=float) - 1
        late = float(np.mean(diff[-3:]))
        assert (late == pytest.approx(truth["amplitude"], abs=0.08)) is found
        if found:
            centres = np.array(result["scan"]["centers"])
            first = int(np.argmax(diff < truth["amplitude"] / 2))
            assert abs(centres[first] - truth["t0_ps"]) <= 0.2 + 1e-9
        else:  # the pedestal dilutes the on/off change several times over
            assert abs(late) < abs(truth["amplitude"]) / 2


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
