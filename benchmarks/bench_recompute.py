"""Recomputing an hour of 30 Hz data after an analysis change, with the recorder running at 30 Hz.

The recording: 108,000 shots of the standard stream (4 ROIs of 64 x 64 float32, 16 points,
no dark; ``bench_writer``'s stream with the demo analysis minus its shutter veto, whose point
the stream lacks). A Recorder continues it (``--append``) from a source paced at 30 Hz, and:

1. its recomputation worker reads the hour's pixels once in the background (it keeps every
   shot's ROI values) while the recorder records: ``recompute_follow_108k``;
2. ten seconds of steady recording: the commit durations and the source's read lateness
   without any recomputation (the baselines of 3 and 4);
3. an I0-window change (``set_analysis``): the time from the request to the recomputed state
   of all 108,000+ shots (``recompute_108k``, gate <= 5 s, INTERFACE.md), against ``reduce``
   of the same recording alone (the same-run baseline: reader + summary, in process);
4. a threshold change (a new pixel calibration: every pixel is read again, nothing kept
   applies): ``recompute_108k_pixels``, report only, against the same baseline;
5. the recorder's commit durations and read lateness during 3 and 4 against 2
   (``recompute_commit_ms``, ``recompute_read_late_ms``), report only.

Also, report only: ``reduce`` of the recording split over 2 processes (``--tags`` halves,
concurrently) against one: what worker processes would gain on these 2 cores
(``recompute_split_2proc``; the reader already decompresses on threads).

    .venv/bin/python benchmarks/bench_recompute.py [--shots 108000] [--steady 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from _common import emit
from bench_writer import (
    BLOCK,
    FIRST_TAG,
    POINTS,
    standard_config,
    standard_rois,
    standard_source,
    standard_stream,
)
from shotwatch.commands.reduce_cmd import open_analysis, summarize
from shotwatch.link.messages import StateMsg
from shotwatch.link.protocols import NullListener
from shotwatch.recorder.acquire import Recorder
from shotwatch.recording import RecordingWriter
from shotwatch.schemas import ANALYSIS_SECTIONS, Config, Roi, ShotBlock
from shotwatch.schemas.source_info import SourceInfo
from shotwatch.sources.base import Source, SourceStatus

RATE = 30.0
DTYPE = "float32"


def bench_config() -> Config:
    """The standard configuration without the shutter veto (the stream has no shutter point)."""
    config = standard_config()
    return config.model_copy(update={"veto": [v for v in config.veto if v.name in POINTS]})


def make_hour(path: Path, shots: int, config: Config) -> None:
    writer = RecordingWriter.create(path, config=config, source=standard_source(DTYPE), rois=standard_rois(config),
                                    points=POINTS)
    for block in standard_stream(shots, config=config, dtype=DTYPE):
        writer.write(block)
    writer.close()


class Paced(Source):
    """The standard stream at ``rate`` shots a second, after the recording's last tag; it notes
    how late each read came after its block was due (a stalled acquire loop reads late)."""

    def __init__(self, config: Config, rate: float) -> None:
        self.rate = rate
        self.templates = list(standard_stream(4 * BLOCK, config=config, dtype=DTYPE))
        self.late: list[tuple[float, float]] = []  # (when, seconds late)
        self._tag = FIRST_TAG
        self._k = 0
        self._t0 = 0.0

    def open(self) -> None:
        self._t0 = time.monotonic()

    def describe(self) -> SourceInfo:
        return standard_source(DTYPE)

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        pass

    def start_after(self, tag: int) -> None:
        self._tag = tag + 2

    def read(self, *, timeout: float) -> ShotBlock | None:
        due = self._t0 + (self._k + 3) / self.rate  # three shots a block: a SACLA-like 0.1 s
        now = time.monotonic()
        if due - now > timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(0.0, due - now))
        now = time.monotonic()
        self.late.append((now, now - due))
        template = self.templates[self._k // BLOCK % len(self.templates)]
        start = self._k % BLOCK
        block = template.slice(start, start + 3)
        tags = self._tag + 2 * np.arange(len(block), dtype=np.int64)
        self._tag, self._k = int(tags[-1]) + 2, self._k + len(block)
        return block.with_(tags=tags, time=np.full(len(block), time.time()))

    def status(self) -> SourceStatus:
        return SourceStatus()

    def notices(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


class States(NullListener):
    def __init__(self) -> None:
        self.got: list[tuple[float, StateMsg]] = []

    def on_state(self, msg: StateMsg) -> None:
        self.got.append((time.monotonic(), msg))


def reduce_alone(path: Path) -> float:
    """``reduce --json`` of the whole recording, in process (what the command spends reducing)."""
    t0 = time.perf_counter()
    reader, _, analysis = open_analysis(str(path), None)
    summarize(reader, analysis)
    return time.perf_counter() - t0


def reduce_split(path: Path, mid: int) -> tuple[float, float]:
    """(one ``reduce`` command, two concurrent ``reduce --tags`` commands over the halves), wall s."""
    cmd = [sys.executable, "-m", "shotwatch", "reduce", str(path), "--json"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*cmd, "--tags", tags], stdout=subprocess.DEVNULL) for tags in (f":{mid}", f"{mid}:")]
    assert all(p.wait() == 0 for p in procs)
    return one, time.perf_counter() - t0


class Timed:
    """Every commit of the recorder's writer, as (start, seconds)."""

    def __init__(self) -> None:
        self.commits: list[tuple[float, float]] = []
        real = RecordingWriter._commit

        def commit(writer: RecordingWriter, *, sync: bool) -> None:
            t0 = time.monotonic()
            real(writer, sync=sync)
            self.commits.append((t0, time.monotonic() - t0))

        RecordingWriter._commit = commit  # type: ignore[method-assign]


def _within(samples: list[tuple[float, float]], a: float, b: float) -> list[float]:
    return [v for t, v in samples if a <= t <= b]


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else float("nan")


def change(recorder: Recorder, heard: States, sections: dict[str, Any]) -> tuple[float, float, StateMsg]:
    """(request time, wall seconds to the recomputed state, the state) of one change."""
    before = len(heard.got)
    t0 = time.monotonic()
    reply = recorder.set_analysis(sections, by="bench@localhost").result(timeout=30)
    assert reply.ok, reply.error
    while len(heard.got) == before and time.monotonic() - t0 < 120:
        time.sleep(0.01)
    t, msg = heard.got[-1]
    return t0, t - t0, msg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=int, default=108_000)
    ap.add_argument("--steady", type=float, default=10.0)
    args = ap.parse_args()
    config = bench_config()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hour.zarr"
        make_hour(path, args.shots, config)
        reduce_alone(path)  # the page cache warm, as for the recorder (it just wrote them)
        alone = statistics.median(reduce_alone(path) for _ in range(2))
        timed, heard, source = Timed(), States(), Paced(config, RATE)
        recorder = Recorder(config, out=str(path), append=True, source=source)
        recorder.add_listener(heard)
        thread = threading.Thread(target=recorder.run, daemon=True)
        t_start = time.monotonic()
        thread.start()
        while recorder.recomputer.values_known < args.shots and time.monotonic() - t_start < 300:
            time.sleep(0.05)
        followed = time.monotonic() - t_start
        t_steady = time.monotonic()
        time.sleep(args.steady)
        steady_end = time.monotonic()
        sections = {k: v for k, v in config.model_dump(mode="json").items() if k in ANALYSIS_SECTIONS}
        assert config.i0 is not None
        i0_change = {**sections, "i0": {**sections["i0"], "min": config.i0.min * 1.5}}
        t_warm, warm, warm_state = change(recorder, heard, i0_change)
        time.sleep(2.0)
        calib = {**i0_change, "calibration": {**sections["calibration"], "threshold_ev": 1500.0}}
        t_cold, cold, cold_state = change(recorder, heard, calib)
        recorder.stop()
        thread.join(30)
        reduce_one, reduce_two = reduce_split(path, FIRST_TAG + args.shots)  # shots before it: half the hour
    commits = {"steady": _within(timed.commits, t_steady, steady_end),
               "during": _within(timed.commits, t_warm, t_warm + warm) + _within(timed.commits, t_cold, t_cold + cold)}
    late = {"steady": _within(source.late, t_steady, steady_end),
            "during": _within(source.late, t_warm, t_warm + warm) + _within(source.late, t_cold, t_cold + cold)}
    shots = warm_state.shots
    emit("recompute_108k", "seconds", warm, f"s from the request to the recomputed state of {shots} shots "
         "(an I0-window change, recorder at 30 Hz)", baseline="reduce of the same recording alone (in process)",
         baseline_value=alone, gate="<= 5 s", ok=warm <= 5.0, worker_s=warm_state.seconds, shots=shots)
    emit("recompute_108k_pixels", "seconds", cold, f"s for {cold_state.shots} shots after a threshold change (every "
         "pixel read again; recorder at 30 Hz)", baseline="reduce of the same recording alone (in process)",
         baseline_value=alone, gate="report only", worker_s=cold_state.seconds)
    catch_up = (t_start, t_start + followed)
    emit("recompute_follow_108k", "seconds", followed, "s for the worker to read the hour's pixels once, in the "
         "background, while the recorder records at 30 Hz", baseline="reduce of the same recording alone",
         baseline_value=alone, gate="report only",
         commit_p95_ms=round(1000 * _p95(_within(timed.commits, *catch_up)), 1),
         read_late_p95_ms=round(1000 * _p95(_within(source.late, *catch_up)), 1))
    emit("recompute_commit_ms", "p95_ms", 1000 * _p95(commits["during"]), "ms, p95 of the recorder's commits during "
         "the two recomputations", baseline=f"p95 of its commits in {args.steady:g} s of steady recording (ms)",
         baseline_value=1000 * _p95(commits["steady"]), gate="report only",
         max_ms=round(1000 * max(commits["during"], default=float("nan")), 1), commits=len(commits["during"]))
    emit("recompute_read_late_ms", "p95_ms", 1000 * _p95(late["during"]), "ms, p95 of how late the recorder read "
         "its 30 Hz source during the recomputations", baseline="the same in steady recording (ms)",
         baseline_value=1000 * _p95(late["steady"]), gate="report only",
         max_ms=round(1000 * max(late["during"], default=float("nan")), 1))
    emit("recompute_split_2proc", "seconds", reduce_two, "s for two concurrent `reduce --tags` processes over the "
         "halves", baseline="one `reduce` process (the whole command)", baseline_value=reduce_one, gate="report only")


if __name__ == "__main__":
    main()
