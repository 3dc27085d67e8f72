"""A console through analysis changes (issue 10): the swap to ``prefix ⊕ since``, the boundary,
a missed AnalysisMsg, malformed states, and two consoles on a real recorder over real sockets."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shotwatch.console.feedloop import FeedLoop, FeedNotice, Greeted, SnapshotReady
from shotwatch.console.model import LiveModel
from shotwatch.link.localfeed import LocalFeed
from shotwatch.link.messages import AnalysisMsg, Message, StateMsg
from shotwatch.link.netfeed import NetFeed
from shotwatch.recorder.acquire import Recorder
from shotwatch.recorder.service import Service
from shotwatch.recording import RecordingReader
from shotwatch.reducers import SummaryReducer, roi_versions
from shotwatch.sources import open_source
from test_recompute import Heard, Stepped, demo, sections
from test_record_reduce import assert_same_summary, run_cli


def run_with_change(tmp_path: Path, *, at_block: int = 4, shots: int = 3000,
                    drop: type | None = None) -> tuple[Recorder, LocalFeed, list[Message], Any]:
    """A recorder with one I0 change; everything a LocalFeed got (``drop``: that type lost)."""
    config = demo(21)
    assert config.i0 is not None
    heard: Heard | None = None

    def before(k: int) -> None:
        if k == at_block:
            recorder.set_analysis(sections(config, i0={"name": config.i0.name, "min": 0.18}), by="a@b")

    source = Stepped(open_source(config), [250], before, lambda: heard is not None and heard.waiting)
    recorder = Recorder(config, out=str(tmp_path / "r.zarr"), summary=True, source=source)
    heard = Heard(recorder)
    recorder.add_listener(heard)
    recorder.open()
    feed = LocalFeed(recorder, max_blocks=100_000, max_messages=100_000)
    hello = feed.hello(timeout=5)
    recorder.run(shots=shots)
    msgs = [m for m in feed.poll(timeout=0) if drop is None or not isinstance(m, drop)]
    return recorder, feed, msgs, hello


def reduce_ranges(path: Path, version: int, ranges: tuple[tuple[int, int], ...]) -> dict[str, Any]:
    """``reduce --json --analysis-version K`` over several ``--tags`` ranges at once."""
    from shotwatch.commands.reduce_cmd import open_analysis

    reader, _, analysis = open_analysis(str(path), None, version=version)
    reducer, versions = SummaryReducer(analysis), roi_versions(reader.rois.all())
    state = reducer.init()
    for a, b in ranges:
        for block in reader.select(tags=(a, b)).blocks():
            state = reducer.update(state, block, versions=versions)
    return reducer.result(state)


def test_the_console_swaps_in_the_recomputed_state_without_losing_or_doubling_a_shot(tmp_path: Path) -> None:
    recorder, _, msgs, hello = run_with_change(tmp_path)
    model = LiveModel(hello)
    seen: list[tuple[int, bool]] = []
    for m in msgs:
        model.apply(m)
        if isinstance(m, AnalysisMsg | StateMsg):
            seen.append((model.epoch, model.awaiting_state))
    assert seen == [(1, True), (1, False)]  # since-only, then prefix ⊕ since
    snap = model.snapshot()
    state = next(m for m in msgs if isinstance(m, StateMsg))
    assert snap.analysis_version == 2 and snap.recomputed == (state.shots, state.seconds) and state.shots > 0
    reader = RecordingReader(tmp_path / "r.zarr")
    tags = reader.tags()
    (first, stop), = snap.tag_ranges  # the recomputed shots and this console's own join at B
    assert (first, stop) == (int(tags[0]), int(tags[-1]) + 1)
    proc = run_cli("reduce", str(tmp_path / "r.zarr"), "--json", "--analysis-version", "2", "--tags", f"{first}:{stop}")
    assert proc.returncode == 0, proc.stderr
    assert_same_summary(snap.summary, json.loads(proc.stdout))
    assert_same_summary(snap.summary, recorder.summary())


def test_stale_and_foreign_states_are_ignored_and_malformed_ones_counted(tmp_path: Path) -> None:
    _, _, msgs, hello = run_with_change(tmp_path, shots=1500)
    state = next(m for m in msgs if isinstance(m, StateMsg))
    model = LiveModel(hello)
    for m in msgs:
        if m is not state:
            model.apply(m)
    before = model.snapshot().summary
    model.apply(StateMsg(state.epoch + 1, 2, 0, 5, 0.1, ((1, 2),), state.states))  # another epoch
    broken = dict(state.states)
    broken["summary"] = {**broken["summary"], "total": -1}
    model.apply(StateMsg(state.epoch, 2, 0, 5, 0.1, ((1, 2),), broken))
    assert model.snapshot().dropped_states == 1 and model.awaiting_state
    assert_same_summary(model.snapshot().summary, before)  # neither touched the numbers
    model.apply(state)
    model.apply(state)  # twice: merged once
    assert model.snapshot().summary["shots"]["total"] == 1500


def _mutations(tree: Any, data: st.DataObject, depth: int = 0) -> Any:
    """``tree`` with a random part replaced by something else."""
    if isinstance(tree, dict) and tree and depth < 6 and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(tree)))
        return {**tree, key: _mutations(tree[key], data, depth + 1)}
    if isinstance(tree, list) and tree and depth < 6 and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(tree) - 1))
        return [*tree[:i], _mutations(tree[i], data, depth + 1), *tree[i + 1:]]
    return data.draw(st.one_of(
        st.none(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=5), st.just({}), st.just([]),
        st.builds(lambda n, d: np.zeros(n, d), st.integers(0, 3), st.sampled_from(["<f8", "<i8", "|b1", "<f4"])),
        st.just(tree[::-1] if isinstance(tree, np.ndarray) and tree.ndim == 1 else tree),
    ))


_CACHE: dict[str, Any] = {}


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_fuzzed_states_are_dropped_or_merged_never_fatal(data: st.DataObject,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    if not _CACHE:
        _CACHE["run"] = run_with_change(tmp_path_factory.mktemp("fuzz"), shots=1600)
    _, _, msgs, hello = _CACHE["run"]
    state = next(m for m in msgs if isinstance(m, StateMsg))
    model = LiveModel(hello)
    for m in msgs:
        if m is not state:
            model.apply(m)
    states = copy.copy(dict(state.states))
    name = data.draw(st.sampled_from(sorted(states)))
    states[name] = _mutations(states[name], data)
    model.apply(StateMsg(state.epoch, state.analysis_version, state.boundary_shot, state.shots, state.seconds,
                         state.tag_ranges, states))
    snap = model.snapshot()  # whatever got in, the UI's picture still builds
    assert snap.dropped_states in (0, 1) and snap.awaiting_state == (snap.dropped_states == 1)


def test_a_console_that_missed_the_analysis_message_starts_over_from_a_hello(tmp_path: Path) -> None:
    _, feed, msgs, hello = run_with_change(tmp_path, shots=2000, drop=AnalysisMsg)

    class Replay(LocalFeed):
        """The messages of the run (without its AnalysisMsg), then nothing."""

        def poll(self, *, timeout: float) -> list[Message]:
            out, msgs[:] = list(msgs), []
            return out or super().poll(timeout=timeout)

    posted: list[Any] = []
    replay = Replay(feed._control)
    replay._hello = hello
    loop = FeedLoop(replay, post=posted.append, snapshot_every=0.0)
    loop.model = LiveModel(hello)  # it had said hello before the change
    loop._hello = hello
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(isinstance(p, Greeted) for p in posted):
            time.sleep(0.02)
    finally:
        loop.stop()
    greeted = [p for p in posted if isinstance(p, Greeted)]
    assert greeted and greeted[0].hello.epoch == 1 and greeted[0].hello.analysis_version == 2
    assert loop.model is not None and loop.model.epoch == 1 and not loop.model.stale
    assert any(isinstance(p, FeedNotice) and "missed an analysis change" in p.text for p in posted)


def test_two_consoles_one_changes_the_other_shows_the_recomputed_numbers(tmp_path: Path) -> None:
    """A real recorder at 30 Hz over real sockets: B sees A's change recomputed within 10 s."""
    config = demo(4).model_copy(update={"source": demo(4).source.model_copy(update={"rate": 30.0})})
    assert config.i0 is not None
    rec = tmp_path / "two.zarr"
    recorder = Recorder(config, out=str(rec))
    stop = threading.Event()
    posted: dict[str, list[Any]] = {"a": [], "b": []}
    with Service(recorder, publish="auto", control="auto", runfile=False) as service:
        thread = threading.Thread(target=lambda: recorder.run(seconds=40.0), daemon=True)
        thread.start()
        feeds = {"a": NetFeed(service.addresses["control"], token=service.token, max_blocks=10_000),
                 "b": NetFeed(service.addresses["control"], read_only=True, max_blocks=10_000)}
        loops = {k: FeedLoop(f, post=posted[k].append, snapshot_every=0.1) for k, f in feeds.items()}
        for loop in loops.values():
            loop.start()
        try:
            _wait(lambda: all(loops[k].model is not None and _snaps(posted[k]) for k in loops), 20)
            time.sleep(2.0)  # some shots under version 1 for both
            asked = time.monotonic()
            loops["a"].request("set_analysis", analysis=sections(config, i0={"name": config.i0.name, "min": 0.2}),
                               by="a@host", timeout=5.0)
            got = _wait(lambda: next((s for s in reversed(_snaps(posted["b"])) if s.analysis_version == 2
                                      and s.recomputed is not None), None), 10)
            took = time.monotonic() - asked
            assert got is not None, "console B never showed the recomputed numbers"
            assert took <= 10.0 and got.recomputed[0] > 0 and got.summary["analysis_version"] == 2
        finally:
            stop.set()
            recorder.stop()
            thread.join(10)
            for loop in loops.values():
                loop.stop()
            for f in feeds.values():
                f.close()
    assert got.summary["shots"]["total"] >= got.recomputed[0]
    assert_same_summary(got.summary, reduce_ranges(rec, 2, got.tag_ranges))


def _snaps(posted: list[Any]) -> list[Any]:
    return [p.snapshot for p in list(posted) if isinstance(p, SnapshotReady)]


def _wait(what: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.05)
    return what()



