"""The console's reducers: windows, histograms, correlation samples, trends, images."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import synth
from shotwatch.reducers import (
    Analysis,
    Correlation,
    Histogram,
    RollingWindow,
    Trend,
    shot_table,
)
from shotwatch.schemas import I0, Cutout, ShotBlock

DET = synth.DET
A = Analysis(ev_per_adu={DET: 1.0}, i0=I0(name=synth.I0, min=0.1))
ROIS = {"a/v1": (2, 2), "a/v2": (2, 2)}


def blocks(seed: int, sizes: list[int]) -> list[ShotBlock]:
    return list(synth.stream(seed, sizes, rois=ROIS, frame_every=3, frame_shape=(4, 3)))


def run(reducer: Any, bs: list[ShotBlock]) -> Any:
    s = reducer.init()
    for b in bs:
        s = reducer.update(s, b)
    return s


def same(x: Any, y: Any) -> None:
    if isinstance(x, dict):
        assert list(x) == list(y)
        for k in x:
            same(x[k], y[k])
    elif isinstance(x, np.ndarray):
        np.testing.assert_allclose(x, y, rtol=1e-12, equal_nan=True)
    else:
        assert x == y


def test_rolling_window_keeps_the_last_shots() -> None:
    bs = blocks(1, [7, 5])
    w = RollingWindow(A, size=8)
    out = w.result(run(w, bs))
    whole = ShotBlock.concat(bs)
    t = shot_table(whole, A, {})
    assert out["tags"].tolist() == whole.tags[-8:].tolist()
    np.testing.assert_array_equal(out["i0"], t.i0[-8:])
    assert set(out["values"]) == {"a/v1", "a/v2"}
    ratio = np.where(t.accepted, t.values["a/v1"] / t.i0, np.nan)[-8:]
    np.testing.assert_allclose(out["ratios"]["a/v1"], ratio, equal_nan=True)


def test_rolling_window_fills_a_key_that_appears_later() -> None:
    first = synth.block(np.random.default_rng(0), first_tag=2, n=3, rois={"a/v1": (2, 2)})
    later = synth.block(np.random.default_rng(1), first_tag=100, n=2, rois={"b/v1": (2, 2)})
    w = RollingWindow(A, size=10)
    out = w.result(run(w, [first, later]))
    assert np.isnan(out["values"]["b"][:3]).all() and out["tags"].size == 5


def test_correlation_sample() -> None:
    bs = blocks(2, [30, 30])
    c = Correlation(A, size=10)
    out = c.result(run(c, bs))
    t = shot_table(ShotBlock.concat(bs), A, {})
    ok = np.isfinite(t.values["a/v1"]) & np.isfinite(t.i0)
    np.testing.assert_array_equal(out["a/v1"]["value"], t.values["a/v1"][ok][-10:])
    np.testing.assert_array_equal(out["a/v1"]["accepted"], t.accepted[ok][-10:])


def test_trend_one_entry_per_block() -> None:
    bs = blocks(3, [10, 0, 12, 9])
    tr = Trend(A, size=2)
    out = tr.result(run(tr, bs))
    assert out["quantity"] == "ratio"
    assert out["tags"].tolist() == [int(bs[2].tags[0]), int(bs[3].tags[0])]
    t = shot_table(bs[3], A, {})
    q = t.values["a/v2"] / t.i0
    ok = t.accepted & np.isfinite(q)
    assert out["rois"]["a/v2"]["mean"][-1] == np.mean(q[ok])
    assert out["rois"]["a/v2"]["count"][-1] == ok.sum()
    assert Trend(Analysis(ev_per_adu={DET: 1.0})).result(Trend(A).init())["quantity"] == "value"


def test_histogram_auto_edges_and_overflow() -> None:
    h = Histogram(A, bins=10)
    first = ShotBlock(np.arange(2, 12, 2, dtype=np.int64), np.zeros(5), {synth.I0: np.linspace(1, 2, 5)})
    s = h.update(h.init(), first)
    edges = s["i0"].edges
    assert edges.size == 11 and edges[0] < 1 and edges[-1] > 2
    second = first.with_(tags=first.tags + 100, points={synth.I0: np.array([0.0, 1.5, 9.0, np.nan, 1.0])})
    out = h.result(h.update(s, second))["i0"]
    assert np.array_equal(out["edges"], edges)  # fixed once chosen
    assert (out["under"], out["over"], int(out["counts"].sum())) == (1, 1, 7)
    single = h.update(h.init(), first.with_(points={synth.I0: np.full(5, 3.0)}))["i0"]
    assert single.edges[0] < 3 < single.edges[-1] and single.counts.sum() == 5
    assert h.reset(s)["i0"].counts.sum() == 0


def test_states_are_not_modified() -> None:
    bs = blocks(4, [5, 5])
    reds: list[Any] = [RollingWindow(A), Correlation(A), Trend(A), Histogram(A)]
    for red in reds:
        s1 = red.update(red.init(), bs[0])
        before = red.result(s1)
        red.update(s1, bs[1])
        same(red.result(s1), before)


@given(seed=st.integers(0, 2**16), sizes=st.lists(st.integers(0, 25), min_size=1, max_size=5),
       cut=st.integers(0, 5), size=st.integers(1, 40))
def test_live_reducers_merge_like_the_whole(seed: int, sizes: list[int], cut: int, size: int) -> None:
    bs = blocks(seed, sizes)
    cut = min(cut, len(bs))
    left, right = bs[:cut], bs[cut:]
    edges = {"i0": np.linspace(0, 0.5, 9), "a/v1": np.linspace(0, 600, 7), "a/v2": np.linspace(0, 600, 5),
             synth.I0: np.linspace(0, 0.5, 5), synth.BEAM: np.linspace(0, 1, 3), synth.SCAN: np.linspace(-2e3, 4e3, 7)}
    reducers: list[Any] = [RollingWindow(A, size=size), Correlation(A, size=size), Trend(A, size=size),
                Histogram(A, edges=edges)]
    for red in reducers:
        whole = red.result(run(red, bs))
        split = red.result(red.merge(run(red, left), run(red, right)))
        same(split, whole)


def test_histogram_merge_with_different_auto_edges_rebins() -> None:
    h = Histogram(A, bins=4)
    mk = lambda v: ShotBlock(np.array([2], np.int64), np.zeros(1), {synth.I0: np.array([v])})  # noqa: E731
    a, b = h.update(h.init(), mk(1.0)), h.update(h.init(), mk(100.0))
    merged = h.merge(a, b)["i0"]
    assert np.array_equal(merged.edges, a["i0"].edges) and merged.over == 1 and merged.counts.sum() == 1


def test_invalid_cutout_not_in_samples() -> None:
    pix = np.ones((2, 1, 1), np.uint16)
    b = ShotBlock(np.array([2, 4], np.int64), np.zeros(2), {synth.I0: np.array([0.5, 0.5])},
                  {"a/v1": Cutout(pix, np.array([True, False]), DET)})
    out = Correlation(A).result(Correlation(A).update({}, b))
    assert out["a"]["tags"].tolist() == [2]


def test_accessors_give_one_version_by_its_roi_key() -> None:
    """What the console reads, by version key (never a display name that may mean another)."""
    bs = blocks(2, [6, 6])
    whole = ShotBlock.concat(bs)
    t = shot_table(whole, A, {})
    w, tr, c, h = RollingWindow(A, size=20), Trend(A), Correlation(A), Histogram(A)
    np.testing.assert_array_equal(w.values(run(w, bs), "a/v2"), t.values["a/v2"])
    assert w.values(w.init(), "a/v2") is None and tr.means(tr.init(), "a/v1") is None
    means = tr.means(run(tr, bs), "a/v1")
    assert means is not None and len(means) == 2
    samples = c.samples(run(c, bs), "a/v1")
    assert samples is not None and set(samples) == {"tags", "i0", "value", "accepted"}
    assert c.samples({}, "a/v1") is None
    series = h.series(run(h, bs), "a/v2")
    assert series is not None and int(series.counts.sum()) + series.under + series.over > 0


def test_window_and_histogram_key_every_value_by_name() -> None:
    """Points, aliases and channels by name: the console correlates and histograms any of them."""
    from shotwatch.schemas.expr import parse
    an = Analysis(ev_per_adu={DET: 1.0}, i0=I0(name=synth.I0, min=0.1), aliases={"beam": synth.BEAM},
                  channels=(("twice", parse("2 * a")),))
    bs = list(synth.stream(5, [6, 6], rois={"a/v1": (2, 2)}))
    whole = ShotBlock.concat(bs)
    t = shot_table(whole, an, {})
    w, h = RollingWindow(an, size=8), Histogram(an, bins=4)
    ws, hs = run(w, bs), run(h, bs)
    np.testing.assert_array_equal(w.column(ws, synth.SCAN), whole.points[synth.SCAN][-8:])
    np.testing.assert_array_equal(w.column(ws, "beam"), whole.points[synth.BEAM][-8:])
    np.testing.assert_array_equal(w.column(ws, "twice"), t.channels["twice"][-8:])
    np.testing.assert_array_equal(w.column(ws, "a/v1"), t.values["a/v1"][-8:])
    np.testing.assert_array_equal(w.column(ws, "i0"), t.i0[-8:])
    assert w.column(ws, "nothing") is None
    assert set(w.names(ws)) == {synth.I0, synth.BEAM, synth.SCAN, "beam", "twice"}
    scan = h.series(hs, synth.SCAN)  # every shot with a finite value, vetoed ones too
    finite = int(np.isfinite(whole.points[synth.SCAN]).sum())
    assert scan is not None and int(scan.counts.sum()) + scan.under + scan.over == finite
    out = h.result(hs)
    assert {"i0", "a", synth.SCAN, "beam", "twice"} <= set(out)
