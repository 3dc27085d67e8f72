"""RecordingWriter throughput on the standard stream, against raw ``tofile`` and h5py appends.

The standard stream: 4 ROIs of 64x64 uint16 (photon-counting-like Poisson pixels), 16 float64
point detectors (the demo's I0, beam status and delay stage among them), blocks of 1,200
shots, >= 24,000 shots. Each result is one JSON line (benchmarks/_common.py layout), the
median of >= 3 repeats, with its ratio to the baseline measured in the same run.

Gate: RecordingWriter >= 10,000 shots/s on the 2-core CI machines.

``make_recording(path)`` writes that stream as a closed recording (with the demo
configuration at 4 ROIs), for benchmarks that read recordings (reduce, replay).

    .venv/bin/python benchmarks/bench_writer.py [--shots 24000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from _common import config_text, emit, median_of
from shotwatch.recording import RecordingWriter
from shotwatch.schemas import Config, Cutout, DetectorInfo, RoiTable, ShotBlock, SourceInfo, parse_config

DET = "MPCCD-1N0-M06-004"
BLOCK = 1_200
FIRST_TAG = 1_000_000
NAMED = ["xfel_bl_3_st_5_pd_user_5_fitting_peak/voltage", "xfel_mon_bpm_bl3_0_3_beamstatus/summary",
         "xfel_bl_3_st_5_motor_user_1/position"]
POINTS = NAMED + [f"xfel_bl_3_st_5_bench_{k}/value" for k in range(16 - len(NAMED))]
_TEMPLATES = 4  # distinct blocks generated once and cycled (24,000 shots would need 0.8 GB)


def standard_config() -> Config:
    """The demo configuration with 4 ROIs of 64x64 (r0..r3), simulator at rate 0, no frames."""
    return parse_config(tomllib.loads(config_text(rate=0, frames_every=0, four_rois=True)), origin="bench")


def standard_source() -> SourceInfo:
    return SourceInfo(kind="sim", run=1, hightag=201902, points=POINTS,
                      detectors={DET: DetectorInfo(shape=(1024, 512), dtype="uint16", ev_per_adu=10.95)})


def standard_rois(config: Config) -> RoiTable:
    table = RoiTable()
    table.apply({r.name: r for r in config.roi}, shot=0, tag=FIRST_TAG)
    return table


def _template(rng: np.random.Generator, config: Config) -> ShotBlock:
    n = BLOCK
    points = {NAMED[0]: rng.gamma(4.0, 0.05, n), NAMED[1]: (rng.random(n) > 0.03).astype(np.float64),
              NAMED[2]: np.round(rng.uniform(-1000, 3000, n), -1)}
    points.update({name: rng.normal(0.0, 1.0, n) for name in POINTS[len(NAMED):]})
    cutouts = {}
    for roi in config.roi:
        pix = rng.poisson(30.0, (n, 64, 64)).astype(np.uint16)
        cutouts[f"{roi.name}/v1"] = Cutout(pix, np.ones(n, bool), DET)
    return ShotBlock(np.zeros(n, np.int64), np.zeros(n), points, cutouts, run=1, hightag=201902)


def standard_stream(shots: int, *, seed: int = 2019, config: Config | None = None) -> Iterator[ShotBlock]:
    """``shots`` shots in blocks of 1,200; tags step by 2 from 1,000,000 at 60 Hz."""
    config = config or standard_config()
    rng = np.random.default_rng(seed)
    templates = [_template(rng, config) for _ in range(_TEMPLATES)]
    for i, start in enumerate(range(0, shots, BLOCK)):
        n = min(BLOCK, shots - start)
        tags = FIRST_TAG + 2 * np.arange(start, start + n, dtype=np.int64)
        block = templates[i % _TEMPLATES].slice(0, n)
        yield block.with_(tags=tags, time=1.7e9 + tags / 120.0)


def make_recording(path: str | os.PathLike[str], *, shots: int = 24_000, seed: int = 2019) -> Path:
    """Write the standard stream as a closed recording at ``path`` (which must not exist)."""
    config = standard_config()
    blocks = list(standard_stream(shots, seed=seed, config=config))
    writer = RecordingWriter.create(path, config=config, source=standard_source(), rois=standard_rois(config),
                                    points=POINTS)
    for b in blocks:
        writer.write(b)
    writer.close()
    return Path(path)


# --- the three writers ----------------------------------------------------------------


def _writer_rate(blocks: list[ShotBlock], tmp: Path, config: Config) -> float:
    path = tmp / "bench.zarr"
    t0 = time.perf_counter()
    writer = RecordingWriter.create(path, config=config, source=standard_source(), rois=standard_rois(config),
                                    points=POINTS)
    for b in blocks:
        writer.write(b)
    writer.close()
    dt = time.perf_counter() - t0
    shutil.rmtree(path)
    return sum(len(b) for b in blocks) / dt


def _arrays(block: ShotBlock) -> dict[str, np.ndarray[Any, Any]]:
    out = {"tag": block.tags, "time": block.time, **{f"p{i}": v for i, v in enumerate(block.points.values())}}
    for i, c in enumerate(block.cutouts.values()):
        out[f"c{i}"], out[f"v{i}"] = c.pixels, c.valid
    return out


def _tofile_rate(blocks: list[ShotBlock], tmp: Path) -> float:
    d = tmp / "raw"
    d.mkdir()
    t0 = time.perf_counter()
    files = {k: open(d / k, "wb") for k in _arrays(blocks[0])}
    for b in blocks:
        for k, arr in _arrays(b).items():
            arr.tofile(files[k])
    for f in files.values():
        f.close()
    dt = time.perf_counter() - t0
    shutil.rmtree(d)
    return sum(len(b) for b in blocks) / dt


def _h5py_rate(blocks: list[ShotBlock], tmp: Path) -> float:
    import h5py

    path = tmp / "bench.h5"
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        first = _arrays(blocks[0])
        ds = {k: f.create_dataset(k, shape=(0, *a.shape[1:]), maxshape=(None, *a.shape[1:]), dtype=a.dtype,
                                  chunks=(128 if a.ndim > 1 else 4096, *a.shape[1:])) for k, a in first.items()}
        n = 0
        for b in blocks:
            m = len(b)
            for k, arr in _arrays(b).items():
                ds[k].resize(n + m, axis=0)
                ds[k][n:n + m] = arr
            n += m
    dt = time.perf_counter() - t0
    path.unlink()
    return sum(len(b) for b in blocks) / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shots", type=int, default=24_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    config = standard_config()
    blocks = list(standard_stream(args.shots, config=config))
    mb = sum(sum(a.nbytes for a in _arrays(b).values()) for b in blocks) / 1e6
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        raw, raw_runs = median_of(args.repeats, lambda: _tofile_rate(blocks, tmp))
        h5, h5_runs = median_of(args.repeats, lambda: _h5py_rate(blocks, tmp))
        rate, runs = median_of(args.repeats, lambda: _writer_rate(blocks, tmp, config))
        size = make_recording(tmp / "size.zarr", shots=args.shots)
        disk_mb = sum(p.stat().st_size for p in size.rglob("*") if p.is_file()) / 1e6
    common = {"shots": args.shots, "raw_mb": round(mb, 1)}
    emit("writer_tofile", "shots_per_s", raw, "shots/s", runs=[round(r) for r in raw_runs], **common)
    emit("writer_h5py", "shots_per_s", h5, "shots/s", baseline="numpy tofile", baseline_value=raw,
         runs=[round(r) for r in h5_runs], **common)
    emit("writer_zarr", "shots_per_s", rate, "shots/s", baseline="numpy tofile", baseline_value=raw,
         gate=">= 10000", ok=rate >= 10_000, runs=[round(r) for r in runs], disk_mb=round(disk_mb, 1), **common)
    emit("writer_zarr_vs_h5py", "ratio", rate / h5, "x", baseline="h5py resizable append",
         baseline_value=h5, **common)


if __name__ == "__main__":
    main()
