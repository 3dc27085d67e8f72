"""`shotwatch reduce` of a 24,000-shot recording of the standard stream, warm page cache.

Gates: >= 20,000 shots/s (issue 2: an 8-hour 60 Hz shift in about 90 s), and (issue 8) the
reduction >= 0.8 x a plain zarr read of the same arrays in the same run, in uint16 and in
float32 (the facilities' format). Baseline, same run: reading the same arrays with plain
zarr (the I/O and decompression floor any reduction pays); plain reads and reductions are
interleaved, so load on the machine falls on both alike. Figures per dtype: the reduction
in-process (reader + reducers, what the gates are about) and the whole `shotwatch reduce
--json` command including interpreter start-up.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import zarr

from _common import emit
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
    with warnings.catch_warnings():  # "Object at .lock is not recognized": the writer's lock file
        warnings.simplefilter("ignore")
        return _plain_zarr_rate(path)


def _plain_zarr_rate(path: Path) -> float:
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
    ap.add_argument("--dtype", choices=["uint16", "float32", "both"], default="both")
    args = ap.parse_args()
    for dtype in (["uint16", "float32"] if args.dtype == "both" else [args.dtype]):
        with tempfile.TemporaryDirectory() as tmp:
            path = make_recording(Path(tmp) / "std.zarr", shots=args.shots, dtype=dtype)
            reduce_rate(path)  # warm the page cache
            pairs = [(plain_zarr_rate(path), reduce_rate(path)) for _ in range(args.repeats)]
            base_runs, runs = [p[0] for p in pairs], [p[1] for p in pairs]
            base, rate = statistics.median(base_runs), statistics.median(runs)
            ratio = statistics.median(r / b for b, r in pairs)
            cmd = statistics.median(command_rate(path, args.shots) for _ in range(args.repeats))
        suffix = "" if dtype == "uint16" else f"_{dtype}"
        emit(f"reduce_24k{suffix}", "shots_per_s", rate, f"shots/s ({dtype})", baseline="plain zarr read of the same "
             "arrays", baseline_value=base, gate=">= 20000", ok=rate >= 20_000, runs=[round(r) for r in runs],
             baseline_runs=[round(b) for b in base_runs])
        emit(f"reduce_vs_zarr{suffix}", "ratio", ratio, f"x plain zarr ({dtype}, median of interleaved pairs)",
             gate=">= 0.8", ok=ratio >= 0.8, pairs=[round(r / b, 3) for b, r in pairs])
        emit(f"reduce_24k_command{suffix}", "shots_per_s", cmd, f"shots/s (whole command, start-up included, {dtype})",
             baseline="in-process reduction", baseline_value=rate)


if __name__ == "__main__":
    main()
