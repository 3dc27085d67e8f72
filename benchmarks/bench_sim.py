"""The simulator alone, through ``shotwatch.sources.open_source``: how fast, and how cheap at 30 Hz.

Rows:

- ``sim_rate0``: shots/s at ``rate = 0`` with 4 float32 ROIs of 64x64 and ``frames_every = 0``
  (cutouts only: pedestal, noise, photons, hot pixels, NaN patch), median of 3. Baseline, same
  run: numpy's generator filling the same number of float32 pixels with uniform randoms (the
  least any per-pixel noise can cost). Gate >= 6,000 shots/s: twice the ``record`` gate
  (3,000), so that at the record gate the simulator takes at most half the time and is never
  what limits ``record``.
- ``sim_cpu_30hz``: CPU fraction of one core at SACLA BL3's 30 Hz with a full 1024x512 float32
  frame per shot (the paced mode every live session runs), over 10 s. Baseline, same run: numpy
  copying the same bytes (30 frames a second) — the cost of merely touching that much memory.
  Gate <= 0.10: half of the recorder's 20 % budget (bench_recorder_cpu.py), which includes the
  simulator.
- ``sim_full_frames_rate0``: shots/s at ``rate = 0`` with ``source.full_frames = true`` (a full
  raw frame for every shot: the CPU-heavy workload of issue 12, before the recorder cuts and
  corrects anything), median of 3. Baseline, same run: numpy adding a 1024x512 float32 pedestal
  to a frame-sized copy (the least a raw frame can cost). No gate: it says how much of a core
  frame generation alone takes.
"""

from __future__ import annotations

import argparse
import os
import time
import tomllib

import numpy as np

from _common import config_text, emit, median_of
from shotwatch.schemas import parse_config
from shotwatch.sources import Source, open_source

ROI_SHAPE = (64, 64)
N_ROIS = 4
FRAME = (1024, 512)


def _source(text: str, frames_every: int | None = None, **source_keys: object) -> Source:
    raw = tomllib.loads(text)
    raw["source"].update(source_keys)
    source = open_source(parse_config(raw, origin="bench"), frames_every=frames_every)
    source.open()
    return source


def _shots_per_s(source: Source, shots: int) -> float:
    t0 = time.perf_counter()
    n = 0
    while n < shots:
        block = source.read(timeout=1.0)
        n += len(block) if block is not None else 0
    dt = time.perf_counter() - t0
    source.close()
    return n / dt


def sim_rate(shots: int) -> float:
    """Shots per second of the simulator at rate 0, 4 ROIs of 64x64, no frames."""
    return _shots_per_s(_source(config_text(rate=0, frames_every=0, four_rois=True), frames_every=0), shots)


def full_frames_rate(shots: int) -> float:
    """Shots per second of the simulator at rate 0 delivering a full frame for every shot."""
    source = _source(config_text(rate=0, frames_every=0), frames_every=0, full_frames=True)
    source.read(timeout=1.0)  # the first block builds the sensor's tables: not the steady state
    return _shots_per_s(source, shots)


def numpy_pixels_rate(shots: int, block: int = 1200) -> float:
    """Shots per second at which numpy fills N_ROIS float32 cutouts with uniform randoms."""
    rng = np.random.default_rng(0)
    out = np.empty((block, N_ROIS, *ROI_SHAPE), np.float32)
    t0 = time.perf_counter()
    for _ in range(max(1, shots // block)):
        rng.random(out=out, dtype=np.float32)
    return max(1, shots // block) * block / (time.perf_counter() - t0)


def numpy_frames_rate(shots: int) -> float:
    """Frames per second at which numpy writes pedestal + a copied frame into a new array."""
    rng = np.random.default_rng(0)
    src, ped = rng.random(FRAME, dtype=np.float32), rng.random(FRAME, dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(shots):
        np.add(src, ped, out=np.empty(FRAME, np.float32))
    return shots / (time.perf_counter() - t0)


def sim_cpu(seconds: float, rate: float = 30.0) -> tuple[float, int]:
    """CPU seconds per wall second of reading the paced simulator (full frames)."""
    source = _source(config_text(rate=rate))
    source.read(timeout=1.0)  # first block: start-up (allocation, seeding) is not the steady state
    shots = 0
    c0, w0 = time.process_time(), time.monotonic()
    while time.monotonic() - w0 < seconds:
        block = source.read(timeout=0.2)
        shots += len(block) if block is not None else 0
    c1, w1 = time.process_time(), time.monotonic()
    source.close()
    return (c1 - c0) / (w1 - w0), shots


def copy_cpu(seconds: float, rate: float = 30.0) -> float:
    """CPU fraction numpy spends copying ``rate`` full frames a second (measured on 2 s worth)."""
    src = np.random.default_rng(0).random(FRAME, dtype=np.float32)
    dst = np.empty_like(src)
    n = int(rate * min(seconds, 2.0))
    c0 = time.process_time()
    for _ in range(n):
        np.copyto(dst, src)
    return (time.process_time() - c0) / (n / rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=24_000)
    ap.add_argument("--frames", type=int, default=600, help="shots of the full-frame row")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    base, _ = median_of(args.repeats, lambda: numpy_pixels_rate(args.shots))
    rate, runs = median_of(args.repeats, lambda: sim_rate(args.shots))
    emit("sim_rate0", "shots_per_s", rate, "shots/s", baseline="numpy rng filling the same float32 pixels",
         baseline_value=base, gate=">= 6000", ok=rate >= 6000, runs=[round(r) for r in runs], shots=args.shots)
    cpu, shots = sim_cpu(args.seconds)
    copy = copy_cpu(args.seconds)
    emit("sim_cpu_30hz", "cpu_fraction_of_one_core", cpu, "core", baseline="numpy copying 30 full frames a second",
         baseline_value=copy, gate="<= 0.10", ok=cpu <= 0.10, shots=shots, seconds=args.seconds,
         cores=os.cpu_count())
    base, _ = median_of(args.repeats, lambda: numpy_frames_rate(args.frames))
    rate, runs = median_of(args.repeats, lambda: full_frames_rate(args.frames))
    emit("sim_full_frames_rate0", "shots_per_s", rate, "shots/s",
         baseline="numpy writing a copied 1024x512 float32 frame plus a pedestal", baseline_value=base,
         runs=[round(r) for r in runs], shots=args.frames)


if __name__ == "__main__":
    main()
