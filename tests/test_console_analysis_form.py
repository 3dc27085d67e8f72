"""The console's one-line row driven for real (run_test + Pilot): the analysis form ``a``, a dark
``D``, a recomputation ``R``, and the values the ``c`` and ``h`` views show."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from textual import events

import synth
from shotwatch.console import make_app
from shotwatch.console.app import ShotwatchApp
from shotwatch.console.widgets import LineForm, Painted, RoiForm
from shotwatch.link.messages import AnalysisMsg, DarkMsg, Progress, StateMsg, Status, StatusMsg
from shotwatch.schemas import I0, AnalysisVersion, Calibration, DarkFrame, Mask
from test_console_app import aio, live, settle
from test_console_fakes import SHAPE, MemFeed, blocks, config

pytestmark = pytest.mark.timeout(60)
USER = "tester@beamline"


def fed(feed: MemFeed | None = None, **kw: Any) -> tuple[ShotwatchApp, MemFeed]:
    feed = feed or MemFeed()
    feed.push_blocks(blocks(4))
    return make_app(feed, refresh_hz=20, plot_every=0.0, image_every=0.0, user=USER, **kw), feed


def sent(feed: MemFeed, op: str) -> list[dict[str, Any]]:
    return [a for o, a in feed.requests if o == op]


def row(app: ShotwatchApp) -> LineForm:
    return live(app).query_one(LineForm)


def message(app: ShotwatchApp) -> str:
    return live(app).query_one("#selected", Painted).shown


@aio
async def test_analysis_form_opens_on_i0_min_selected_and_sends_the_sections() -> None:
    app, feed = fed()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("a")
        line = row(app)
        assert line.is_open and line.display and not live(app).query_one(RoiForm).display
        assert line.shown.startswith("analysis 1/") and "i0 ≥ [0.05" in line.shown
        assert message(app).startswith("i0.min: smallest accepted I0")  # the active field's hint
        assert "enter apply" in live(app).query_one("#keys", Painted).shown
        await pilot.press("0", ".", "2")  # replaces the selected value
        assert "i0 ≥ [0.2 " in line.shown
        await pilot.press("tab", "tab", "backspace", "0", ".", "7", "enter")  # veto[0].min: 0.5 -> 0.7
        await settle(pilot, app, until=lambda a: not row(a).is_open)
        (args,) = sent(feed, "set_analysis")
        assert args["by"] == USER
        analysis = args["analysis"]
        assert analysis["i0"] == {"name": synth.I0, "min": 0.2}  # no bound: absent
        assert analysis["veto"][0]["min"] == 0.7
        assert analysis["scan"]["edges"] == {"start": -1500.0, "stop": 3500.0, "count": 10}  # untouched, exact
        assert "source" not in analysis and "roi" not in analysis and "record" not in analysis
        assert live(app).query_one(RoiForm).display and not line.display
        assert any("analysis v2 set" in t for _, _, t in app.notices)


@aio
async def test_keys_typed_ahead_land_in_the_right_analysis_fields() -> None:
    """A burst over a slow link: `a` and everything typed behind it arrive at once."""
    app, feed = fed()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        burst = [("a", "a"), ("1", "1"), ("tab", None), ("9", "9"), ("tab", None), ("tab", None), ("2", "2"),
                 ("enter", "\r")]
        for key, char in burst:  # i0.min 1, i0.max 9, veto[0].max (on the next page at 80 columns) 2
            app.post_message(events.Key(key, char))
        await settle(pilot, app, until=lambda a: bool(sent(feed, "set_analysis")))
        (args,) = sent(feed, "set_analysis")
        assert args["analysis"]["i0"]["min"] == 1.0 and args["analysis"]["i0"]["max"] == 9.0
        assert args["analysis"]["veto"] == [{"name": synth.BEAM, "min": 0.5, "max": 2.0}]


@aio
async def test_a_refusal_is_one_line_in_the_form_which_stays_open() -> None:
    app, feed = fed()
    feed.refuse["set_analysis"] = "i0.max: expected a channel this recorder knows, found 'x'"
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("a", "enter")
        await pilot.pause()
        assert message(app).startswith("nothing changed") and row(app).is_open
        await pilot.press("tab", "-", "1", "enter")  # checked here first: no request
        await pilot.pause()
        assert not sent(feed, "set_analysis") and row(app).is_open
        assert message(app) == "i0: expected max >= min (0.05), found max = -1.0"
        await pilot.press("backspace", "backspace", "3", "enter")  # the recorder refuses
        await settle(pilot, app, until=lambda a: "refused" in message(a))
        assert len(sent(feed, "set_analysis")) == 1 and row(app).is_open
        assert message(app) == "refused: i0.max: expected a channel this recorder knows, found 'x'"
        assert "\n" not in message(app)
        await pilot.press("escape")
        assert not row(app).is_open and live(app).query_one(RoiForm).display


@aio
async def test_read_only_cannot_open_the_form_nor_take_a_dark_but_may_recompute() -> None:
    app, feed = fed(MemFeed(read_only=True))
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("a")
        assert not row(app).is_open
        await pilot.press("D")
        assert not row(app).is_open
        await pilot.press("R")
        await settle(pilot, app, until=lambda a: bool(sent(feed, "recompute")))
        assert sent(feed, "recompute") == [{}] and not sent(feed, "set_analysis") and not sent(feed, "dark")
        texts = [t for _, _, t in app.notices]
        assert any("analysis form: this console is read-only" in t for t in texts)
        assert any("dark: this console is read-only" in t for t in texts)


@aio
async def test_dark_asks_frames_then_y_n_while_the_beam_is_on() -> None:
    app, feed = fed()
    feed.refuse["dark"] = "dark: beam on (veto xfel_mon_bpm_bl3_0_3_beamstatus/summary passes)"
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("D")
        assert row(app).shown.startswith(f"dark of {synth.DET}:  frames [600")
        await pilot.press("1", "2", "0", "enter")
        await settle(pilot, app, until=lambda a: isinstance(row(a).state, str))
        assert sent(feed, "dark") == [{"detector": synth.DET, "n": 120, "force": False}]
        assert "beam on" in row(app).shown and row(app).shown.endswith("anyway? y/n")
        assert "y yes" in live(app).query_one("#keys", Painted).shown
        await pilot.press("y")
        await settle(pilot, app, until=lambda a: len(sent(feed, "dark")) == 2)
        assert sent(feed, "dark")[1] == {"detector": synth.DET, "n": 120, "force": True}
        assert not row(app).is_open
        await pilot.press("D", "x", "enter")
        await pilot.pause()
        assert message(app) == "frames: expected a whole number >= 1, found 'x'" and len(sent(feed, "dark")) == 2
        await pilot.press("escape")
        # the recorder answers a dark it takes once its frames are in: no answer yet is under way
        feed.refuse["dark"] = "dark: the recorder at tcp://127.0.0.1:5561 did not answer within 3 s"
        await pilot.press("D", "enter")
        await settle(pilot, app, until=lambda a: any("under way" in t for _, _, t in a.notices))
        assert sent(feed, "dark")[2] == {"detector": synth.DET, "n": 600, "force": False} and not row(app).is_open


@aio
async def test_c_and_h_choose_any_value_from_a_filtered_list() -> None:
    app, _ = fed()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        screen = live(app)
        await pilot.press("c")
        assert row(app).shown.startswith("correlation y: ▏") and "roi" in row(app).shown
        await pilot.press("m", "o", "t", "o", "r", "enter")  # y: the scan motor
        assert row(app).shown.startswith("correlation xfel_bl_3_st_5_motor_user_1/position vs x:")
        await pilot.press("enter")  # x: I0, picked to start with
        await settle(pilot, app)
        assert screen.view == "correlation"
        plot = screen.query_one("#plot", Painted).shown
        assert "motor_user_1/position vs I0 (last " in plot, plot
        await pilot.press("h", "b", "e", "a", "m", "enter")  # the beam status, a veto's value
        await settle(pilot, app)
        assert screen.view == "histogram"
        plot = screen.query_one("#plot", Painted).shown
        assert "histogram" in plot and "veto [0.5, ∞]" in plot, plot
        await pilot.press("h", "i", "0", "enter")  # I0, its window drawn on it
        await settle(pilot, app)
        assert "I0 histogram" in screen.query_one("#plot", Painted).shown
        plot = screen.query_one("#plot", Painted).shown
        assert "I0 window [0.05, ∞]" in plot and "█" in plot  # the bars
        await pilot.press("c", "z", "z", "z")
        assert "no match" in row(app).shown
        await pilot.press("enter", "escape")
        assert not row(app).is_open and screen.view == "histogram"


def status(**kw: Any) -> StatusMsg:
    return StatusMsg(Status(time=time.time(), source="sim", run=1, last_tag=9, rate_hz=30.0, newest_age_s=0.1, **kw))


@aio
async def test_alarms_ring_once_turn_the_status_red_and_clear_themselves() -> None:
    app, feed = fed()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        bar = live(app).query_one("#status", Painted)
        assert not bar.has_class("-alarm") and "analysis v1" in bar.shown
        lost = "beam lost: veto {} failing for 2 s and more (since tag {})"
        feed.push(status(alarms=[lost.format("beam", 10)]))
        await settle(pilot, app, until=lambda a: bool(a.snapshot.status and a.snapshot.status.alarms))
        assert app.bells == 1 and bar.has_class("-alarm")
        assert "ALARM beam lost: veto beam" in bar.shown.split("\n")[1]
        feed.push(status(alarms=[lost.format("beam", 12), "accepted 3.0 % of 300 shots over the last 10 s"]))
        await settle(pilot, app, until=lambda a: len(a.snapshot.status.alarms) == 2)
        assert app.bells == 2  # the accepted fraction started; the beam's new figures are no new alarm
        feed.push(status(alarms=[]))
        await settle(pilot, app, until=lambda a: not a.snapshot.status.alarms)
        assert app.bells == 2 and not bar.has_class("-alarm") and "ALARM" not in bar.shown


@aio
async def test_the_detector_view_shows_the_image_the_dark_and_the_mask() -> None:
    cfg = config().model_copy(update={
        "mask": [Mask(detector=synth.DET, x=(0, 4), y=(0, 2))],
        "calibration": Calibration(dark={synth.DET: 1})})
    feed = MemFeed(cfg)
    mean = np.full(SHAPE, 350.0, np.float32)
    feed.push(DarkMsg(synth.DET, 1, DarkFrame(mean, np.full(SHAPE, 6.0, np.float32), 600, 100, 1298)))
    app, _ = fed(feed)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, app, until=lambda a: bool(a.snapshot.darks))
        view = live(app).query_one("#detector", Painted)
        await pilot.press("d")
        await settle(pilot, app)
        assert "no image yet" in view.shown
        await pilot.press("d")
        await settle(pilot, app)
        assert view.shown.startswith(f"{synth.DET} · dark v1: mean of 600 frames (tags 100–1298), median 350 ADU, "
                                     "noise 6 ADU\n")
        assert "view detector (dark)" in message(app)
        await pilot.press("d")
        await settle(pilot, app)
        assert view.shown.startswith(f"{synth.DET} · mask: 8 of 2,048 pixels never count (white)\n")
        assert "▀" in view.shown
        await pilot.press("d")
        await settle(pilot, app)
        assert "no image yet" in view.shown


@aio
async def test_a_recomputation_shows_its_progress_then_a_notice_when_swapped_in() -> None:
    app, feed = fed()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        model = app.loop.model
        assert model is not None
        cfg = config().model_copy(update={"i0": I0(name=synth.I0, min=0.2)})
        feed.push(AnalysisMsg(AnalysisVersion(version=2, first_shot=120, first_tag=5000, by=USER), cfg, 1, 120, 5000,
                              "analysis version 2 set by " + USER),
                  status(epoch=1, analysis_version=2, recompute=Progress(done=40, total=120, epoch=1)))
        bar = live(app).query_one("#status", Painted)
        await settle(pilot, app, until=lambda a: a.snapshot.recompute is not None)
        live(app).tick()
        assert "analysis v2 · recomputing: 40 of 120 shots" in bar.shown
        prefix = model.reducers.encode(model.reducers.init())
        feed.push(StateMsg(1, 2, 120, 120, 0.42, ((1_000_000, 1_000_240),), prefix), status(epoch=1, analysis_version=2))
        await settle(pilot, app, until=lambda a: a.snapshot.recomputed is not None)
        live(app).tick()
        assert "recomputed 120 shots in 0.4 s: on screen now, analysis v2" in [t for _, _, t in app.notices]
        assert "analysis v2 · tags 1000000:1000240" in bar.shown and "recomputing" not in bar.shown
        assert not any("missed" in t for _, _, t in app.notices)  # the change was not missed: no hello again
