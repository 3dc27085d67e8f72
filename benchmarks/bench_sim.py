"""The simulator alone, through ``shotwatch.sources.open_source``: how fast, and how cheap at 60 Hz.

Rows:

- ``sim_rate0``: shots/s at ``rate = 0`` with 4 float32 ROIs of 64x64 and ``frames_every = 0``
  (cutouts only), median of 3. Baseline, same run: numpy's generator filling the same number of
  float32 pixels with uniform randoms (the least any per-pixel noise can cost). Gate >= 6,000
  shots/s: twice the ``record`` gate (3,000), so that at the record gate the simulator takes at
  most half the time and is never what limits ``record``.
- ``sim_cpu_60hz``: CPU fraction of one core at 60 Hz with a full 1024x512 float32 frame per shot
  (the paced mode every live session runs), over 10 s. Baseline, same run: numpy copying the same
  bytes (60 frames a second) — the cost of merely touching that much memory. Gate <= 0.10: half
  of the recorder's 20 % budget (bench_recorder_cpu.py), which includes the simulator.
"""

from __future__ import annotations

import argparse
import os
import time
import tomllib

import numpy as np

from _common import config_text, emit, median_of
from shotwatch.schemas import parse_config
from shotwatch.sources import open_source

ROI_SHAPE = (64, 64)
N_ROIS = 4


def sim_rate(shots: int) -> float:
    """Shots per second of the simulator at rate 0, 4 ROIs of 64x64, no frames."""
    config = parse_config(tomllib.loads(config_text(rate=0, frames_every=0, four_rois=True)), origin="bench")
    source = open_source(config, frames_every=0)
    source.open()
    t0 = time.perf_counter()
    n = 0
    while n < shots:
        block = source.read(timeout=1.0)
        n += len(block) if block is not None else 0
    dt = time.perf_counter() - t0
    source.close()
    return n / dt


def numpy_pixels_rate(shots: int, block: int = 1200) -> float:
    """Shots per second at which numpy fills N_ROIS float32 cutouts with uniform randoms."""
    rng = np.random.default_rng(0)
    out = np.empty((block, N_ROIS, *ROI_SHAPE), np.float32)
    t0 = time.perf_counter()
    for _ in range(max(1, shots // block)):
        rng.random(out=out, dtype=np.float32)
    return max(1, shots // block) * block / (time.perf_counter() - t0)


def sim_cpu(seconds: float) -> tuple[float, int]:
    """CPU seconds per wall second of reading the paced simulator at 60 Hz (full frames)."""
    config = parse_config(tomllib.loads(config_text(rate=60.0)), origin="bench")
    source = open_source(config)
    source.open()
    source.read(timeout=1.0)  # first block: start-up (allocation, seeding) is not the steady state
    shots = 0
    c0, w0 = time.process_time(), time.monotonic()
    while time.monotonic() - w0 < seconds:
        block = source.read(timeout=0.2)
        shots += len(block) if block is not None else 0
    c1, w1 = time.process_time(), time.monotonic()
    source.close()
    return (c1 - c0) / (w1 - w0), shots


def copy_cpu(seconds: float, rate: float = 60.0) -> float:
    """CPU fraction numpy spends copying ``rate`` full frames a second (measured on 2 s worth)."""
    src = np.random.default_rng(0).random((1024, 512), dtype=np.float32)
    dst = np.empty_like(src)
    n = int(rate * min(seconds, 2.0))
    c0 = time.process_time()
    for _ in range(n):
        np.copyto(dst, src)
    return (time.process_time() - c0) / (n / rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=24_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    base, _ = median_of(args.repeats, lambda: numpy_pixels_rate(args.shots))
    rate, runs = median_of(args.repeats, lambda: sim_rate(args.shots))
    emit("sim_rate0", "shots_per_s", rate, "shots/s", baseline="numpy rng filling the same float32 pixels",
         baseline_value=base, gate=">= 6000", ok=rate >= 6000, runs=[round(r) for r in runs], shots=args.shots)
    cpu, shots = sim_cpu(args.seconds)
    copy = copy_cpu(args.seconds)
    emit("sim_cpu_60hz", "cpu_fraction_of_one_core", cpu, "core", baseline="numpy copying 60 full frames a second",
         baseline_value=copy, gate="<= 0.10", ok=cpu <= 0.10, shots=shots, seconds=args.seconds,
         cores=os.cpu_count())


if __name__ == "__main__":
    main()
