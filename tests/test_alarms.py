"""Alarms (``[alarm]``): the simulator made to do it (beam-off burst, I0 drop, stalled source).

The recorder evaluates them; each rings once when it starts (a notice, ``Status.alarms``) and
clears itself. The scripted events (``source.events``) are pure functions of the tag, so the
shots at which each alarm must start and clear are known here from the configuration alone.
"""

from __future__ import annotations

import time

import numpy as np

from shotwatch.link.messages import NoticeMsg, StatusMsg
from shotwatch.link.protocols import NullListener
from shotwatch.recorder.acquire import Recorder
from shotwatch.recorder.alarms import Alarms
from shotwatch.schemas import Alarm, SimSource, parse_config
from shotwatch.sources.sim import Simulator
from shotwatch.sources.sim_physics import BEAM, I0, SHUTTER, draw_truth

ROI = {"name": "r", "detector": "MPCCD-1N0-M06-004", "x": [184, 216], "y": [284, 316]}


class Heard(NullListener):
    def __init__(self) -> None:
        self.notices: list[str] = []
        self.alarms: list[list[str]] = []

    def on_notice(self, msg: NoticeMsg) -> None:
        self.notices.append(msg.text)

    def on_status(self, msg: StatusMsg) -> None:
        self.alarms.append(list(msg.status.alarms))


def run(alarm: dict[str, object], events: list[dict[str, object]], *, shots: int, rate: float = 0,
        seed: int = 11) -> tuple[Heard, Recorder]:
    cfg = parse_config({"source": {"seed": seed, "rate": rate, "shutter": "open", "events": events},
                        "i0": {"name": I0, "min": 0.05}, "veto": [{"name": BEAM, "min": 0.5}, {"name": SHUTTER, "min": 0.5}],
                        "alarm": alarm, "roi": [ROI], "record": {"frames_every": 0}}, origin="test")
    assert isinstance(cfg.source, SimSource)
    # small blocks at rate 0: each block is a few seconds of the stream, as at SACLA (ngrab 120)
    sim = Simulator(cfg.source, frames_every=0, rois={"r/v1": cfg.roi[0]}, block_shots=90)
    recorder = Recorder(cfg, record=False, source=sim)
    heard = Heard()
    recorder.add_listener(heard)
    recorder.run(shots=shots)
    return heard, recorder


def tag_of(slot: int, seed: int = 11) -> int:
    return draw_truth(seed).first_tag + 2 * slot


def test_a_beam_off_burst_rings_once_and_clears() -> None:
    heard, _ = run({"beam": BEAM}, [{"event": "beam-off", "start": 400, "slots": 120}], shots=900)
    rang = [n for n in heard.notices if n.startswith("beam lost")]
    assert len(rang) == 1 and f"veto {BEAM} failing" in rang[0]
    # the burst began at slot 400 (or the first shot after it, a tag may be missing)
    since = int(rang[0].rsplit("since tag ", 1)[1].rstrip(")"))
    assert tag_of(400) <= since <= tag_of(404)
    assert heard.notices.index(rang[0]) < heard.notices.index(f"alarm cleared: beam back (veto {BEAM} passes)")
    # a burst shorter than 2 s is no lost beam
    heard, _ = run({"beam": BEAM}, [{"event": "beam-off", "start": 400, "slots": 45}], shots=900)
    assert not [n for n in heard.notices if "beam" in n]


def test_an_i0_drop_rings_the_accepted_fraction_and_clears() -> None:
    heard, recorder = run({"accepted_min": 0.5}, [{"event": "i0-drop", "start": 500, "slots": 600}], shots=1500)
    rang = [n for n in heard.notices if n.startswith("accepted ")]
    assert len(rang) == 1 and "over the last 10 s (alarm.accepted_min = 50 %)" in rang[0]
    assert heard.notices[-1] == "alarm cleared: accepted fraction back to 50 % or more"
    assert recorder.status().alarms == []


def test_a_stalled_source_goes_stale_then_clears() -> None:
    # 30 shots/s in wall time; no shot for 1.5 s from slot 30 on; stale after 0.4 s
    heard, _ = run({"stale_s": 0.4}, [{"event": "stall", "start": 30, "slots": 45}], shots=90, rate=30)
    rang = [n for n in heard.notices if n.startswith("stale source")]
    assert len(rang) == 1 and "(alarm.stale_s = 0.4)" in rang[0]
    assert "alarm cleared: shots are coming again" in heard.notices[heard.notices.index(rang[0]):]
    assert any(a and a[0].startswith("stale source") for a in heard.alarms)  # in Status.alarms while it lasts


def test_alarms_across_blocks_and_within_one() -> None:
    """The beam judged shot by shot: a loss inside one block rings and clears; one spread over
    blocks rings once, naming the tag it began at."""
    alarms = Alarms(Alarm(beam="b"), now=0.0)
    t = np.arange(300) / 30.0
    beam = np.ones(300, bool)
    beam[60:150] = False  # 3 s off
    tags = 1000 + 2 * np.arange(300)
    got = alarms.add(tags=tags, times=t, accepted=np.ones(300, bool), beam=beam, now=1.0, wall=time.time())
    assert [(c.name, c.ringing) for c in got] == [("beam", True), ("beam", False)]
    assert "since tag 1120" in got[0].text
    chunks = [alarms.add(tags=tags[i:i + 20] + 600, times=t[i:i + 20] + 10, accepted=np.ones(20, bool),
                         beam=beam[i:i + 20], now=2.0, wall=time.time()) for i in range(0, 300, 20)]
    flat = [c for chunk in chunks for c in chunk]
    assert [(c.name, c.ringing) for c in flat] == [("beam", True), ("beam", False)] and "since tag 1720" in flat[0].text
    assert alarms.check(now=2.0 + 4.9) == [] and alarms.check(now=2.0 + 5.0)[0].name == "stale"
    assert alarms.check(now=10.0, stale_ok=True)[0].ringing is False
