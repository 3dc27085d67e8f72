"""Changing the analysis while recording (issue 10): versions, the boundary, the recomputation.

A real Recorder on the simulator writes a real recording; a source wrapper cuts the stream
into blocks of random sizes and asks for changes between them (on the acquire thread, so the
moments are exact), then waits for the recomputed state before going on.
"""

from __future__ import annotations

import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shotwatch.commands.reduce_cmd import open_analysis, summarize
from shotwatch.link.messages import AnalysisMsg, Reply, StateMsg
from shotwatch.link.protocols import NullListener
from shotwatch.recorder import recompute
from shotwatch.recorder.acquire import Recorder
from shotwatch.recording import RecordingReader
from shotwatch.reducers import Analysis, LiveSet
from shotwatch.schemas import ANALYSIS_SECTIONS, Config, Roi, ShotBlock, parse_config
from shotwatch.schemas.source_info import SourceInfo
from shotwatch.sources import Source, open_source
from shotwatch.sources.base import Playback, SourceStatus
from test_record_reduce import assert_same_summary, fast_config_text

BEAM = "xfel_mon_bpm_bl3_0_3_beamstatus/summary"


def demo(seed: int) -> Config:
    return parse_config(tomllib.loads(fast_config_text(seed=seed, frames_every=0)), origin="test")


def sections(config: Config, **changes: Any) -> dict[str, Any]:
    """The analysis sections of ``config`` as JSON, with some replaced (None: off)."""
    dumped = config.model_dump(mode="json")
    out = {k: dumped[k] for k in ANALYSIS_SECTIONS}
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


class Stepped:
    """The simulator's stream in blocks of the given sizes; ``before(k)`` runs on the acquire
    thread before block k is delivered, and while ``hold()`` is true no block comes."""

    def __init__(self, inner: Source, sizes: list[int], before: Callable[[int], None],
                 hold: Callable[[], bool]) -> None:
        self.inner, self.sizes, self.before, self.hold = inner, sizes, before, hold
        self._left: ShotBlock | None = None
        self._k = 0
        self._held_since: float | None = None

    def open(self) -> None:
        self.inner.open()

    def describe(self) -> SourceInfo:
        return self.inner.describe()

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        self.inner.set_rois(rois=rois)

    def read(self, *, timeout: float) -> ShotBlock | None:
        if self.hold():
            self._held_since = self._held_since or time.monotonic()
            assert time.monotonic() - self._held_since < 30, "no recomputed state within 30 s"
            time.sleep(0.005)
            return None
        self._held_since = None
        if self._left is None or not len(self._left):
            self._left = self.inner.read(timeout=timeout)
            if self._left is None:
                return None
        n = self.sizes[self._k % len(self.sizes)]
        self.before(self._k)
        self._k += 1
        block, self._left = self._left.slice(0, n), self._left.slice(n, len(self._left))
        return block

    def status(self) -> SourceStatus:
        return self.inner.status()

    def notices(self) -> list[str]:
        return self.inner.notices()

    def close(self) -> None:
        self.inner.close()

    def start_after(self, tag: int) -> None:
        self.inner.start_after(tag)

    def playback(self) -> Playback | None:
        return None


class Heard(NullListener):
    """What the recorder broadcast, and its summary at each recomputed state."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.analysis: list[AnalysisMsg] = []
        self.states: list[StateMsg] = []
        self.at_state: list[tuple[int, dict[str, Any], int]] = []  # (version, summary, last tag)
        self.notices: list[str] = []

    def on_analysis(self, msg: AnalysisMsg) -> None:
        self.analysis.append(msg)

    def on_state(self, msg: StateMsg) -> None:
        self.states.append(msg)
        tag = self.recorder.health.last_tag
        assert tag is not None
        if self.recorder._summary is not None:
            self.at_state.append((msg.analysis_version, self.recorder.summary(), tag))

    def on_notice(self, msg: Any) -> None:
        self.notices.append(msg.text)

    @property
    def waiting(self) -> bool:
        """The newest epoch's state has not come yet (an older epoch's never comes)."""
        return bool(self.analysis) and (not self.states or self.states[-1].epoch < self.analysis[-1].epoch)


def reduce_json(path: Path, version: int, *, below: int | None = None) -> dict[str, Any]:
    """``reduce PATH --json --analysis-version K [--tags :below]``, in process."""
    reader, _, analysis = open_analysis(str(path), None, version=version)
    return summarize(reader.select(tags=(None, below)), analysis)


# --- live equals reduce after random changes -----------------------------------------------


def _change(config: Config, draw: Any) -> dict[str, Any]:
    """A random analysis: the I0 window, vetoes, scan bins, pump-probe, threshold, a channel."""
    i0 = config.i0
    assert i0 is not None and config.scan is not None
    lo = draw(st.floats(0.01, 0.3))
    changes: dict[str, Any] = {"i0": {"name": i0.name, "min": lo, "max": draw(st.sampled_from([None, lo + 0.2]))}}
    if draw(st.booleans()):
        changes["veto"] = [{"name": BEAM, "min": 0.5}] if draw(st.booleans()) else []
    if draw(st.booleans()):
        changes["scan"] = {**config.scan.model_dump(mode="json"),
                           "edges": {"start": -1.0, "stop": draw(st.floats(1.0, 4.0)), "count": draw(st.integers(2, 30))}}
    if draw(st.booleans()):
        changes["pump_probe"] = draw(st.sampled_from([None, {"mode": "tag-modulo", "cycle": 6, "on": [0, 2]}]))
    if draw(st.booleans()):  # a new pixel calibration: every pixel is read again
        changes["calibration"] = {"threshold_ev": draw(st.sampled_from([500.0, 2000.0])), "photon_energy_ev": 9000.0}
    if draw(st.booleans()):
        changes["channel"] = [{"name": "net", "expr": "bragg - pixels(bragg) / pixels(background) * background"}]
        changes["alarm"] = None
    return sections(config, **changes)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), sizes=st.lists(st.integers(40, 700), min_size=1, max_size=4),
       moments=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data())
def test_live_summary_equals_reduce_after_random_changes(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                                         sizes: list[int], moments: list[int], data: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """After each change (or R), once recomputed, the recorder's summary equals ``reduce --json
    --analysis-version K`` of the same shots: counts exactly, values to 1e-9 relative."""
    monkeypatch.setattr(recompute, "FOLLOW_EVERY", 0.05)  # the worker follows the recording between jobs
    path = tmp_path_factory.mktemp("changes") / "r.zarr"
    config = demo(seed)
    at = list(np.cumsum(moments))
    asked: list[Reply] = []
    heard: Heard | None = None

    def before(k: int) -> None:
        if at and k == at[0]:
            at.pop(0)
            assert recorder is not None
            again = data.draw(st.integers(0, 4)) == 0
            fut = recorder.recompute() if again else recorder.set_analysis(_change(config, data.draw), by="t@host")
            fut.add_done_callback(lambda f: asked.append(f.result()))

    source = Stepped(open_source(config), sizes, before, lambda: heard is not None and heard.waiting)
    recorder = Recorder(config, out=str(path), summary=True, source=source)
    heard = Heard(recorder)
    recorder.add_listener(heard)
    recorder.run(shots=sum(sizes) * (at[-1] + 2))
    assert asked and all(r.ok for r in asked), asked
    assert len(heard.states) == len(heard.analysis) == len(asked)
    versions = RecordingReader(path).analysis_versions()
    assert [v.version for v in versions] == list(range(1, len(versions) + 1))
    for msg, state in zip(heard.analysis, heard.states, strict=True):
        assert state.epoch == msg.epoch and state.boundary_shot == msg.boundary_shot == state.shots
        assert versions[msg.version.version - 1].first_shot <= msg.boundary_shot
    for version, live, last_tag in heard.at_state:
        assert_same_summary(live, reduce_json(path, version, below=last_tag + 1), f"v{version}")
    assert_same_summary(recorder.summary(), reduce_json(path, versions[-1].version))


# --- one change, looked at closely ---------------------------------------------------------------


def one_change(tmp_path: Path, change: Callable[[Recorder, Config], Any], *, shots: int = 3000,
               at_block: int = 3) -> tuple[Recorder, Heard, list[Reply]]:
    config = demo(11)
    replies: list[Reply] = []
    heard: Heard | None = None

    def before(k: int) -> None:
        if k == at_block:
            change(recorder, config).add_done_callback(lambda f: replies.append(f.result()))

    source = Stepped(open_source(config), [300], before, lambda: heard is not None and heard.waiting)
    recorder = Recorder(config, out=str(tmp_path / "r.zarr"), summary=True, source=source)
    heard = Heard(recorder)
    recorder.add_listener(heard)
    recorder.run(shots=shots)
    return recorder, heard, replies


def test_a_change_is_recorded_at_the_boundary_with_its_first_tag_and_who(tmp_path: Path) -> None:
    recorder, heard, replies = one_change(
        tmp_path, lambda r, c: r.set_analysis(sections(c, i0={"name": c.i0.name, "min": 0.2}), by="ana@bl3"))
    assert replies == [Reply(True, None, {"version": 2, "epoch": 1})]
    (msg,), (state,) = heard.analysis, heard.states
    assert msg.boundary_shot == 1200 and msg.boundary_tag is None and msg.version.by == "ana@bl3"
    reader = RecordingReader(tmp_path / "r.zarr")
    v2 = reader.analysis_versions()[1]
    assert (v2.version, v2.first_shot, v2.by) == (2, 1200, "ana@bl3")
    assert v2.first_tag == int(reader.tags()[1200])  # filled in when shot B was committed
    assert v2.config["i0"]["min"] == 0.2
    # the recomputed range ends at shot B's tag, or (B had not come: the source held it back
    # here) one past shot B-1's; either way no recorded shot lies between it and B
    tags = reader.tags()
    (first, end), = state.tag_ranges
    assert first == int(tags[0]) and end in (int(tags[1199]) + 1, int(tags[1200]))
    assert "analysis version 2 set by ana@bl3: from shot 1200 on; recomputing the 1200 shots before it" in heard.notices
    assert any(n.startswith("recomputed 1200 shots in") for n in heard.notices)
    assert recorder.status().analysis_version == 2 and recorder.status().epoch == 1
    assert recorder.summary()["analysis_version"] == 2


def test_r_recomputes_without_a_new_version(tmp_path: Path) -> None:
    recorder, heard, replies = one_change(tmp_path, lambda r, c: r.recompute())
    assert replies == [Reply(True, None, {"version": 1, "epoch": 1})]
    assert heard.analysis[0].reason == "recomputation asked" and heard.states[0].analysis_version == 1
    assert [v.version for v in RecordingReader(tmp_path / "r.zarr").analysis_versions()] == [1]
    assert_same_summary(recorder.summary(), reduce_json(tmp_path / "r.zarr", 1))


@pytest.mark.parametrize(("analysis", "needle"), [
    ({"i0": {"name": "xfel_bl_3_st_5_pd_user_5_fitting_peak/voltage", "min": 0.3, "max": 0.1}},
     "i0: expected max >= min"),
    ({"i0": {"name": "no_such/point", "min": 0.1}}, "i0.name: expected a point detector that the recording holds"),
    ({"channel": [{"name": "c", "expr": "bragg - (background"}]}, "channel[0].expr: expected"),
    ({"veto": [{"name": "xfel_mon_bpm_bl3_0_3_beamstatus/summary", "min": "high"}]}, "veto[0].min: expected"),
    ({"source": {"kind": "sim"}}, "source: expected an analysis section"),
    ({"calibration": {"dark": "dark.zarr"}}, "calibration.dark: expected dark versions"),
    ({"mask": [{"detector": "MPCCD-1N0-M06-004", "x": [0, 4000], "y": [0, 4]}]}, "mask[0]"),
])
def test_a_refusal_is_one_line_back_and_nothing_recorded(tmp_path: Path, analysis: dict[str, Any],
                                                        needle: str) -> None:
    recorder, heard, replies = one_change(tmp_path, lambda r, c: r.set_analysis(analysis, by="x@y"), shots=1500)
    (reply,) = replies
    assert not reply.ok and reply.error is not None and "\n" not in reply.error
    assert reply.error.startswith(needle.split(":")[0]) and needle in reply.error, reply.error
    assert heard.analysis == [] and recorder.status().epoch == 0
    assert [v.version for v in RecordingReader(tmp_path / "r.zarr").analysis_versions()] == [1]


def test_recompute_while_one_runs_is_refused_and_a_change_supersedes_it(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    real = recompute.Engine.reduce

    def slow(self: Any, job: Any, **kw: Any) -> Any:
        gate.wait(10)
        return real(self, job, **kw)

    monkeypatch.setattr(recompute.Engine, "reduce", slow)
    out: list[Reply] = []

    def change(r: Recorder, c: Config) -> Any:
        first = r.recompute()
        first.add_done_callback(lambda f: (out.append(f.result()), out.append(r._do_recompute()),
                                           out.append(r._do_set_analysis(sections(c, veto=[]), "z@z")), gate.set()))
        return first

    recorder, heard, replies = one_change(tmp_path, change)
    assert out[0].ok and not out[1].ok and "a recomputation is running (epoch 1" in (out[1].error or "")
    assert out[2].ok and out[2].data["epoch"] == 2
    assert [s.epoch for s in heard.states] == [2]  # epoch 1's result is stale: never published
    assert recorder.summary()["shots"]["vetoed"] == reduce_json(tmp_path / "r.zarr", 2)["shots"]["vetoed"]


def test_refused_without_a_recording(tmp_path: Path) -> None:
    recorder = Recorder(demo(1), record=False)
    recorder.open()
    reply = recorder._do_recompute()
    assert not reply.ok and reply.error == ("recompute: expected a recording to recompute (it reads the shots "
                                           "so far), found recording off")
    recorder.close()


def test_a_replay_recomputes_over_its_source_recording(tmp_path: Path) -> None:
    """Recording off: the recomputation reads the replayed recording up to the tag reached."""
    from shotwatch.commands.live_cmd import replay_recorder

    path = tmp_path / "r.zarr"
    Recorder(demo(5), out=str(path)).run(shots=3000)
    recorder = replay_recorder(str(path), config=None, speed=0.0)
    config = recorder.config
    assert config.i0 is not None
    new = sections(config, i0={"name": config.i0.name, "min": 0.25})
    replies: list[Reply] = []

    class Change(Heard):
        wants_blocks = True

        def on_block(self, msg: Any) -> None:
            if not replies and msg.seq == 1:
                recorder.set_analysis(new, by="r@h").add_done_callback(lambda f: replies.append(f.result()))

        def on_state(self, msg: StateMsg) -> None:
            self.states.append(msg)
            recorder.stop()

    heard = Change(recorder)
    recorder.add_listener(heard)
    recorder.run(seconds=20, stop_at_end=False)
    assert replies and replies[0].ok and replies[0].data["version"] == 2
    (state,) = heard.states
    reader = RecordingReader(path)
    tags = reader.tags()
    (first, end), = state.tag_ranges
    assert first == int(tags[0]) and state.shots == state.boundary_shot == int(np.searchsorted(tags, end)) > 0
    ls = LiveSet(Analysis.from_config(recorder.config, detectors=reader.detectors, version=2))
    got = ls.summary.result(ls.decode(state.states).summary)
    want = summarize(reader.select(tags=(None, end)), Analysis.from_config(recorder.config, detectors=reader.detectors,
                                                                            version=2))
    assert_same_summary(got, want)
    assert [v.version for v in reader.analysis_versions()] == [1]  # a replay never changes the recording


def test_kept_values_give_what_reading_the_pixels_gives(tmp_path: Path) -> None:
    """The worker's value cache: pixels read once; an I0 change reads none and equals reduce."""
    from shotwatch.recorder.recompute_worker import Engine, Job

    path = tmp_path / "r.zarr"
    config = demo(9)
    Recorder(config, out=str(path)).run(shots=1500)
    reader = RecordingReader(path)
    block = next(reader.blocks(pixels=False))
    cut = next(iter(block.cutouts.values()))
    assert cut.pixels.strides == (0, 0, 0) and not cut.pixels.any() and cut.valid.any()
    engine = Engine()
    cold = engine.reduce(Job(str(path), None, config, 1, 100, 10, 10))
    assert cold.pixels_read == cold.shots == 1500
    assert config.i0 is not None
    other = config.model_copy(update={"i0": config.i0.model_copy(update={"min": 0.2})})
    warm = engine.reduce(Job(str(path), int(reader.tags()[1000]), other, 1, 100, 10, 10))
    assert warm.pixels_read == 0 and warm.shots == 1000
    want = summarize(reader.select(tags=(None, int(reader.tags()[1000]))),
                     Analysis.from_config(other, detectors=reader.detectors))
    assert_same_summary(warm.reducers.summary.result(warm.states.summary), want)
    hotter = config.model_copy(update={"calibration": config.calibration.model_copy(update={"threshold_ev": 3000.0})})
    again = engine.reduce(Job(str(path), None, hotter, 1, 100, 10, 10))
    assert again.pixels_read == 1500  # another pixel calibration: every pixel read again


def test_after_a_change_the_appended_summary_covers_the_whole_recording(tmp_path: Path) -> None:
    """--append: the live summary is this session's shots, until a change recomputes them all."""
    path = tmp_path / "r.zarr"
    config = demo(13)
    assert config.i0 is not None
    Recorder(config, out=str(path)).run(shots=700)
    heard: Heard | None = None

    def before(k: int) -> None:
        if k == 2:
            recorder.set_analysis(sections(config, i0={"name": config.i0.name, "min": 0.15}), by="z@z")

    source = Stepped(open_source(config), [200], before, lambda: heard is not None and heard.waiting)
    recorder = Recorder(config, out=str(path), append=True, summary=True, source=source)
    heard = Heard(recorder)
    recorder.add_listener(heard)
    recorder.run(shots=1000)
    assert heard.states[0].boundary_shot == 700 + 600 and heard.analysis[0].version.version == 2
    live = recorder.summary()
    assert live["shots"]["total"] == 1700
    assert_same_summary(live, reduce_json(path, 2))
