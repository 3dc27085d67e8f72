"""The SACLA source's CPU per poll at 30 Hz, at the start of a run and an hour into it.

The dbpy/olpy emulator (tests/emulators/sacla) runs at real speed (30 shots/s, tags stepping
by 2) with a run that began ``history`` seconds ago: 0 s, then every 10 minutes up to an hour,
when ``read_taglist_byrun`` would return 108,000 tags. The source follows the newest tag and
reads only new tags, so its poller thread's CPU per poll (``time.thread_time`` around each
poll, that thread only; the median over the polls, as other agents share these cores) must not
grow with the run. Baseline: the same measurement at the start of the run, in the same process;
gate: an hour in <= 1.5x the start. For contrast, one row measures what one
``read_taglist_byrun`` of the hour-long run costs (the call the source no longer makes per poll).

    python benchmarks/bench_sacla.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import emit

ROOT = Path(__file__).resolve().parent.parent
EMU = ROOT / "tests" / "emulators" / "sacla"
sys.path.insert(0, str(EMU))

import _sacla_emu as E  # noqa: E402
import dbpy  # noqa: E402

from shotwatch.schemas import Config  # noqa: E402
from shotwatch.sources.sacla import make  # noqa: E402

BENCH = "sacla"


def config() -> Config:
    return Config.model_validate({
        "source": {"kind": "sacla", "api_path": str(EMU), "points": [E.SHUTTER, E.DELAY]},
        "i0": {"name": E.I0, "min": 0.05}, "veto": [{"name": E.BEAM, "min": 0.5}],
        "roi": [{"name": "bragg", "detector": E.SINGLE, "x": [8, 24], "y": [8, 24]}]})


def measure(history: float, seconds: float) -> tuple[list[float], int]:
    """(CPU seconds of each poll of the poller thread, shots) over ``seconds`` of a run ``history`` s old."""
    dbpy._emu.reset(history=history, frame_shape=(64, 32))
    src = make(config())
    polls: list[float] = []
    counting = threading.Event()
    poll = src._poll

    def timed_poll() -> Any:
        t0 = time.thread_time()
        try:
            return poll()
        finally:
            if counting.is_set():
                polls.append(time.thread_time() - t0)

    src._poll = timed_poll  # type: ignore[method-assign]
    src.open()
    stop = threading.Event()
    shots = [0]

    def drain() -> None:
        while not stop.is_set():
            block = src.read(timeout=0.1)
            if block is not None and counting.is_set():
                shots[0] += len(block)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        time.sleep(2.0)  # past the first blocks (probing detectors, the latency hold)
        counting.set()
        time.sleep(seconds)
        counting.clear()
        return list(polls), shots[0]
    finally:
        stop.set()
        reader.join()
        src.close()


def taglist_cost(history: float) -> float:
    """Seconds of CPU one read_taglist_byrun of a run ``history`` s old takes (no sleeps)."""
    dbpy._emu.reset(history=history, call_cost=0.0, item_cost=0.0)
    t0 = time.process_time()
    n = len(dbpy.read_taglist_byrun(3, dbpy.read_runnumber_newest(3)))
    cost = time.process_time() - t0
    emit(BENCH, "taglist_call_cpu_ms", cost * 1e3, "ms", tags=n, history_s=history)
    return cost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run age")
    args = ap.parse_args()
    start = None
    for history in (0.0, 600.0, 1200.0, 1800.0, 2400.0, 3000.0, 3600.0):
        polls, shots = measure(history, args.seconds)
        per_poll = statistics.median(polls) * 1e3
        if start is None:
            start = per_poll
        last = history == 3600.0
        emit(BENCH, "poller_cpu_ms_per_poll", per_poll, "ms", baseline="start of run (history 0 s)",
             baseline_value=start, history_s=history, polls=len(polls), shots_per_s=round(shots / args.seconds, 2),
             cpu_s_per_minute=round(sum(polls) / args.seconds * 60.0, 3),
             gate="<= 1.5x the start of the run" if last else None, ok=(per_poll <= 1.5 * start) if last else None)
    taglist_cost(3600.0)
    dbpy._emu.reset()


if __name__ == "__main__":
    main()
