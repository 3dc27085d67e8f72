"""The recorder across run changes and late detectors (hardening issue, items 5 and 8).

A scripted source (the Source protocol over tests/synth.py blocks) changes run, or shows a
detector only after its first blocks; the recorder records real zarr stores and `reduce`
reads them back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import synth
from shotwatch.link.messages import NoticeMsg, StatusMsg
from shotwatch.link.protocols import NullListener
from shotwatch.recorder.acquire import Recorder
from shotwatch.recording import RecordingReader
from shotwatch.schemas import Config, DetectorInfo, Frames, Roi, ShotBlock, SourceInfo
from shotwatch.sources import Source, SourceStatus
from test_record_reduce import run_cli

SHAPE = (64, 32)
INFO = DetectorInfo(shape=SHAPE, dtype="uint16", ev_per_adu=3.65)


class Scripted(Source):
    """Blocks with frames of ``synth.DET``; ``runs[i]`` is the run of block i; the detector is
    described only from block ``det_from`` on (its frames too)."""

    def __init__(self, runs: list[int], *, det_from: int = 0, size: int = 40) -> None:
        rng = np.random.default_rng(3)
        self._blocks: list[ShotBlock] = []
        tag = 1_000_000
        for i, run in enumerate(runs):
            b = synth.block(rng, first_tag=tag, n=size, rois={}, frame_every=1 if i >= det_from else 0,
                            frame_shape=SHAPE, nan_fraction=0.0)
            if i >= det_from:  # the detector's own dtype (synth draws float32 frames)
                fr = b.frames[synth.DET]
                b = b.with_(frames={synth.DET: Frames(fr.pixels.astype(np.uint16), fr.shot)})
            self._blocks.append(b.with_(run=run))
            tag = int(b.tags[-1]) + 2
        self._det_from = det_from
        self._next = 0

    def open(self) -> None:
        pass

    def describe(self) -> SourceInfo:
        dets = {synth.DET: INFO} if self._next > self._det_from or self._det_from == 0 else {}
        run = self._blocks[min(self._next, len(self._blocks) - 1)].run
        return SourceInfo(kind="sim", run=run, detectors=dets, points=[synth.I0, synth.BEAM, synth.SCAN])

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        pass

    def read(self, *, timeout: float) -> ShotBlock | None:
        if self._next >= len(self._blocks):
            return None
        self._next += 1
        return self._blocks[self._next - 1]

    def status(self) -> SourceStatus:
        return SourceStatus(state="ended" if self._next >= len(self._blocks) else "running")

    def notices(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


class Heard(NullListener):
    wants_blocks = True

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.states: list[str] = []
        self.shots = 0

    def on_block(self, msg: Any) -> None:
        self.shots += len(msg.block)

    def on_notice(self, msg: NoticeMsg) -> None:
        self.notices.append(msg.text)

    def on_status(self, msg: StatusMsg) -> None:
        self.states.append(msg.status.state)


def config() -> Config:
    return Config.model_validate({
        "i0": {"name": synth.I0, "min": 0.05},
        "roi": [{"name": "spot", "detector": synth.DET, "x": [0, 8], "y": [0, 8]}],
        "record": {"frames_every": 0},
    })


def recorded_tags(path: Path) -> list[int]:
    reader = RecordingReader(path)
    assert reader.closed, f"{path} was not closed"
    return [int(t) for t in reader.tags()]


def test_a_new_run_whose_path_exists_gets_the_next_suffix(tmp_path: Path) -> None:
    source = Scripted([5, 5, 6, 6, 7])
    (tmp_path / "out-6.zarr").mkdir()  # left from an earlier session
    recorder = Recorder(config(), out=str(tmp_path / "out.zarr"), source=source)
    heard = Heard()
    recorder.add_listener(heard)
    recorder.run()
    paths = [p for p, _ in recorder.sink.finished] if recorder.sink else []
    assert paths == [tmp_path / "out.zarr", tmp_path / "out-6-2.zarr", tmp_path / "out-7.zarr"]
    assert any("out-6.zarr exists already" in n and "out-6-2.zarr" in n for n in heard.notices)
    every = [t for p in paths for t in recorded_tags(p)]
    sent = [int(t) for b in source._blocks for t in b.tags]
    assert every == sent  # every tag in exactly one recording, in order
    assert heard.shots == len(sent) and recorder.status().state == "stopped"
    for p in paths:
        proc = run_cli("reduce", str(p), "--json")
        assert proc.returncode == 0, proc.stderr


def test_a_run_change_that_cannot_record_stops_recording_not_live(tmp_path: Path) -> None:
    (tmp_path / "6").write_text("a file where run 6's directory would go")
    source = Scripted([5, 5, 6, 6, 6])
    recorder = Recorder(config(), out=str(tmp_path / "{run}" / "out.zarr"), source=source)
    heard = Heard()
    recorder.add_listener(heard)
    recorder.run()
    assert any("recording not started" in n and "6/out.zarr" in n for n in heard.notices), heard.notices
    assert "failed" in heard.states
    assert heard.shots == 5 * 40  # live data kept flowing through the failure
    first = tmp_path / "5" / "out.zarr"
    assert recorded_tags(first) == [int(t) for b in source._blocks[:2] for t in b.tags]  # closed, intact
    assert recorder.status().state == "failed"


def test_a_detector_first_seen_after_the_start_is_recorded(tmp_path: Path) -> None:
    source = Scripted([1] * 6, det_from=2)
    out = tmp_path / "late.zarr"
    recorder = Recorder(config(), out=str(out), source=source)
    recorder.run()
    info = json.loads(run_cli("info", str(out), "--json").stdout)
    assert info["detectors"][synth.DET] == {"shape": list(SHAPE), "dtype": "uint16", "ev_per_adu": 3.65}
    proc = run_cli("reduce", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    spot = json.loads(proc.stdout)["rois"]["spot"]
    assert spot["count"] > 0 and spot["sum"] > 0  # the shots after it appeared have values
