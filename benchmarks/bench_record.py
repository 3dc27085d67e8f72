"""`record` from the simulator at rate = 0, end to end, against the simulator alone.

Gate (issue 2): >= 3,000 shots/s with 4 float32 ROIs of 64x64 and frames_every = 0.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tomllib
from pathlib import Path

from _common import config_text, emit, median_of
from bench_sim import sim_rate
from shotwatch.recorder.acquire import Recorder
from shotwatch.schemas import parse_config


def record_rate(shots: int) -> float:
    config = parse_config(tomllib.loads(config_text(rate=0, frames_every=0, four_rois=True)), origin="bench")
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(config, out=str(Path(tmp) / "bench.zarr"))
        t0 = time.perf_counter()
        recorder.run(shots=shots)
        dt = time.perf_counter() - t0
        assert recorder.status().committed == shots
    return shots / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=int, default=24_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    base, _ = median_of(args.repeats, lambda: sim_rate(args.shots))
    rate, runs = median_of(args.repeats, lambda: record_rate(args.shots))
    emit("record_sim_rate0", "shots_per_s", rate, "shots/s", baseline="simulator alone (same shots)",
         baseline_value=base, gate=">= 3000", ok=rate >= 3000, runs=[round(r) for r in runs],
         shots=args.shots)


if __name__ == "__main__":
    main()
