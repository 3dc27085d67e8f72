"""Real-data analysis in `reduce`: a dark, a mask and channels against without, and the reducers'
share of `reduce` against a plain zarr read. Standard stream (4 ROIs of 64x64, 16 points),
uint16 and float32, warm page cache; medians of --repeats; every ratio against a baseline
measured in the same run (benchmarks/_common.py JSON lines).

Figures, per dtype:
- ``analysis_extras_<dtype>``: reader + reducers with a dark (every pixel), a [[mask]]
  rectangle, ``dark_noise_max_adu`` and three channels (one through an alias); baseline: the
  same recording reduced without them. Gate (issue 9): >= 0.7.
- ``reduce_vs_zarr_<dtype>``: reader + reducers (what ``reduce --json`` does after start-up);
  baseline: reading the same arrays with plain zarr. Gate (issue 8): >= 0.8, shared with the
  reader (the recording helper's part).
- ``reducers_<dtype>`` and ``reducers_extras_<dtype>``: the reducers alone on blocks already in
  memory (the analysis helper's part), with and without the extras; baseline: the reader alone.

    .venv/bin/python benchmarks/bench_analysis.py [--shots 24000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from _common import emit
from bench_reduce import plain_zarr_rate
from bench_writer import DET, NAMED, POINTS, standard_config, standard_rois, standard_stream
from shotwatch.recording import RecordingReader, RecordingWriter
from shotwatch.reducers import Analysis, SummaryReducer, roi_versions
from shotwatch.schemas import Config, Cutout, DarkFrame, DetectorInfo, ShotBlock, SourceInfo

SHAPE = (1024, 512)
EXTRAS = {
    "mask": [{"detector": DET, "x": [160, 200], "y": [260, 300]}],
    "alias": {"i0a": NAMED[0]},
    "channel": [{"name": "net", "expr": "r0 - pixels(r0) / pixels(r1) * r1"},
                {"name": "i0x", "expr": "i0a * 2"},
                {"name": "ratio", "expr": "log(abs(r2) + 1) / (r3 + 1)"}],
}


def make(path: Path, shots: int, dtype: str) -> Path:
    """The standard stream at ``dtype`` as a closed recording."""
    config = standard_config()
    source = SourceInfo(kind="sim", run=1, hightag=201902, points=POINTS,
                        detectors={DET: DetectorInfo(shape=SHAPE, dtype=dtype, ev_per_adu=10.95)})
    writer = RecordingWriter.create(path, config=config, source=source, rois=standard_rois(config), points=POINTS)
    for block in standard_stream(shots, config=config):
        writer.write(block.with_(cutouts={k: Cutout(c.pixels.astype(dtype), c.valid, c.detector)
                                          for k, c in block.cutouts.items()}))
    writer.close()
    return path


def analyses(reader: RecordingReader) -> tuple[Analysis, Analysis]:
    """(plain, with extras) for the recording's configuration."""
    rng = np.random.default_rng(7)
    dark = DarkFrame(rng.normal(25.0, 2.0, SHAPE).astype(np.float32), rng.gamma(4.0, 0.5, SHAPE).astype(np.float32),
                     600, 0, 1199)
    plain = Analysis.from_config(reader.config, detectors=reader.detectors)
    cfg = reader.config.model_dump(mode="json")
    cfg["calibration"]["dark_noise_max_adu"] = 4.0  # ~1 % of pixels: noisy, masked
    extras = Analysis.from_config(Config.model_validate({**cfg, **EXTRAS}), detectors=reader.detectors,
                                  darks={DET: dark}, roi_names=reader.rois.versions)
    return plain, extras


def reduce_rate(path: Path, analysis: Analysis) -> float:
    """Reader + reducers, as ``reduce --json`` does after start-up."""
    t0 = time.perf_counter()
    reader = RecordingReader(path)
    reducer = SummaryReducer(analysis)
    versions = roi_versions(reader.rois.all())
    state = reducer.init()
    for block in reader.blocks():
        state = reducer.update(state, block, versions=versions)
    reducer.result(state)
    return len(reader) / (time.perf_counter() - t0)


def reducers_rate(blocks: Iterable[ShotBlock], analysis: Analysis, versions: dict[str, object]) -> float:
    blocks = list(blocks)
    t0 = time.perf_counter()
    reducer = SummaryReducer(analysis)
    state = reducer.init()
    for block in blocks:
        state = reducer.update(state, block, versions=versions)  # type: ignore[arg-type]
    reducer.result(state)
    return sum(len(b) for b in blocks) / (time.perf_counter() - t0)


def reader_rate(path: Path) -> float:
    t0 = time.perf_counter()
    reader = RecordingReader(path)
    n = sum(len(b) for b in reader.blocks())
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=int, default=24_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", action="append", choices=["uint16", "float32"])
    args = ap.parse_args()
    for dtype in args.dtype or ["uint16", "float32"]:
        with tempfile.TemporaryDirectory() as tmp:
            path = make(Path(tmp) / f"std-{dtype}.zarr", args.shots, dtype)
            reader = RecordingReader(path)
            plain, extras = analyses(reader)
            versions = roi_versions(reader.rois.all())
            blocks = list(reader.blocks())
            reduce_rate(path, plain)  # warm the page cache
            # interleaved, so that a load change on these shared machines hits both sides alike
            runs = [(plain_zarr_rate(path), reader_rate(path), reduce_rate(path, plain), reduce_rate(path, extras),
                     reducers_rate(blocks, plain, versions), reducers_rate(blocks, extras, versions))
                    for _ in range(args.repeats)]
            zarr_base, read, base, rich, alone, alone_x = (statistics.median(r[i] for r in runs) for i in range(6))
            base_runs, rich_runs = [r[2] for r in runs], [r[3] for r in runs]
        emit(f"analysis_extras_{dtype}", "shots_per_s", rich, "shots/s",
             baseline="same recording reduced without dark, mask and channels", baseline_value=base,
             gate=">= 0.7 x baseline", ok=rich >= 0.7 * base, runs=[round(r) for r in rich_runs])
        emit(f"reduce_vs_zarr_{dtype}", "shots_per_s", base, "shots/s",
             baseline="plain zarr read of the same arrays", baseline_value=zarr_base,
             gate=">= 0.8 x baseline", ok=base >= 0.8 * zarr_base, runs=[round(r) for r in base_runs])
        emit(f"reducers_{dtype}", "shots_per_s", alone, "shots/s (reducers alone, blocks in memory)",
             baseline="RecordingReader.blocks() alone", baseline_value=read)
        emit(f"reducers_extras_{dtype}", "shots_per_s", alone_x, "shots/s (reducers alone, with the extras)",
             baseline="reducers alone without the extras", baseline_value=alone)


if __name__ == "__main__":
    main()
