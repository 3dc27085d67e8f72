"""The console's pure pieces, tested as strings: formatters, ROI arithmetic, thumbnail, plots."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from shotwatch.console import format as fmt
from shotwatch.console.model import LiveModel
from shotwatch.console.plots import render_view
from shotwatch.console.roiedit import grown, moved, new_roi_values, parse_form
from shotwatch.console.thumb import downsample, thumbnail
from shotwatch.link.messages import BlockMsg, RoisMsg, Status
from shotwatch.reducers import Analysis, SummaryReducer
from shotwatch.schemas import Roi, RoiTable, ShotBlock
from test_console_fakes import MemFeed, blocks, config

SHAPES = {"det": (64, 32)}


def test_sparkline_glyphs_gaps_and_width() -> None:
    assert fmt.sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8) == "▁▂▃▄▅▆▇█"
    assert fmt.sparkline([1.0, math.nan, 3.0], 3) == "▁ █"  # a missing shot is a gap, not a zero
    assert fmt.sparkline([5, 5, 5], 5) == "  ▄▄▄"  # right-aligned, constant at mid height
    assert fmt.sparkline(range(100), 10) == fmt.sparkline(range(90, 100), 10)
    assert fmt.sparkline([math.nan] * 3, 3) == "   "
    assert set(fmt.sparkline(np.random.default_rng(0).normal(size=50), 50)) <= set(fmt.BARS)


def test_rate_age_bytes_numbers() -> None:
    assert fmt.fmt_rate(60.0) == "60.0 Hz"
    assert fmt.fmt_rate(5.04) == " 5.0 Hz"
    assert fmt.fmt_rate(None).endswith("Hz")
    fresh, stale = fmt.fmt_age(0.4), fmt.fmt_age(2.5)
    assert fresh.plain == "0.4 s" and "STALE" not in fresh.plain
    assert stale.plain == "2.5 s STALE" and "reverse" in str(stale.style)
    assert fmt.fmt_age(None).plain == "no shots yet"
    assert fmt.fmt_bytes(12_345_678) == "12.3 MB" and fmt.fmt_bytes(999) == "999 B"
    assert fmt.fmt_num(math.nan) == "missing" and fmt.fmt_num(None) == "—"
    assert fmt.fmt_num(1234.5678) == "1235" and fmt.fmt_num(3.2e-5) == "3.200e-05"


def test_roi_line_missing_is_never_zero() -> None:
    line = fmt.roi_line("bragg", [1.0, 2.0], width=60, mean=1.5, norm=7.0, count=2, missing=True)
    assert "missing" in line.plain and " 0 " not in line.plain
    ok = fmt.roi_line("bragg", [1.0, 2.0], width=70, mean=1.5, norm=7.0, count=2, selected=True)
    assert ok.plain.startswith("▶bragg") and "mean       1.5" in ok.plain and "n 2" in ok.plain
    assert len(ok.plain) == 69  # one column spare: nothing ever touches the right edge
    wide = fmt.roi_line("b", list(range(200)), width=200, mean=1.0, norm=1.0, count=1, spark_max=30)
    assert sum(ch in fmt.BARS for ch in wide.plain) == 30
    nan_now = fmt.roi_line("I0", [0.2, math.nan], width=50, mean=0.2, norm=None, count=None)
    assert "missing" in nan_now.plain and "norm" not in nan_now.plain


def _status(**kw: object) -> Status:
    base: dict[str, object] = dict(time=100.0, source="sim", run=7, last_tag=1234, rate_hz=59.96,
                                   newest_age_s=0.2, bytes=2_000_000, free_bytes=10**12)
    base.update(kw)
    return Status.model_validate(base)


def test_status_text_rate_age_disk_gone_missing() -> None:
    text = fmt.status_text(_status(), connected=True, skipped=0, now=100.5, tag_ranges=[(10, 20)]).plain
    line1, line2 = text.split("\n")
    assert "sim · run 7 · tag 1234 · 60.0 Hz · age 0.7 s" in line1 and "STALE" not in line1
    assert "recording 2.0 MB · free 1.0 TB" in line2 and "tags 10:20" in line2
    late = fmt.status_text(_status(), connected=True, skipped=3, now=103.0, tag_ranges=[]).plain
    assert "age 3.2 s STALE" in late and "skipped 3 blocks" in late
    gone = fmt.status_text(_status(not_in_stream=["xfel_bl_3_st_5_pd_user_5_fitting_peak/voltage"]),
                           connected=False, skipped=0, now=100.0, tag_ranges=[]).plain
    assert gone.startswith("recorder gone — reconnecting") and "missing: peak/voltage" in gone
    assert "waiting for the recorder" in fmt.status_text(None, connected=True, skipped=0, now=0,
                                                         tag_ranges=[]).plain


def test_tag_ranges_text() -> None:
    assert fmt.tag_ranges_text([]) == "none"
    assert fmt.tag_ranges_text([(1, 5), (9, 11)]) == "1:5, 9:11"
    assert "(5 ranges" in fmt.tag_ranges_text([(i, i + 1) for i in range(0, 10, 2)])


def test_roi_arithmetic_and_form_validation() -> None:
    values = {"name": "a", "detector": "det", "x0": "2", "x1": "10", "y0": "0", "y1": "64"}
    assert parse_form(values, shapes=SHAPES) == Roi(name="a", detector="det", x=(2, 10), y=(0, 64))
    for bad, expected in [({"x1": "33"}, "expected x <= 32"), ({"x0": "abc"}, "whole number"),
                          ({"x0": "10"}, "x0 < x1"), ({"detector": "nope"}, "expected one of det"),
                          ({"name": "bad name"}, "name")]:
        with pytest.raises(ValueError, match=expected):
            parse_form({**values, **bad}, shapes=SHAPES)
    roi = Roi(name="a", detector="det", x=(0, 8), y=(0, 8))
    assert moved(roi, 10, 1, shape=(64, 32)).x == (10, 18)
    with pytest.raises(ValueError, match="inside"):
        moved(roi, -1, 0, shape=(64, 32))
    with pytest.raises(ValueError, match="x <= 32"):
        moved(roi, 30, 0, shape=(64, 32))
    assert grown(moved(roi, 1, 1, shape=(64, 32)), 1, shape=(64, 32)).x == (0, 10)
    assert grown(roi, -3, shape=(64, 32)).x == (3, 5)
    with pytest.raises(ValueError, match="at least 1 pixel"):
        grown(roi, -4, shape=(64, 32))
    assert new_roi_values(["roi1"], detector="det", shape=(64, 32))["name"] == "roi2"


def test_thumbnail_is_small_greyscale_with_axes_and_rectangles() -> None:
    img = np.zeros((1024, 512), np.float32)
    img[300:400, 100:200] = 50
    assert downsample(img, 8, 4).shape == (8, 4)
    rois = RoiTable()
    v = rois.set(Roi(name="a", detector="det", x=(100, 200), y=(300, 400)), shot=0, tag=0)
    assert v is not None
    text = thumbnail(img, [v], width=40, height=20, selected="a")
    lines = text.plain.split("\n")
    assert len(lines) <= 20 and max(len(line) for line in lines) <= 40
    assert lines[0].startswith("    0┤") and "╔" in text.plain and "╝" in text.plain
    assert "▀" in text.plain and lines[-1].strip().startswith("0")
    colours = {str(span.style) for span in text.spans}
    assert all("#" not in c and "rgb" not in c for c in colours)  # palette greys, never truecolor
    assert len(text.spans) < 4 * len(lines) * 10  # runs of equal greys merge into one segment


def assert_close(a: object, b: object, where: str = "") -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9), where
    else:
        assert a == b and type(a) is type(b), where


def test_model_numbers_equal_reduce_over_received_ranges() -> None:
    feed = MemFeed()
    model = LiveModel(feed.hello(timeout=1))
    blks = blocks(6)
    for seq, b in enumerate(blks):
        if seq != 3:  # one block skipped on the wire: the ranges must leave it out
            model.apply(BlockMsg(seq, b))
    snap = model.snapshot()
    assert len(snap.tag_ranges) == 2
    assert snap.tag_ranges[0] == (int(blks[0].tags[0]), int(blks[2].tags[-1]) + 1)
    every = ShotBlock.concat(blks)
    keep = np.zeros(len(every), bool)
    for a, b in snap.tag_ranges:
        keep |= (every.tags >= a) & (every.tags < b)
    reducer = SummaryReducer(Analysis.from_config(config(), ev_per_adu={"MPCCD-1N0-M06-004": 3.65}))
    offline = reducer.result(reducer.update(reducer.init(), every.select(keep)))
    assert_close(snap.summary, offline)  # counts exactly, values to 1e-9 relative (DESIGN.md)
    assert snap.result_keys == {"roi": "roi"}
    model.reset()
    assert model.snapshot().tag_ranges == () and model.snapshot().summary["shots"]["total"] == 0


def test_model_roi_change_starts_that_roi_afresh() -> None:
    feed = MemFeed(config(rois=("a", "b")))
    model = LiveModel(feed.hello(timeout=1))
    model.apply(BlockMsg(0, blocks(1, rois=("a", "b"))[0]))
    feed.table.set(Roi(name="a", detector="MPCCD-1N0-M06-004", x=(1, 9), y=(0, 8)), shot=30, tag=2_000_000)
    model.apply(RoisMsg(tuple(feed.table.all())))
    snap = model.snapshot()
    assert snap.result_keys == {"a": "a/v2", "b": "b"}
    assert "a/v2" not in snap.summary["rois"] and np.isnan(snap.series["a"].values).all()
    assert np.isfinite(snap.series["b"].values).any()


def test_plots_render_every_view_as_plain_text() -> None:
    model = LiveModel(MemFeed().hello(timeout=1))
    for seq, b in enumerate(blocks(8, size=60)):
        model.apply(BlockMsg(seq, b))
    snap = model.snapshot()
    for view, title in [("scan", "norm vs scan"), ("correlation", "vs I0"), ("histogram", "histogram"),
                        ("trend", "vs tag")]:
        text = render_view(view, snap, "roi", width=70, height=18)
        assert title in text and "\x1b" not in text
        assert len(text.split("\n")) <= 18 and max(map(len, text.split("\n"))) <= 70
    assert "on−off" in render_view("scan", snap, "roi", width=70, height=18)
    assert render_view("scan", snap, None, width=70, height=18).startswith("no ROI")
    assert render_view("scan", snap, "roi", width=10, height=3) == ""
    assert len(render_view("scan", snap, "roi", width=200, height=60).split("\n")) <= 60


def test_feed_loop_rebuilds_the_model_for_a_reconfigured_recorder() -> None:
    from shotwatch.console.feedloop import FeedLoop, FeedNotice, Greeted, SnapshotReady

    feed = MemFeed()
    posted: list[object] = []
    loop = FeedLoop(feed, post=posted.append, snapshot_every=0.0)
    feed.push_blocks(blocks(2))
    loop.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
                isinstance(p, SnapshotReady) and p.snapshot.summary["shots"]["total"] == 60 for p in posted):
            time.sleep(0.02)
        first = loop.model
        feed.hello(timeout=1)  # a new hello, same config: keep going
        time.sleep(0.2)
        assert loop.model is first
        feed.cfg = config(rois=("a", "b"))
        feed.hello(timeout=1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and loop.model is first:
            time.sleep(0.02)
        assert loop.model is not first
        assert sum(isinstance(p, Greeted) for p in posted) == 2
        assert any(isinstance(p, FeedNotice) and "averages restarted" in p.text for p in posted)
    finally:
        loop.stop()
    assert not loop.alive
