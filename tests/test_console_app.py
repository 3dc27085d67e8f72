"""The console driven for real (run_test + Pilot) on an in-memory feed."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from textual.widgets import Input

from shotwatch.console import make_app
from shotwatch.console.app import ShotwatchApp
from shotwatch.console.live import LiveScreen
from shotwatch.console.widgets import Painted, RoiForm
from shotwatch.schemas import Roi
from test_console_fakes import MemFeed, blocks, config

pytestmark = pytest.mark.timeout(60)


def aio(fn: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test without a pytest plugin."""
    @functools.wraps(fn)
    def run() -> None:
        asyncio.run(fn())
    return run


async def settle(pilot: Any, app: ShotwatchApp, *, until: Any = None, limit: float = 5.0) -> None:
    """Let the feed thread deliver, then paint once."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        await pilot.pause(0.02)
        if app.snapshot is not None and (until is None or until(app)):
            break
    screen = app.screen
    if isinstance(screen, LiveScreen):
        screen.tick()
    await pilot.pause()


def live(app: ShotwatchApp) -> LiveScreen:
    screen = app.screen
    assert isinstance(screen, LiveScreen)
    return screen


def fed(feed: MemFeed | None = None, n: int = 4, **kw: Any) -> tuple[ShotwatchApp, MemFeed]:
    feed = feed or MemFeed()
    rois = tuple(r.name for r in feed.cfg.roi)
    feed.push_blocks(blocks(n, rois=rois))
    return make_app(feed, refresh_hz=20, plot_every=0.0, image_every=0.0, **kw), feed


def roi_requests(feed: MemFeed) -> list[tuple[str, Any]]:
    return [(op, a) for op, a in feed.requests if op in ("set_roi", "delete_roi")]


def sent_roi(feed: MemFeed) -> Roi:
    op, args = roi_requests(feed)[-1]
    assert op == "set_roi"
    return args["roi"]


@aio
async def test_views_switch_and_paint() -> None:
    app, _ = fed()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, until=lambda a: a.snapshot.summary.get("shots", {}).get("total") == 120)
        screen = live(app)
        assert "60.0 Hz" in screen.query_one("#status", Painted).shown
        assert "tags 1000000:" in screen.query_one("#status", Painted).shown
        rows = screen.query_one("#rois", Painted).shown
        assert "roi" in rows and "I0" in rows and "accepted" in rows
        for key, view, title in [("2", "correlation", "vs I0"), ("3", "histogram", "histogram"),
                                 ("4", "trend", "vs tag"), ("1", "scan", "norm vs scan")]:
            await pilot.press(key)
            await settle(pilot, app)
            assert screen.view == view
            assert title in screen.query_one("#plot", Painted).shown
        await pilot.press("d")
        await settle(pilot, app)
        assert screen.view == "detector"
        assert "no image yet" in screen.query_one("#detector", Painted).shown
        assert not screen.query_one("#plot").display and screen.query_one("#detector").display


@aio
async def test_edit_form_prefilled_typed_and_applied() -> None:
    app, feed = fed()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("e")
        form = app.screen.query_one(RoiForm)
        x0 = app.screen.query_one("#f-x0", Input)
        assert form.is_open and not x0.disabled and form.active_field == "x0" and app.focused is None
        assert [app.screen.query_one(f"#f-{f}", Input).value for f in ("x0", "x1", "y0", "y1")] == ["0", "8", "0", "8"]
        assert app.screen.query_one("#f-name", Input).disabled  # edit keeps the name
        await pilot.press("2", "tab", "9", "tab", "tab", "7")  # typing replaces the selection
        await pilot.press("enter")
        await settle(pilot, app, until=lambda a: live(a).selected and not live(a).selection.pending)
        roi = sent_roi(feed)
        assert (roi.name, roi.x, roi.y) == ("roi", (2, 9), (0, 7))
        assert not form.is_open and x0.disabled
        # The broadcast came back: the screen shows the new rectangle
        assert "x [2, 9) y [0, 7)" in live(app).query_one("#selected", Painted).shown


@aio
async def test_escape_cancels_and_invalid_value_is_a_notice() -> None:
    app, feed = fed()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("e", "5", "escape")
        await pilot.pause()
        assert not app.screen.query_one(RoiForm).is_open and roi_requests(feed) == []
        await pilot.press("e", "tab", "4", "0", "enter")  # x1 = 40 > 32 columns
        await pilot.pause()
        assert roi_requests(feed) == []
        assert any("expected x <= 32" in text for _, _, text in app.notices)
        assert app.screen.query_one(RoiForm).is_open  # still open to correct it
        await pilot.press("escape")


@aio
async def test_new_roi_and_delete_with_confirmation() -> None:
    app, feed = fed()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("n")
        assert app.screen.query_one("#f-name", Input).value == "roi1"
        await pilot.press("b", "g", "enter")
        await pilot.pause(0.2)
        roi = sent_roi(feed)
        assert (roi.name, roi.detector, roi.x, roi.y) == ("bg", "MPCCD-1N0-M06-004", (0, 32), (16, 48))
        await settle(pilot, app, until=lambda a: len(a.snapshot.rois) == 2)
        assert live(app).selected == "bg"
        await pilot.press("x", "n")  # anything but y cancels
        await pilot.pause(0.1)
        assert roi_requests(feed)[-1][0] == "set_roi"
        await pilot.press("x", "y")
        await settle(pilot, app, until=lambda a: len(a.snapshot.rois) == 1)
        assert roi_requests(feed)[-1] == ("delete_roi", {"name": "bg"})
        assert live(app).selected == "roi"


@aio
async def test_nudge_grow_tab_reset_pause() -> None:
    app, feed = fed(MemFeed(config(rois=("a", "b"))))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        screen = live(app)
        assert screen.selected == "a"
        await pilot.press("right")  # arrows nudge only in the detector view
        assert roi_requests(feed) == []
        await pilot.press("d", "right", "shift+down")
        await pilot.pause(0.2)
        roi = sent_roi(feed)
        assert (roi.x, roi.y) == ((1, 9), (10, 18))  # accumulates before the broadcast arrives
        await pilot.press("minus")
        await pilot.pause(0.2)
        assert (sent_roi(feed).x, sent_roi(feed).y) == ((2, 8), (11, 17))
        await pilot.press("left", "left", "left", "plus")  # x0 would be -1 then -2
        await pilot.pause(0.2)
        assert any("stay inside the detector" in t for _, _, t in app.notices)
        await pilot.press("tab")
        assert screen.selected == "b"
        await pilot.press("r")
        await settle(pilot, app, until=lambda a: a.snapshot.tag_ranges == ())
        assert app.snapshot is not None and app.snapshot.tag_ranges == ()
        await pilot.press("p")
        assert app.paused and "PAUSED" in screen.query_one("#status", Painted).shown
        await pilot.press("p")
        assert not app.paused


@aio
async def test_quit_stops_the_feed_thread() -> None:
    app, feed = fed()
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0
    assert not app.loop.alive


@aio
async def test_80x24_does_not_overlap_in_any_view() -> None:
    app, _ = fed(MemFeed(config(rois=("a", "b", "c"))))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        for key in ["1", "2", "3", "4", "d", "e"]:
            await pilot.press(key)
            await settle(pilot, app)
            regions = [w.region for w in app.screen.query("#status, #rois, #selected, #plot, #detector, #form, #keys")
                       if w.display]
            for i, a in enumerate(regions):
                assert a.right <= 80 and a.bottom <= 24
                for b in regions[i + 1:]:
                    assert not a.overlaps(b), (key, a, b)
        await pilot.press("escape")


@aio
async def test_read_only_refuses_with_a_notice() -> None:
    app, feed = fed(MemFeed(read_only=True))
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("e", "enter")
        await pilot.pause()
        assert feed.requests == []
        assert any("read-only" in t for _, _, t in app.notices)


@aio
async def test_recorder_gone_and_help_and_notices() -> None:
    app, feed = fed()
    async with app.run_test() as pilot:
        await settle(pilot, app)
        feed.is_connected = False
        feed.push_blocks(blocks(1, seed=3))
        await settle(pilot, app, until=lambda a: not a.connected)
        assert "recorder gone — reconnecting" in live(app).query_one("#status", Painted).shown
        from test_console_fakes import synth_i0_missing_status
        feed.push(synth_i0_missing_status())
        await settle(pilot, app, until=lambda a: a.snapshot.status is not None and a.snapshot.status.not_in_stream)
        rows = live(app).query_one("#rois", Painted).shown.split("\n")
        i0_row = next(r for r in rows if r.startswith(" I0"))
        assert i0_row.rstrip().endswith("missing") and "mean" not in i0_row  # never zeros
        assert "missing: peak/voltage" in live(app).query_one("#status", Painted).shown
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape", "l")
        assert type(app.screen).__name__ == "NoticesScreen"
        await pilot.press("escape")
        assert isinstance(app.screen, LiveScreen)


@aio
async def test_low_bandwidth_has_no_plots() -> None:
    app, _ = fed(low_bandwidth=True)
    assert app.refresh_hz == 20
    async with app.run_test() as pilot:
        await settle(pilot, app)
        assert live(app).view == "numbers" and live(app).query_one("#plot", Painted).shown == ""
        await pilot.press("1")
        await settle(pilot, app)
        assert any("low-bandwidth" in t for _, _, t in app.notices)
        assert live(app).query_one("#plot", Painted).shown == ""
        await pilot.press("2")  # correlation and histogram: one line of text, never a plot
        await settle(pilot, app)
        line = live(app).query_one("#plot", Painted).shown
        assert line.startswith("roi vs I0: n ") and "\n" not in line
        await pilot.press("d")
        await settle(pilot, app)
        assert "thumbnail off" in live(app).query_one("#detector", Painted).shown
        assert make_app(MemFeed(), low_bandwidth=True).refresh_hz == 0.5
        assert app.console._color_system is None or app.console._color_system.value <= 1


@aio
async def test_mark_grab_and_thumbnail() -> None:
    import numpy as np

    import synth
    from shotwatch.link.messages import ImageMsg, NoticeMsg
    from test_console_fakes import SHAPE

    app, feed = fed()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("m", "b", "e", "a", "m", "enter")
        await pilot.pause(0.2)
        assert ("mark", {"text": "beam"}) in feed.requests
        await pilot.press("g")
        await pilot.pause(0.2)
        assert ("grab", {"detector": synth.DET, "n": 10}) in feed.requests
        assert live(app).view == "detector"
        img = np.zeros(SHAPE, np.float32)
        img[8:16, 4:12] = 9.0
        feed.push(ImageMsg(synth.DET, img, 10, "grab"), NoticeMsg(0.0, "disk almost full", "warning"))
        await settle(pilot, app, until=lambda a: synth.DET in a.snapshot.images)
        shown = live(app).query_one("#detector", Painted).shown
        assert "grab mean of 10 frames" in shown and "╔" in shown and "▀" in shown
        await settle(pilot, app, until=lambda a: any("disk almost" in t for _, _, t in a.notices))
        assert ("warning", "disk almost full") in [(lv, t) for _, lv, t in app.notices]


@aio
async def test_tab_in_the_form_does_not_repaint_the_screen() -> None:
    """Moving between fields repaints only the fields (Textual repaints all on a focus change)."""
    app, _ = fed()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("e")
        screen = live(app)
        calls: list[dict[str, Any]] = []
        original = screen.refresh

        def spy(*args: Any, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return original(*args, **kwargs)

        screen.refresh = spy  # type: ignore[method-assign]
        await pilot.press("tab", "tab", "shift+tab")
        await pilot.pause()
        assert not [c for c in calls if c.get("repaint")]
        assert app.screen.query_one(RoiForm).active_field == "x1"  # x0 → x1 → y0 → back to x1
        await pilot.press("escape")


@aio
async def test_keys_typed_ahead_land_in_the_right_fields() -> None:
    """Over a slow link a whole burst of keys arrives at once: each must reach its field."""
    from textual import events

    app, feed = fed()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        burst = [("e", "e"), ("3", "3"), ("tab", None), ("1", "1"), ("2", "2"), ("tab", None),
                 ("tab", None), ("5", "5"), ("enter", "\r")]
        for key, char in burst:  # posted in one go, as a terminal driver does with a burst
            app.post_message(events.Key(key, char))
        await settle(pilot, app, until=lambda a: bool(roi_requests(feed)))
        roi = sent_roi(feed)
        assert (roi.x, roi.y) == ((3, 12), (0, 5))


def test_every_key_is_declared_once_and_has_its_action() -> None:
    """keys.py generates the bindings, the key bar and the help page: they cannot disagree."""
    from textual.binding import Binding

    from shotwatch.console.keys import BAR_LINES, HELP, KEYS, bar_text, bindings, main_bar
    app, _ = fed()
    for owner, found in ((app, bindings("app")), (app.live, bindings("live"))):
        for binding in found:
            assert isinstance(binding, Binding)
            action = binding.action.split("(")[0]
            assert callable(getattr(owner, f"action_{action}", None)), (binding.key, action)
    for entry in KEYS:
        for keys, what in entry.help:
            assert f"  {keys:<11} {what}" in HELP
    for width in (80, 120):  # every key of the live screen on the bar, help first
        bar = bar_text(main_bar(), width).plain
        assert bar.startswith("? help 1-4 plots c corr h hist d image")
        lines = bar.split("\n")
        assert len(lines) <= BAR_LINES and all(len(line) <= width + 1 for line in lines), lines
        for keys, what in main_bar():
            assert f"{keys} {what} " in bar


@aio
async def test_seek_pause_and_speed_are_requests_to_a_replaying_recorder() -> None:
    live_feed = MemFeed()
    app, _ = fed(live_feed)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("right_square_bracket", "p")
        await pilot.pause(0.2)
        assert any("seek works in replay only" in t for _, _, t in app.notices)
        assert not [op for op, _ in live_feed.requests if op in ("seek", "pause")]  # p pauses the display only
    replay = MemFeed()
    replay.playback = True
    app, _ = fed(replay)
    async with app.run_test() as pilot:
        await settle(pilot, app, until=lambda a: a.snapshot.playback)
        await pilot.press("right_square_bracket", "left_square_bracket", "home", "greater_than_sign", "p")
        await pilot.pause(0.3)
        sent = [(op, a) for op, a in replay.requests if op in ("seek", "pause", "speed")]
        assert sent == [("seek", {"seconds": 10.0}), ("seek", {"seconds": -10.0}), ("seek", {"start": True}),
                        ("speed", {"speed": 2.0}), ("pause", {"paused": True})]
        assert app.paused
