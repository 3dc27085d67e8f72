"""`shotwatch reduce` of a 24,000-shot recording of the standard stream, warm page cache.

Gate (issue 2): >= 20,000 shots/s (an 8-hour 60 Hz shift in about 90 s). Baseline, same run:
reading the same arrays with plain zarr (the I/O and decompression floor any reduction pays).
Two figures: the reduction in-process (reader + reducers, what the gate is about) and the
whole `shotwatch reduce --json` command including interpreter start-up.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zarr

from _common import emit, median_of
from bench_writer import make_recording
from shotwatch.recording import RecordingReader
from shotwatch.reducers import Analysis, SummaryReducer


def reduce_rate(path: Path) -> float:
    t0 = time.perf_counter()
    reader = RecordingReader(path)
    analysis = Analysis.from_config(reader.config, ev_per_adu={d: i.ev_per_adu for d, i in reader.detectors.items()})
    reducer = SummaryReducer(analysis)
    state = reducer.init()
    for block in reader.blocks():
        state = reducer.update(state, block)
    result = reducer.result(state)
    dt = time.perf_counter() - t0
    return result["shots"]["total"] / dt


def plain_zarr_rate(path: Path) -> float:
    t0 = time.perf_counter()
    root = zarr.open_group(path, mode="r")
    n = int(root.attrs["shotwatch"]["committed"])

    def read_all(group: zarr.Group) -> None:
        for _, arr in group.arrays():
            arr[:n] if arr.shape and arr.shape[0] >= n and "shot" in (arr.metadata.dimension_names or ()) else arr[:]
        for _, sub in group.groups():
            read_all(sub)

    read_all(root)
    return n / (time.perf_counter() - t0)


def command_rate(path: Path, shots: int) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shotwatch", "reduce", str(path), "--json"], check=True,
                   stdout=subprocess.DEVNULL)
    return shots / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=int, default=24_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = make_recording(Path(tmp) / "std.zarr", shots=args.shots)
        reduce_rate(path)  # warm the page cache
        base, _ = median_of(args.repeats, lambda: plain_zarr_rate(path))
        rate, runs = median_of(args.repeats, lambda: reduce_rate(path))
        cmd, _ = median_of(args.repeats, lambda: command_rate(path, args.shots))
    emit("reduce_24k", "shots_per_s", rate, "shots/s", baseline="plain zarr read of the same arrays",
         baseline_value=base, gate=">= 20000", ok=rate >= 20_000, runs=[round(r) for r in runs])
    emit("reduce_24k_command", "shots_per_s", cmd, "shots/s (whole command, start-up included)",
         baseline="in-process reduction", baseline_value=rate)


if __name__ == "__main__":
    main()
