"""The SACLA source against the dbpy/olpy emulator in tests/emulators/sacla (FACILITY.md)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shotwatch.schemas import Config, Roi, ShotBlock, SourceError, load_config
from shotwatch.sources import Source
from shotwatch.sources.sacla import SaclaStream, make
from source_conformance import SourceConformance

EMU_DIR = Path(__file__).parent / "emulators" / "sacla"
sys.path.insert(0, str(EMU_DIR))
import _sacla_emu as E  # noqa: E402
import dbpy  # noqa: E402
import olpy  # noqa: E402

REPO = Path(__file__).parents[1]
FAST = {"speed": 4.0, "frame_shape": (64, 32)}  # 120 shots/s of wall time (30 Hz x 4), small frames


@pytest.fixture
def emu() -> Iterator[E.Emulator]:
    dbpy._emu.reset(**FAST)
    yield dbpy._emu
    dbpy._emu.reset()


def config(**source: Any) -> Config:
    """A SACLA configuration with I0, a beam veto, a delay scan and (by default) one ROI."""
    rois = source.pop("rois", [{"name": "bragg", "detector": E.SINGLE, "x": [8, 24], "y": [8, 24]}])
    data = {"source": {"kind": "sacla", "api_path": str(EMU_DIR), "points": [E.SHUTTER], **source},
            "i0": {"name": E.I0, "min": 0.05}, "veto": [{"name": E.BEAM, "min": 0.5}],
            "scan": {"name": E.DELAY, "edges": [-1000, 0, 3000]}, "roi": rois}
    return Config.model_validate(data)


@pytest.fixture
def opened() -> Iterator[Callable[..., SaclaStream]]:
    made: list[SaclaStream] = []

    def _open(cfg: Config | None = None, **source: Any) -> SaclaStream:
        src = make(cfg or config(**source))
        src.poll_interval = 0.05
        made.append(src)
        src.open()
        return src

    yield _open
    for src in made:
        src.close()


def gather(src: SaclaStream, seconds: float, *, until: Callable[[], bool] | None = None) -> list[ShotBlock]:
    """Blocks read for ``seconds`` (or until ``until()`` holds)."""
    blocks, end = [], time.monotonic() + seconds
    while time.monotonic() < end and not (until and until()):
        block = src.read(timeout=0.1)
        if block is not None:
            blocks.append(block.validate())
    return blocks


def wait_for(cond: Callable[[], bool], seconds: float = 3.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def run_tags(run: int) -> np.ndarray:
    return np.asarray(dbpy.read_taglist_byrun(3, run), dtype=np.int64)


def check_exact(blocks: list[ShotBlock], run: int) -> np.ndarray:
    """Delivered tags are exactly the run's tags over the span delivered: none invented or lost."""
    tags = np.concatenate([b.tags for b in blocks])
    assert np.all(np.diff(tags) > 0)
    truth = run_tags(run)
    span = truth[(truth >= tags[0]) & (truth <= tags[-1])]
    np.testing.assert_array_equal(tags, span)
    return tags


class TestSaclaConformance(SourceConformance):
    """The protocol's promises, against the emulator (one ROI on a small MPCCD sensor)."""

    slack = 0.15
    first_blocks_within = 5.0

    @pytest.fixture
    def source_factory(self, emu: E.Emulator) -> Callable[[], Source]:
        def build() -> Source:
            src = make(config())
            src.poll_interval = 0.05
            return src
        return build


# --- import and configuration errors ------------------------------------------------------------


def test_package_import_does_not_import_dbpy() -> None:
    code = ("import sys, shotwatch, shotwatch.sources, shotwatch.sources.sacla as s; "
            "from shotwatch.schemas import load_config; "
            "s.make(load_config('fixtures/sacla.toml')); "
            "assert 'dbpy' not in sys.modules and 'olpy' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=30)


def test_missing_api_is_one_line_saying_how(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "emulators" not in p])
    monkeypatch.delitem(sys.modules, "dbpy")
    monkeypatch.delitem(sys.modules, "olpy")
    for api_path in (None, str(tmp_path)):
        src = make(config(api_path=api_path))
        with pytest.raises(SourceError) as err:
            src.open()
        msg = str(err.value)
        assert "\n" not in msg and "dbpy" in msg and "PYTHONPATH" in msg and "source.api_path" in msg
    with pytest.raises(SourceError, match=r"source.api_path: expected a directory"):
        make(config(api_path=str(tmp_path / "nowhere"))).open()


def test_cli_exit_2_and_one_line_without_dbpy(tmp_path: Path) -> None:
    cfg = tmp_path / "sacla.toml"
    cfg.write_text('[source]\nkind = "sacla"\n')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "shotwatch", "list", "-c", str(cfg)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("shotwatch: error: ") and "PYTHONPATH or set source.api_path" in done.stderr


def test_cli_list_with_the_emulator_configured_by_environment() -> None:
    env = {**os.environ, "SACLA_EMU": json.dumps({"missing_det": [E.SINGLE], "frame_shape": [64, 32]})}
    done = subprocess.run([sys.executable, "-m", "shotwatch", "list", "-c", "fixtures/sacla.toml", "MPCCD"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert E.SINGLE not in done.stdout and E.OCTAL[7] in done.stdout and "64" in done.stdout


@pytest.mark.parametrize(("bad", "where", "good"), [
    ({"points": ["xfel_bl_3_shutter_1_open_valid/stat"]}, "source.points[0]", E.SHUTTER),
    ({"reference": "xfel_bl_3_tc_bm_1_pd"}, "source.reference", E.REF),
    ({"points": ["xfel_bl_3_st_5_pd_user_5_fiting_peak/voltage"]}, "source.points[0]", E.I0),
])
def test_unknown_point_lists_close_matches(emu: E.Emulator, bad: dict[str, Any], where: str,
                                           good: str) -> None:
    with pytest.raises(SourceError) as err:
        make(config(**bad)).open()
    msg = str(err.value)
    assert msg.startswith(where + ": expected a point detector") and good in msg and "\n" not in msg
    assert len(msg) < 600  # suggestions, not the thousands of names


def test_unknown_analysis_point_names_its_key(emu: E.Emulator) -> None:
    cfg = config().model_copy(update={"i0": config().i0.model_copy(update={"name": "i0/typo"})})  # type: ignore[union-attr]
    with pytest.raises(SourceError, match=r"^i0.name: expected a point detector .* found 'i0/typo'"):
        make(cfg).open()


# --- the stream ---------------------------------------------------------------------------------


def test_protocol_describe_and_make(emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    src = opened()
    assert isinstance(src, Source)
    assert src.points == [E.SHUTTER, E.I0, E.BEAM, E.DELAY]  # source.points + analysis points
    info = src.describe()
    assert info.kind == "sacla" and info.run == emu.runs[-1].number and info.hightag == E.HIGHTAG
    assert set(info.detectors) == {E.SINGLE, *E.OCTAL}
    det = info.detectors[E.SINGLE]
    assert det.shape == (64, 32) and det.dtype == "float32" and det.ev_per_adu == pytest.approx(3.0 * 3.65)
    assert info.points == list(dbpy.read_equiplist()) and len(info.points) > 1500
    assert info.attrs["frames_every"] == 60 and info.attrs["beamline"] == 3
    src.close()
    src.close()  # idempotent
    assert src.read(timeout=0.05) is None


def test_tags_step_by_two_with_skips_and_no_phantoms(emu: E.Emulator,
                                                     opened: Callable[..., SaclaStream]) -> None:
    emu.configure(skip=0.15)
    src = opened(ngrab=7)
    blocks = gather(src, 1.2)
    assert len(blocks) >= 4 and all(0 < len(b) <= 7 for b in blocks)
    tags = check_exact(blocks, emu.runs[-1].number)
    steps = np.diff(tags)
    assert set(steps.tolist()) >= {2, 4} and np.all(steps % 2 == 0)  # step 2 and skipped shots
    block = blocks[-1]
    for name, values in block.points.items():
        assert values.dtype == np.float64
        np.testing.assert_array_equal(values, emu.values(name, block.tags))
    fr = block.frames[E.SINGLE]
    for row, shot in enumerate(fr.shot):
        np.testing.assert_array_equal(fr.pixels[row], emu.frame(E.SINGLE, int(block.tags[shot])))


def test_backlog_comes_in_ngrab_blocks_in_order(emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    src = opened(ngrab=5, rois=[])
    time.sleep(0.6)  # fall behind: the poller keeps reading; blocks wait in the queue
    blocks = gather(src, 0.6)
    assert max(len(b) for b in blocks) == 5
    check_exact(blocks, emu.runs[-1].number)


def test_a_slow_reader_loses_images_counted_not_shots(emu: E.Emulator,
                                                      opened: Callable[..., SaclaStream]) -> None:
    emu.configure(buffer_seconds=0.5)  # 0.125 s of wall time at speed 4
    src = opened()
    gather(src, 0.2)
    time.sleep(0.5)  # the queue fills, the poller waits, the image buffer moves on
    blocks = gather(src, 0.6)
    check_exact(blocks, emu.runs[-1].number)  # every shot, with its points
    gone = src.status().counters["image gone"]
    framed = sum(len(b.frames[E.SINGLE].shot) for b in blocks if E.SINGLE in b.frames)
    assert gone > 0 and framed > 0 and src.status().state == "running"


def test_blocks_of_full_frames_stay_small(opened: Callable[..., SaclaStream]) -> None:
    dbpy._emu.reset(speed=1.0)  # real 1024 x 512 sensors at 60 Hz
    try:
        src = opened(rois=[{"name": f"s{i}", "detector": d, "x": [0, 8], "y": [0, 8]}
                           for i, d in enumerate(E.OCTAL)])
        assert src._block_size() == 8  # 8 sensors x 2 MiB x 8 shots = 128 MiB
        time.sleep(0.4)  # a backlog of ~24 shots
        blocks = gather(src, 0.5)
        # never more than 8 shots of full octal frames in one block, whatever the backlog
        assert blocks and max(len(b) for b in blocks) <= 8 and set(blocks[-1].frames) == set(E.OCTAL)
        assert "image gone" not in src.status().counters
    finally:
        dbpy._emu.reset()


def test_full_frames_carry_the_bragg_spot(opened: Callable[..., SaclaStream]) -> None:
    dbpy._emu.reset(speed=1.0)  # real 1024 x 512 sensors at 60 Hz
    try:
        src = opened()
        blocks = gather(src, 0.6)
        fr = blocks[-1].frames[E.SINGLE]
        assert fr.pixels.shape[1:] == (1024, 512) and fr.pixels.dtype == np.float32
        np.testing.assert_array_equal(fr.shot, np.arange(len(blocks[-1])))
        y, x = E.SPOT_YX
        spot = fr.pixels[:, y - 16:y + 16, x - 16:x + 16].sum(axis=(1, 2))
        expect = dbpy._emu.photons(blocks[-1].tags) * E.ADU_PER_PHOTON
        np.testing.assert_allclose(spot, expect, rtol=0.02, atol=2000)
    finally:
        dbpy._emu.reset()


# --- faults -------------------------------------------------------------------------------------


def test_a_failed_point_read_is_retried_while_young_then_nan_counted_and_noticed(
        emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    src = opened(rois=[])
    gather(src, 0.3)
    emu.configure(fail_equip={E.I0: 3})  # three failed reads: the shots wait and are read again
    blocks = gather(src, 1.0)
    assert all(np.isfinite(b.points[E.I0]).all() for b in blocks) and "read errors" not in src.status().counters
    emu.configure(fail_equip=[E.I0])  # fails for good: after source.latency, NaN
    blocks = gather(src, 1.5)
    bad = [b for b in blocks if np.isnan(b.points[E.I0]).all()]
    assert bad and all(np.isfinite(b.points[E.DELAY]).all() for b in bad)
    st = src.status()
    assert st.counters["read errors"] == len(bad) and st.missing[E.I0] == sum(len(b) for b in bad)
    emu.configure(fail_equip={})
    assert wait_for(lambda: (b := src.read(timeout=0.1)) is not None and bool(np.isfinite(b.points[E.I0]).all()), 3.0)
    notes = src.notices()
    assert any(n.startswith(E.I0 + ": read failed") and "NaN" in n for n in notes)
    assert len([n for n in notes if "read failed" in n]) == 1  # repeats are throttled


def test_values_missing_for_some_tags_are_nan_and_counted(emu: E.Emulator,
                                                          opened: Callable[..., SaclaStream]) -> None:
    emu.configure(point_missing=0.1)
    src = opened(rois=[])
    blocks = gather(src, 0.6)
    nan = sum(int(np.isnan(b.points[E.BEAM]).sum()) for b in blocks)
    assert nan > 0 and src.status().missing[E.BEAM] == nan
    assert "read errors" not in src.status().counters


def test_images_not_in_buffer_are_counted_as_gone(emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    emu.configure(drop_images=0.2)
    src = opened()
    blocks = gather(src, 0.8)
    n = sum(len(b) for b in blocks)
    framed = sum(len(b.frames[E.SINGLE].shot) for b in blocks if E.SINGLE in b.frames)
    assert 0 < framed < n
    assert src.status().counters["image gone"] == n - framed == src.status().missing[E.SINGLE]


def test_images_lagging_the_database_are_waited_for(emu: E.Emulator,
                                                    opened: Callable[..., SaclaStream]) -> None:
    emu.configure(image_latency=0.4)  # 0.1 s of wall time at speed 4: two polls
    src = opened()
    blocks = gather(src, 1.0)
    check_exact(blocks, emu.runs[-1].number)
    assert "image gone" not in src.status().counters
    assert all(len(b.frames[E.SINGLE].shot) == len(b) for b in blocks)


def test_a_detector_sending_no_images_does_not_delay_blocks(emu: E.Emulator,
                                                            opened: Callable[..., SaclaStream]) -> None:
    emu.configure(drop_images=1.0)  # in the run's detector list, but no image ever arrives
    src = opened()
    src._hold.hold_max = 0.2
    gather(src, 0.5)  # the first block waits up to hold_max for its images, then none do
    t = time.monotonic()
    blocks = gather(src, 0.6)
    assert len(blocks) >= 4 and all(not b.frames for b in blocks)
    assert time.monotonic() - t < 0.8 and src.status().counters["image gone"] > 0


def test_outage_disconnects_retries_and_catches_up(emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    emu.configure(buffer_seconds=0.4)
    src = opened()
    gather(src, 0.3)
    emu.configure(outage=0.7)
    assert wait_for(lambda: src.status().state == "disconnected", 1.0)
    polls = emu.calls.get("read_runnumber_newest", 0)
    time.sleep(0.3)
    assert emu.calls["read_runnumber_newest"] > polls  # still retrying
    t0 = time.monotonic()
    while src.read(timeout=0) is not None:  # drain what came before the outage
        pass
    started = time.monotonic()
    assert src.read(timeout=0.2) is None  # bounded even while disconnected
    assert time.monotonic() - started < 0.3
    blocks = gather(src, 3.0, until=lambda: src.status().state == "running")
    blocks += gather(src, 0.4)
    assert time.monotonic() - t0 < 3.0
    check_exact(blocks, emu.runs[-1].number)  # every shot of the outage delivered, points and all
    st = src.status()
    assert st.counters["disconnects"] >= 2 and st.counters["image gone"] > 0
    notes = src.notices()
    assert any(n.startswith("dbpy.read_runnumber_newest: APIError") and "retrying" in n for n in notes) and any("answering again" in n for n in notes)


def test_newest_tag_failures_back_off_and_recover(emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    src = opened(rois=[])
    gather(src, 0.2)
    emu.configure(fail_newest=4)
    blocks = gather(src, 2.5, until=lambda: src.status().counters.get("disconnects", 0) >= 4)
    blocks += gather(src, 0.5)
    assert src.status().state == "running" and src.status().counters["disconnects"] == 4
    check_exact(blocks, emu.runs[-1].number)


def test_an_internal_error_is_named_and_the_source_keeps_going(
        emu: E.Emulator, opened: Callable[..., SaclaStream], monkeypatch: pytest.MonkeyPatch) -> None:
    import shotwatch.sources.sacla as sacla

    real, calls = sacla.read_points, [0]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise KeyError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(sacla, "read_points", flaky)
    src = opened(rois=[])
    blocks = gather(src, 0.8)
    check_exact(blocks, emu.runs[-1].number)  # the failed block's shots came with the next one
    assert src.status().counters["errors"] == 1 and src.status().state == "running"
    assert any(n.startswith("sacla source: unexpected KeyError: 'boom' at test_sacla.py") for n in src.notices())


def test_database_down_at_open(emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    from shotwatch.schemas import ShotwatchRuntimeError
    from shotwatch.sources._sacla_api import equipment_list

    class Down:
        @staticmethod
        def read_equiplist() -> tuple[str, ...]:
            raise ConnectionError("refused")

    with pytest.raises(ShotwatchRuntimeError, match=r"read_equiplist\(\), found an error after 1 tries: refused"):
        equipment_list(Down, tries=1)  # type: ignore[arg-type]
    emu.configure(fail_newest=1)  # the names check passes, the first newest-tag poll fails
    src = opened(rois=[])  # opens anyway: the poller finds the run once the database answers
    blocks = gather(src, 1.0)
    assert blocks and src.status().state == "running" and src.describe().run == emu.runs[-1].number
    check_exact(blocks, emu.runs[-1].number)
    assert src.status().counters["disconnects"] == 1
    notes = src.notices()
    assert notes[0].startswith("dbpy.read_tagnumber_newest: APIError") and "answering again" in notes[1]


def test_read_timeout_is_honoured(emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    src = opened(rois=[])
    gather(src, 0.3)
    emu.freeze()  # no new tag
    gather(src, 0.4)
    for timeout in (0.0, 0.05, 0.2):
        t = time.monotonic()
        assert src.read(timeout=timeout) is None
        assert time.monotonic() - t < timeout + 0.1


def test_paused_and_stopped_runs_are_states_and_shots_still_come(emu: E.Emulator,
                                                                  opened: Callable[..., SaclaStream]) -> None:
    src = opened(rois=[])
    gather(src, 0.3)
    assert src.status().state == "running"
    emu.set_status(1)
    assert wait_for(lambda: src.status().state == "paused", 1.0)
    assert gather(src, 0.4)  # the beam and the detectors still deliver: followed as before
    emu.set_status(2)
    assert wait_for(lambda: src.status().state == "running", 1.0)
    emu.set_status(0)
    assert wait_for(lambda: src.status().state == "no run", 1.0)
    between = gather(src, 0.5)
    assert between and {b.run for b in between} == {emu.runs[-1].number}  # the newest run number
    notes = src.notices()
    assert any("paused" in n for n in notes) and any(n.endswith("stopped: no run, shots still followed") for n in notes)


def test_a_new_run_starts_with_a_block_of_that_run(emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    src = opened(rois=[])
    old = emu.runs[-1].number
    before = gather(src, 0.3)
    new = emu.new_run()
    after = gather(src, 0.6)
    runs = [b.run for b in before + after]
    assert runs[0] == old and runs[-1] == new and runs == sorted(runs)
    check_exact([b for b in before + after if b.run == old], old)
    first_new = next(b for b in after if b.run == new)
    assert first_new.tags[0] == run_tags(new)[0]  # the whole new run, from its first shot
    assert src.describe().run == new


def test_runs_that_end_on_their_own(emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    emu.configure(run_seconds=1.0)
    src = opened(rois=[])
    blocks = gather(src, 1.0)
    assert len({b.run for b in blocks}) >= 2


def test_detector_not_in_stream_is_a_notice_until_it_appears(emu: E.Emulator,
                                                             opened: Callable[..., SaclaStream]) -> None:
    emu.configure(missing_det=(E.SINGLE,))
    src = opened()
    blocks = gather(src, 0.4)
    assert blocks and all(not b.frames for b in blocks) and all(E.I0 in b.points for b in blocks)
    assert src.status().not_in_stream == [E.SINGLE]
    notes = src.notices()
    assert any(n.startswith(f"{E.SINGLE}: not in stream (available: {E.OCTAL[0]}") for n in notes)
    emu.configure(missing_det=())
    blocks = gather(src, 2.5, until=lambda: src.status().not_in_stream == [])
    blocks = gather(src, 0.4)
    assert E.SINGLE in blocks[-1].frames
    assert any(n == f"{E.SINGLE}: now in stream" for n in src.notices())


def test_octal_mpccd_sensors_and_set_rois(emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    base = E.OCTAL[0][:-2]
    src = opened(rois=[{"name": "whole", "detector": base, "x": [0, 8], "y": [0, 8]}])
    assert src.status().not_in_stream == [base]
    assert any("octal MPCCD is 8 sensors: name one, e.g. " + base + "-1" in n for n in src.notices())
    src.set_rois(rois={"s3/v1": Roi(name="s3", detector=E.OCTAL[2], x=(0, 8), y=(0, 8))})
    assert wait_for(lambda: E.OCTAL[2] in getattr(src.read(timeout=0.1), "frames", {}), 2.0)
    block = gather(src, 0.3)[-1]
    assert set(block.frames) == {E.OCTAL[2]} and block.frames[E.OCTAL[2]].pixels.shape[1:] == (64, 32)


def test_polling_sleeps(emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    opened(rois=[])
    emu.freeze()  # nothing new: polls only
    time.sleep(0.2)
    cpu, wall = time.process_time(), time.monotonic()
    time.sleep(1.0)
    assert time.process_time() - cpu < 0.25 * (time.monotonic() - wall)


def test_fixture_config_opens(emu: E.Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    src = make(load_config("fixtures/sacla.toml"))
    src.open()
    try:
        block = gather(src, 1.0, until=lambda: False)[-1]
        assert set(block.points) >= {E.I0, E.BEAM, E.DELAY, E.SHUTTER, E.LASER_PD}
        assert E.SINGLE in block.frames
    finally:
        src.close()


# --- the emulator itself ------------------------------------------------------------------------


def test_emulator_behaves_like_the_facility(emu: E.Emulator) -> None:
    run = dbpy.read_runnumber_newest(3)
    assert dbpy.read_runstatus(3, run) == 2 and dbpy.read_runstatus(3, run + 1) == -1
    tags = run_tags(run)
    assert np.all(np.diff(tags) == 2) and dbpy.read_start_tagnumber(3, run) == (E.HIGHTAG, tags[0])
    with pytest.raises(dbpy.APIError):
        dbpy.read_syncdatalist_float("no/such", E.HIGHTAG, (int(tags[-1]),))
    assert dbpy.read_syncdatalist(E.I0, E.HIGHTAG, (int(tags[-1]),))[0].endswith(" V")
    reader = olpy.StorageReader(E.SINGLE)
    buf = olpy.StorageBuffer(reader)
    assert reader.collect(buf, int(tags[-1])) == tags[-1]
    info = buf.read_det_info(0)
    assert info["mp_absgain"] == E.GAIN and {"mp_pixelsizex", "mp_pixelsizey", "mp_posx", "mp_posy"} <= set(info)
    with pytest.raises(olpy.APIError, match="left the buffer"):
        reader.collect(buf, int(tags[0]))
    with pytest.raises(olpy.APIError, match="not in stream"):
        olpy.StorageReader("MPCCD-nothing")
    with pytest.raises(TypeError):
        emu.configure(no_such_option=1)
    # as strict as the C extension: a tuple of Python ints, nothing else
    for bad in ([int(tags[-1])], (np.int64(tags[-1]),), (float(tags[-1]),)):
        with pytest.raises(TypeError):
            dbpy.read_syncdatalist_float(E.I0, E.HIGHTAG, bad)
    with pytest.raises(TypeError):
        dbpy.read_runstatus(3.0, run)
    with pytest.raises(TypeError):
        reader.collect(buf, np.int64(tags[-1]))


# --- the facility as it really runs (issue 11) --------------------------------------------------


def delivered(blocks: list[ShotBlock]) -> np.ndarray:
    tags = np.concatenate([b.tags for b in blocks])
    assert np.all(np.diff(tags) > 0), "a tag delivered twice or out of order"
    return tags


def real_shots(lo: int, hi: int) -> np.ndarray:
    """Every tag in [lo, hi] that is a shot (the reference recorded it), run or no run."""
    tags = np.arange(lo, hi + 1, dtype=np.int64)
    return tags[np.isfinite(dbpy._emu.values(E.REF, tags))]


def test_the_tag_clock_is_60_hz_and_a_shared_beamline_gets_30_shots_a_second(emu: E.Emulator) -> None:
    emu.freeze()
    run = emu.runs[-1]
    tags = run_tags(run.number)
    seconds = emu.now() - float(run.intervals[0][0])  # type: ignore[arg-type]
    assert np.all(np.diff(tags) == 2) and abs(len(tags) - 30 * seconds) <= 1
    assert (tags[-1] - tags[0]) / (len(tags) - 1) / E.TAG_HZ == pytest.approx(1 / 30)


def test_runs_between_runs_and_three_run_changes_lose_and_double_nothing(
        emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    src = opened(rois=[])
    first_run = emu.runs[-1].number
    blocks = gather(src, 0.3)
    for _ in range(3):
        emu.set_status(0)  # alignment between runs: the beam still comes
        blocks += gather(src, 0.3)
        emu.new_run()
        blocks += gather(src, 0.4)
    tags = delivered(blocks)
    np.testing.assert_array_equal(tags, real_shots(int(tags[0]), int(tags[-1])))  # none lost
    starts = {r.number: int(run_tags(r.number)[0]) for r in emu.runs if r.number > first_run}
    for b in blocks:  # each shot labelled with exactly one run: the newest whose first tag it reached
        expect = max([first_run] + [n for n, t0 in starts.items() if t0 <= b.tags[0]])
        assert b.run == expect and all(b.tags[-1] < t0 for n, t0 in starts.items() if n > expect)
    for run in emu.runs:  # every tag of a run's own list is delivered under that run
        own = run_tags(run.number)
        got = np.concatenate([b.tags for b in blocks if b.run == run.number])
        assert np.isin(own[(own >= tags[0]) & (own <= tags[-1])], got).all()
    assert [b.run for b in blocks] == sorted(b.run for b in blocks)
    assert len({b.run for b in blocks}) == 4


def test_started_between_runs_the_next_run_gets_its_own_shots(
        emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    emu.set_status(0)
    stopped = emu.runs[-1].number
    src = opened(rois=[])
    before = gather(src, 0.4)
    assert before and {b.run for b in before} == {stopped} and src.status().state == "no run"
    new = emu.new_run()
    after = gather(src, 0.6)
    first_new = next(b for b in after if b.run == new)
    assert first_new.tags[0] == run_tags(new)[0]
    assert all(b.tags[-1] < first_new.tags[0] for b in before + after if b.run == stopped)
    assert wait_for(lambda: src.status().state == "running") and src.describe().run == new


def test_a_poll_costs_the_same_an_hour_into_a_run(opened: Callable[..., SaclaStream]) -> None:
    """Reading only new tags: what dbpy returns per shot is the same after 5 s or 1 h of run."""
    per_shot = []
    for history in (5.0, 3600.0):
        dbpy._emu.reset(history=history, **FAST)
        try:
            assert len(run_tags(dbpy._emu.runs[-1].number)) >= (108_000 if history > 60 else 0)
            dbpy._emu.reset(history=history, **FAST)
            src = opened(rois=[])
            gather(src, 0.3)
            items = dbpy._emu.items
            shots = sum(len(b) for b in gather(src, 1.0))
            per_shot.append((dbpy._emu.items - items) / shots)
            assert dbpy._emu.calls.get("read_taglist_byrun", 0) == 0
            src.close()
        finally:
            dbpy._emu.reset()
    assert per_shot[1] < 1.5 * per_shot[0], per_shot


@pytest.mark.parametrize(("latency", "nan_expected"), [(None, False), (0.0, True)])
def test_late_point_values_are_waited_for(emu: E.Emulator, opened: Callable[..., SaclaStream],
                                          latency: float | None, nan_expected: bool) -> None:
    emu.configure(point_latency=0.6)  # values reach the database 0.6 s after their tag
    src = opened(rois=[], **({} if latency is None else {"latency": latency}))
    blocks = gather(src, 1.5)
    late_nan = 0
    for b in blocks:
        for name, values in b.points.items():
            late_nan += int((np.isnan(values) & np.isfinite(emu.values(name, b.tags, final=True))).sum())
    assert (late_nan > 0) == nan_expected, late_nan  # 0 with the default 1 s; many without waiting
    delivered(blocks)


def test_the_default_reference_follows_the_beamline(emu: E.Emulator, opened: Callable[..., SaclaStream]) -> None:
    assert config().source.reference == E.REF  # type: ignore[union-attr]
    src = opened(rois=[], beamline=2)
    assert src.cfg.reference == "xfel_bl_2_tc_bm_1_pd/charge"
    assert gather(src, 0.4)


def test_a_detector_joining_late_is_described_before_its_frames(emu: E.Emulator,
                                                                opened: Callable[..., SaclaStream]) -> None:
    emu.configure(late_det={E.SINGLE: emu.now() - emu.run_start_seconds() + 1.0})  # in 1 s of the run
    src = opened()
    assert E.SINGLE not in src.describe().detectors and src.status().not_in_stream == [E.SINGLE]
    blocks = gather(src, 3.0, until=lambda: bool(src.status().not_in_stream == []))
    blocks += gather(src, 0.5)
    first = next(b for b in blocks if E.SINGLE in b.frames)
    det = src.describe().detectors[E.SINGLE]  # shape, dtype and eV/ADU for the recording
    assert det.shape == (64, 32) and det.dtype == "float32" and det.ev_per_adu == pytest.approx(E.GAIN * 3.65)
    assert len(first.frames[E.SINGLE].shot) > 0


# --- a run change through `shotwatch record` (issue 7, item 9) -----------------------------------

RUNS = {"speed": 4.0, "frame_shape": [64, 32], "history": 0.0, "run_seconds": 2.0, "run_gap": 1.0,
        "run_count": 4}


@pytest.mark.timeout(90)
def test_record_across_three_run_changes_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """Runs of 2 s with 1 s of no run between (beam on throughout): four recordings, every tag once."""
    from shotwatch.recording import RecordingReader

    cfg = tmp_path / "sacla.toml"
    cfg.write_text(f'[source]\nkind = "sacla"\napi_path = "{EMU_DIR}"\n'
                   f'[i0]\nname = "{E.I0}"\nmin = 0.05\n'
                   f'[[roi]]\nname = "bragg"\ndetector = "{E.SINGLE}"\nx = [8, 24]\ny = [8, 24]\n')
    env = {**os.environ, "SACLA_EMU": json.dumps(RUNS)}
    done = subprocess.run([sys.executable, "-m", "shotwatch", "record", "-c", str(cfg), "-o", "scan.zarr",
                           "--seconds", "5"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=80)
    assert done.returncode == 0, done.stderr
    names = ["scan.zarr", "scan-1001.zarr", "scan-1002.zarr", "scan-1003.zarr"]
    readers = [RecordingReader(tmp_path / n) for n in names]
    # stdout: one line per recording, in order, with its committed shots; nothing else
    assert done.stdout.splitlines() == [f"recorded {r.committed} shots to {n}" for r, n in zip(readers, names, strict=True)]
    tags = [r.tags() for r in readers]
    every = np.concatenate(tags)
    assert np.all(np.diff(every) == 2)  # every shot of the beam (step 2, none skipped): none lost, none doubled
    for k, (r, t) in enumerate(zip(readers, tags, strict=True)):
        assert r.closed and r.source["run"] == 1000 + k and len(t) == r.committed > 0
        if k:  # a new run's recording starts at that run's first tag: 30 shots/s, runs every 3 s
            assert t[0] == E.DEFAULTS["tag0"] + 2 * math.ceil(3.0 * k * 30.0 - 1e-9)
    # the logs: each beside its recording; the run change is in the old one, "recording to" in the new
    logs = [(tmp_path / n).with_suffix(".log").read_text() for n in names]
    for k, (n, log) in enumerate(zip(names, logs, strict=True)):
        lines = log.splitlines()
        assert lines[0].endswith(f"INFO recording to {n}")
        if k < 3:
            assert lines[-1].endswith(f"INFO run {1000 + k} ended; run {1001 + k} started")
    # stderr: the same notices, each once, without the log's time stamps; the source's own
    # notices (run state) reach whichever log is current when the recorder hears them
    err = done.stderr.splitlines()
    for k in range(3):
        assert err.count(f"shotwatch: run {1000 + k} ended; run {1001 + k} started") == 1
        assert err.count(f"shotwatch: recording to {names[k + 1]}") == 1
        assert err.count(f"shotwatch: run {1000 + k} stopped: no run, shots still followed") == 1
        assert f"run {1000 + k} stopped: no run, shots still followed" in "".join(logs)
