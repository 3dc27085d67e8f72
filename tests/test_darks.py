"""Darks: the per-pixel moments reducer, ``shotwatch dark``, and darks applied live.

The reference for the reducer is numpy's ``nanmean``/``nanstd`` over the frames, computed
here, never by the code under test.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shotwatch.cli import main
from shotwatch.commands.reduce_cmd import summarize
from shotwatch.console.darks import dark_from_reply
from shotwatch.console.feedloop import FeedLoop
from shotwatch.console.model import LiveModel
from shotwatch.link.localfeed import LocalFeed
from shotwatch.link.messages import AnalysisMsg, BlockMsg, DarkMsg, Message, StateMsg
from shotwatch.link.netfeed import NetFeed
from shotwatch.recorder.acquire import Recorder
from shotwatch.recorder.service import Service
from shotwatch.recording import RecordingReader
from shotwatch.recording.analysis_config import recording_analysis, recording_darks
from shotwatch.recording.darkfile import read_dark_file, write_dark_file
from shotwatch.reducers import Analysis
from shotwatch.reducers.pixels import PixelMoments, PixelReducer
from shotwatch.schemas import ConfigError, DarkFrame, Frames, ReplaySource, ShotBlock, demo_text, load_config
from shotwatch.sources.sim import DETECTOR, Simulator
from shotwatch.sources.sim_detector import pedestal

DET = "D"


def _frames(seed: int, k: int, shape: tuple[int, int] = (5, 7)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(350.0, 6.0, (k, *shape)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    x[:, 0, 0] = np.nan  # never finite: its dark is NaN, nothing else is
    return x


def _block(pixels: np.ndarray, first_tag: int) -> ShotBlock:
    k = pixels.shape[0]
    tags = first_tag + 2 * np.arange(k, dtype=np.int64)
    return ShotBlock(tags, np.full(k, np.nan), {}, {}, {DET: Frames(pixels, np.arange(k, dtype=np.int64))})


@given(seed=st.integers(0, 2**31), cuts=st.lists(st.integers(1, 39), max_size=4, unique=True))
def test_pixel_moments_any_split_equals_nanmean_nanstd(seed: int, cuts: list[int]) -> None:
    x = _frames(seed, 40)
    red = PixelReducer(DET)
    edges = [0, *sorted(cuts), 40]
    parts = [red.update(red.init(), _block(x[a:b], 100 + 2 * a)) for a, b in zip(edges, edges[1:], strict=False)]
    # merged in a tree other than left to right
    while len(parts) > 1:
        parts = [red.merge(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    dark = red.result(parts[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-NaN pixel
        want_mean, want_std = np.nanmean(x.astype(np.float64), axis=0), np.nanstd(x.astype(np.float64), axis=0)
    assert dark.mean.dtype == np.float32 and dark.std.dtype == np.float32
    np.testing.assert_allclose(dark.mean, want_mean, rtol=1e-6)
    np.testing.assert_allclose(dark.std, want_std, rtol=1e-4, atol=1e-4)
    assert np.isnan(dark.mean[0, 0]) and np.isfinite(dark.mean[1:, :]).all()
    assert (dark.frames, dark.first_tag, dark.last_tag) == (40, 100, 178)


def test_pixel_reducer_stops_at_its_limit() -> None:
    x = _frames(1, 30)
    red = PixelReducer(DET, limit=25)
    state = red.update(red.init(), _block(x[:20], 0))
    assert not red.done(state)
    state = red.update(state, _block(x[20:], 40))
    assert red.done(state) and state.frames == 25 and state.last_tag == 48
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(red.result(state).mean[1:], np.nanmean(x[:25].astype(np.float64), axis=0)[1:],
                                   rtol=1e-6)
    assert PixelMoments.empty().shape == ()


# --- shotwatch dark, and calibration.dark live --------------------------------------------------

PREFIX = "shotwatch: error: "
SHUTTER_VETO = "xfel_bl_3_shutter_1_open_valid/status"
BEAM_VETO = "xfel_mon_bpm_bl3_0_3_beamstatus/summary"


def _config(tmp: Path, name: str, *, dark: str | None = None, shutter: str = "auto", frames_every: int = 30,
            beam: str | None = None, seed: int = 2019, extra: str = "") -> Path:
    """The demo at rate 0 with the given changes, written to ``tmp/name``."""
    text = demo_text().replace("rate = 30.0 ", "rate = 0 ").replace('shutter = "auto" ', f'shutter = "{shutter}" ')
    text = text.replace("seed = 2019 ", f"seed = {seed} ")
    text = text.replace("frames_every = 30 ", f"frames_every = {frames_every} ")
    if dark is not None:
        text = text.replace('# dark = "dark.zarr" ', f'dark = "{dark}" ')
    if beam is not None:
        text = text.replace("[[roi]] ", f'[alarm]\nbeam = "{beam}"\n\n[[roi]] ', 1)
    path = tmp / name
    path.write_text(text + extra)
    return path


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(result: tuple[int, str, str], *contains: str) -> str:
    code, out, err = result
    lines = [ln for ln in err.splitlines() if ln.startswith(PREFIX)]
    assert code == 2 and out == "" and "Traceback" not in err and len(lines) == 1, result
    assert "expected" in lines[0] and "found" in lines[0], lines[0]
    for c in contains:
        assert c in lines[0], (c, lines[0])
    return lines[0]


@pytest.fixture(autouse=True)
def _quiet_logging() -> Iterator[None]:
    yield
    logger = logging.getLogger("shotwatch")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def test_dark_command_averages_frames_over_finite_values_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, "dark.toml", shutter="closed", beam=SHUTTER_VETO, seed=2025)  # 4 glitches in 40 frames
    out = tmp_path / "d.zarr"
    code, stdout, _ = _cli(capsys, "dark", "-c", str(cfg), "--shots", "40", "-o", str(out))
    assert code == 0 and stdout == f"dark of 40 frames ({DETECTOR}) to {out}\n"
    dark = read_dark_file(out)[DETECTOR]
    # the reference: the same frames straight from the simulator, averaged here with numpy
    sim = Simulator(load_config(cfg).source, frames_every=30)  # type: ignore[arg-type]
    sim.open()
    frames: list[np.ndarray] = []
    tags: list[int] = []
    while len(frames) < 40:
        block = sim.read(timeout=1.0)
        if block is not None and DETECTOR in block.frames:
            f = block.frames[DETECTOR]
            frames += list(f.pixels)
            tags += [int(block.tags[s]) for s in f.shot]
    stack = np.asarray(frames[:40], np.float64)
    assert np.isnan(stack).any(axis=0).sum() > 10  # the NaN patch was on in some of these frames ...
    np.testing.assert_allclose(dark.mean, np.nanmean(stack, axis=0), rtol=1e-6)
    np.testing.assert_allclose(dark.std, np.nanstd(stack, axis=0), rtol=1e-3, atol=1e-3)
    assert np.isfinite(dark.mean).all()  # ... and no pixel of the dark is NaN
    assert (dark.frames, dark.first_tag, dark.last_tag) == (40, tags[0], tags[39])
    assert 300 < float(np.median(dark.mean)) < 400  # the pedestal, no photons


def test_dark_command_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    beam_on = _config(tmp_path, "beam.toml", shutter="closed", beam=BEAM_VETO)  # shutter shut, beam status on
    _one_line(_cli(capsys, "dark", "-c", str(beam_on), "--shots", "5", "-o", str(tmp_path / "a.zarr")),
              "beam.toml", f"beam on (veto {BEAM_VETO} passes)")
    assert not (tmp_path / "a.zarr").exists()
    code, stdout, _ = _cli(capsys, "dark", "-c", str(beam_on), "--shots", "5", "--force", "-o", str(tmp_path / "a.zarr"))
    assert code == 0 and "dark of 5 frames" in stdout
    no_frames = _config(tmp_path, "noframes.toml", shutter="closed", frames_every=0)
    _one_line(_cli(capsys, "dark", "-c", str(no_frames), "--shots", "5", "-o", str(tmp_path / "b.zarr")),
              "noframes.toml", f"expected full frames of {DETECTOR} from the source, found none in")
    _one_line(_cli(capsys, "dark", "-c", str(no_frames), "--shots", "0", "-o", str(tmp_path / "b.zarr")),
              "--shots", "found 0")
    _one_line(_cli(capsys, "dark", "-c", str(no_frames), "-o", str(tmp_path / "a.zarr")),
              "a.zarr", "expected a new dark file path")
    assert not (tmp_path / "b.zarr").exists()


def _frame(shape: tuple[int, int], fill: float = 350.0) -> DarkFrame:
    return DarkFrame(np.full(shape, fill, np.float32), np.ones(shape, np.float32), 3, 0, 4)


def test_bad_dark_files_are_refused_at_start_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    write_dark_file(tmp_path / "shape.zarr", {DETECTOR: _frame((512, 512))}, source={})
    write_dark_file(tmp_path / "other.zarr", {"MPCCD-9": _frame((1024, 512))}, source={})
    write_dark_file(tmp_path / "v2.zarr", {DETECTOR: _frame((1024, 512))}, source={})
    meta = tmp_path / "v2.zarr" / "zarr.json"
    meta.write_text(meta.read_text().replace('"version": 1', '"version": 2'))
    (tmp_path / "plain").mkdir()
    write_dark_file(tmp_path / "ok.zarr", {DETECTOR: _frame((1024, 512))}, source={})
    rec = _config(tmp_path, "rec.toml", dark="ok.zarr")
    Recorder(load_config(rec), out=str(tmp_path / "rec.zarr")).run(shots=3)
    cases = {
        "rec.zarr": ["expected format 'shotwatch.dark' version 1 (a dark file), found format 'shotwatch.recording'"],
        "nothing.zarr": ["nothing.zarr: expected a shotwatch dark file (a zarr v3 group), found nothing"],
        "shape.zarr": [f"expected a dark of {DETECTOR}'s 1024 x 512 pixels, found 512 x 512 in shape.zarr"],
        "other.zarr": [f"expected a dark of the configuration's detectors ({DETECTOR}), found 'MPCCD-9'"],
        "v2.zarr": ["expected format 'shotwatch.dark' version 1 (a dark file), found format 'shotwatch.dark' version 2"],
        "plain": ["plain", "expected"],
    }
    for i, (name, contains) in enumerate(cases.items()):
        cfg = _config(tmp_path, f"{name}.toml", dark=name)
        out = tmp_path / f"out-{name}"
        if i < 2:  # the whole command line twice; the recorder's start for the others (no sockets: faster)
            result = _cli(capsys, "record", "-c", str(cfg), "--shots", "5", "-o", str(out), "--publish", "auto",
                          "--control", "auto")
        else:
            with pytest.raises(ConfigError) as exc:
                Recorder(load_config(cfg), out=str(out), origin=str(cfg)).open()
            result = (2, "", f"{PREFIX}{exc.value}\n")
        _one_line(result, f"{name}.toml: calibration.dark: ", *contains)
        assert not out.exists()


def assert_close(a: object, b: object, where: str = "") -> None:
    """Counts exactly, values to 1e-9 relative (DESIGN.md)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)


def test_a_dark_applies_live_and_the_recording_carries_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Record with a dark file, then reduce with the file gone: the live numbers, dark subtracted."""
    dark = DarkFrame(pedestal(), np.ones((1024, 512), np.float32), 7, 2, 14)  # the sensor's true pedestal
    write_dark_file(tmp_path / "d.zarr", {DETECTOR: dark}, source={})
    cfg = _config(tmp_path, "use.toml", dark="d.zarr")
    rec = Recorder(load_config(cfg), out=str(tmp_path / "rec.zarr"), summary=True, origin=str(cfg))
    rec.run(shots=400)
    live = rec.summary()
    (tmp_path / "d.zarr").rename(tmp_path / "moved.zarr")
    code, out, _ = _cli(capsys, "reduce", str(tmp_path / "rec.zarr"), "--json")
    assert code == 0
    assert_close(live, json.loads(out))
    reader = RecordingReader(tmp_path / "rec.zarr")
    assert reader.analysis_versions()[-1].config["calibration"]["dark"] == {DETECTOR: 1}
    np.testing.assert_array_equal(reader.dark(DETECTOR, 1).mean, dark.mean)
    # the pedestal is gone: a background ROI of a few photons, not hundreds (demo.toml says ~400-470)
    assert 0 <= live["rois"]["background"]["mean"] < 20 and live["rois"]["bragg"]["mean"] > 20


def test_a_console_fetches_the_dark_it_lacks_and_reduces_nothing_without_it(tmp_path: Path) -> None:
    """A console joining a recorder whose analysis names a dark asks ``get_dark``; until the
    frame is in it reduces nothing (and says so); then its numbers equal reduce --tags."""
    write_dark_file(tmp_path / "d.zarr", {DETECTOR: DarkFrame(pedestal(), np.ones((1024, 512), np.float32), 7, 2, 14)},
                    source={})
    cfg = load_config(_config(tmp_path, "use.toml", dark="d.zarr"))
    recorder = Recorder(cfg, out=str(tmp_path / "rec.zarr"))
    recorder.open()
    feed = LocalFeed(recorder)
    hello = feed.hello(timeout=1)
    assert hello is not None and hello.config.calibration.dark == {DETECTOR: 1}
    assert [(v.detector, v.version, v.frames) for v in hello.darks] == [(DETECTOR, 1, 7)]
    model = LiveModel(hello)
    posted: list[object] = []
    loop = FeedLoop(feed, post=posted.append, snapshot_every=0.05)
    loop.model = model
    thread = threading.Thread(target=lambda: recorder.run(shots=900))
    thread.start()
    model.apply(BlockMsg(0, _first_block(feed)))  # a block before the dark is here: not reduced
    snap = model.snapshot()
    assert snap.missing_darks == (f"{DETECTOR} v1",) and snap.waiting_shots > 0
    assert snap.summary["shots"]["total"] == 0
    loop._fetch_darks()  # on the feed thread, as the loop does after each poll
    assert model.missing_darks == [] and any("fetching it from the recorder" in getattr(m, "text", "") for m in posted)
    while thread.is_alive() or feed.poll(timeout=0):
        for msg in feed.poll(timeout=0.1):
            model.apply(msg)
    thread.join()
    for msg in feed.poll(timeout=0.2):
        model.apply(msg)
    feed.close()
    snap = model.snapshot()
    assert snap.summary["shots"]["total"] > 0 and snap.missing_darks == ()
    (lo, hi), = snap.tag_ranges
    (tmp_path / "d.zarr").rename(tmp_path / "gone.zarr")
    reader = RecordingReader(tmp_path / "rec.zarr").select(tags=(lo, hi))
    cfg_rec = recording_analysis(reader)[1]
    offline = summarize(reader, Analysis.from_config(cfg_rec, detectors=reader.detectors,
                                                     darks=recording_darks(cfg_rec, reader, origin="rec")))
    assert_close(snap.summary, offline)


def _first_block(feed: LocalFeed) -> ShotBlock:
    while True:
        for msg in feed.poll(timeout=1.0):
            if isinstance(msg, BlockMsg):
                return msg.block


def test_the_dark_request_takes_records_sends_and_applies_a_dark(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``dark`` while recording: refused while the beam veto passes (unless forced); else the
    next N frames become the detector's next dark version, sent to every console (DarkMsg,
    get_dark) and named by the next analysis version, under which the values drop to photons."""
    cfg = load_config(_config(tmp_path, "d.toml", shutter="closed", beam=BEAM_VETO))  # beam status: on
    recorder = Recorder(cfg, out=str(tmp_path / "rec.zarr"), summary=True)
    feed = LocalFeed(recorder)
    thread = threading.Thread(target=lambda: recorder.run(seconds=60))
    thread.start()
    try:
        _first_block(feed)
        refused = feed.request("dark", detector=DETECTOR, n=30, timeout=5)
        assert not refused.ok and refused.error is not None
        assert refused.error.startswith(f"dark: beam on (veto {BEAM_VETO} passes): expected the beam off")
        assert not feed.request("dark", detector="nope", n=30, timeout=5).ok
        reply = feed.request("dark", detector=DETECTOR, n=30, force=True, timeout=30)
        assert reply.ok, reply.error
        assert reply.data["dark_version"] == 1 and reply.data["version"] == 2
        msgs = list(_until(feed, lambda m: isinstance(m, StateMsg)))  # the recomputation follows
        dark = next(m for m in msgs if isinstance(m, DarkMsg))
        change = next(m for m in msgs if isinstance(m, AnalysisMsg))
        assert change.config.calibration.dark == {DETECTOR: 1} and change.version.version == 2
        assert msgs.index(dark) < msgs.index(change)
        got = feed.request("get_dark", detector=DETECTOR, version=1, timeout=5)
        frame = dark_from_reply(got, detector=DETECTOR, version=1, shapes={DETECTOR: (1024, 512)})
        np.testing.assert_array_equal(frame.mean, dark.frame.mean)
        assert frame.frames == 30 and np.isfinite(frame.mean).all()
        hello = feed.hello(timeout=1)
        assert hello is not None and hello.config.calibration.dark == {DETECTOR: 1}
        assert [v.version for v in hello.darks] == [1]
        assert not feed.request("get_dark", detector=DETECTOR, version=2, timeout=5).ok
    finally:
        recorder.stop()
        thread.join()
        feed.close()
    reader = RecordingReader(tmp_path / "rec.zarr")
    code, out, _ = _cli(capsys, "reduce", str(tmp_path / "rec.zarr"), "--json")
    assert code == 0
    assert_close(recorder.summary(), json.loads(out))  # live (recomputed prefix ⊕ since) == reduce, dark applied
    versions = reader.analysis_versions()
    assert [v.config["calibration"]["dark"] for v in versions] == [None, {DETECTOR: 1}]
    assert versions[1].by == "dark" and versions[1].first_shot > 0
    np.testing.assert_array_equal(reader.dark(DETECTOR, 1).mean, dark.frame.mean)
    # the closed shutter: after the dark, values are a few photons of noise, before it the pedestal
    before = RecordingReader(tmp_path / "rec.zarr").select(tags=(None, versions[1].first_tag))
    after = RecordingReader(tmp_path / "rec.zarr").select(tags=(versions[1].first_tag, None))
    every = {"i0": None, "veto": []}  # the shutter is closed: judge all shots, not the accepted (none)
    cfg2 = recording_analysis(reader)[1].model_copy(update=every)
    a2 = Analysis.from_config(cfg2, detectors=reader.detectors, darks=recording_darks(cfg2, reader, origin="rec"))
    a1 = Analysis.from_config(recording_analysis(reader, 1)[1].model_copy(update=every), detectors=reader.detectors)
    assert summarize(before, a1)["rois"]["bragg"]["mean"] > 300
    assert summarize(after, a2)["rois"]["bragg"]["mean"] < 5


def test_append_keeps_an_equal_dark_and_records_another_as_the_next_version(tmp_path: Path) -> None:
    write_dark_file(tmp_path / "a.zarr", {DETECTOR: _frame((1024, 512), 350.0)}, source={})
    write_dark_file(tmp_path / "b.zarr", {DETECTOR: _frame((1024, 512), 340.0)}, source={})
    out = str(tmp_path / "rec.zarr")
    Recorder(load_config(_config(tmp_path, "a.toml", dark="a.zarr")), out=out).run(shots=60)
    Recorder(load_config(_config(tmp_path, "a.toml", dark="a.zarr")), out=out, append=True).run(shots=60)
    reader = RecordingReader(out)
    assert [v.version for v in reader.darks()[DETECTOR]] == [1] and len(reader.analysis_versions()) == 1
    recorder = Recorder(load_config(_config(tmp_path, "b.toml", dark="b.zarr")), out=out, append=True, summary=True)
    recorder.run(shots=60)
    reader = RecordingReader(out)
    assert [v.version for v in reader.darks()[DETECTOR]] == [1, 2]
    versions = reader.analysis_versions()
    assert [(v.version, v.first_shot, v.config["calibration"]["dark"]) for v in versions] == \
        [(1, 0, {DETECTOR: 1}), (2, 120, {DETECTOR: 2})]
    assert float(reader.dark(DETECTOR, 2).mean[0, 0]) == 340.0
    # a replay needs no dark file either: the recorder takes the recording's dark versions
    (tmp_path / "a.zarr").rename(tmp_path / "gone.zarr")
    replay = Recorder(load_config(_config(tmp_path, "a.toml", dark=None)).model_copy(
        update={"source": ReplaySource(path=out, speed=0), "calibration": reader.config.calibration}),
        record=False, summary=True)
    replay.open()
    assert replay.analysis is not None and float(replay.analysis.darks[DETECTOR].mean[0, 0]) == 350.0


def _until(feed: LocalFeed, done: Callable[[Message], bool], limit: float = 30.0) -> Iterator[Message]:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        for msg in feed.poll(timeout=0.1):
            yield msg
            if done(msg):
                return
    pytest.fail("the recorder did not deliver in time")


def test_a_console_over_the_network_fetches_a_dark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``get_dark`` through the real sockets and the control process: the frame, whole."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    dark = DarkFrame(pedestal(), np.full((1024, 512), 6.0, np.float32), 7, 2, 14)
    write_dark_file(tmp_path / "d.zarr", {DETECTOR: dark}, source={})
    recorder = Recorder(load_config(_config(tmp_path, "use.toml", dark="d.zarr")), record=False)
    recorder.open()
    thread = threading.Thread(target=lambda: recorder.run(seconds=30))
    with Service(recorder, publish="auto", control="auto", runfile=False) as service:
        thread.start()
        try:
            with NetFeed(service.addresses["control"], read_only=True) as feed:
                hello = feed.hello(timeout=10)
                assert hello is not None and [(v.detector, v.version) for v in hello.darks] == [(DETECTOR, 1)]
                reply = feed.request("get_dark", detector=DETECTOR, version=1, timeout=10)  # no token needed
                got = dark_from_reply(reply, detector=DETECTOR, version=1, shapes={DETECTOR: (1024, 512)})
                np.testing.assert_array_equal(got.mean, dark.mean)
                np.testing.assert_array_equal(got.std, dark.std)
                assert (got.frames, got.first_tag, got.last_tag) == (7, 2, 14)
                assert not feed.request("dark", detector=DETECTOR, n=5, timeout=10).ok  # read-only: no dark
        finally:
            recorder.stop()
            thread.join()
