"""RecordingWriter throughput on the standard stream, against raw ``tofile`` and h5py appends.

The standard stream: 4 ROIs of 64x64 uint16 (photon-counting-like Poisson pixels), 16 float64
point detectors (the demo's I0, beam status and delay stage among them), blocks of 1,200
shots, >= 24,000 shots; and the same in float32 (the facilities' format: noisy exponential
pixels, which barely compress). Each result is one JSON line (benchmarks/_common.py layout),
the median of >= 3 repeats, with its ratio to the baseline measured in the same run.

Gate: RecordingWriter >= 10,000 shots/s on the 2-core CI machines, from create to the last
commit; the clean close, which always fsyncs (FORMAT.md), is timed on its own (``writer_close``).

``record.fsync`` (FORMAT.md): the same writer with every commit fsynced (``writer_zarr_fsync``,
against ``writer_zarr`` of the same run), and the time one commit of 120 shots takes (2 s of
60 Hz beam, what the recorder commits) with and without fsync (``writer_commit_120``).

``make_recording(path)`` writes that stream as a closed recording (with the demo
configuration at 4 ROIs), for benchmarks that read recordings (reduce, replay).

    .venv/bin/python benchmarks/bench_writer.py [--shots 24000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
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
         "xfel_bl_3_st_5_motor_user_1/position", "xfel_bl_3_shutter_1_open_valid/status"]  # the demo's I0, vetoes, scan
POINTS = NAMED + [f"xfel_bl_3_st_5_bench_{k}/value" for k in range(16 - len(NAMED))]
_TEMPLATES = 4  # distinct blocks generated once and cycled (24,000 shots would need 0.8 GB)


def standard_config() -> Config:
    """The demo configuration with 4 ROIs of 64x64 (r0..r3), simulator at rate 0, no frames."""
    return parse_config(tomllib.loads(config_text(rate=0, frames_every=0, four_rois=True)), origin="bench")


def standard_source(dtype: str = "uint16") -> SourceInfo:
    return SourceInfo(kind="sim", run=1, hightag=201902, points=POINTS,
                      detectors={DET: DetectorInfo(shape=(1024, 512), dtype=dtype, ev_per_adu=10.95)})


def with_fsync(config: Config) -> Config:
    """``config`` with ``record.fsync = true``."""
    return config.model_copy(update={"record": config.record.model_copy(update={"fsync": True})})


def standard_rois(config: Config) -> RoiTable:
    table = RoiTable()
    table.apply({r.name: r for r in config.roi}, shot=0, tag=FIRST_TAG)
    return table


def _template(rng: np.random.Generator, config: Config, dtype: str) -> ShotBlock:
    n = BLOCK
    points = {NAMED[0]: rng.gamma(4.0, 0.05, n), NAMED[1]: (rng.random(n) > 0.03).astype(np.float64),
              NAMED[2]: np.round(rng.uniform(-1000, 3000, n), -1), NAMED[3]: (rng.random(n) > 0.02).astype(np.float64)}
    points.update({name: rng.normal(0.0, 1.0, n) for name in POINTS[len(NAMED):]})
    cutouts = {}
    for roi in config.roi:
        if dtype == "float32":
            pix = rng.exponential(30.0, (n, 64, 64)).astype(np.float32)
        else:
            pix = rng.poisson(30.0, (n, 64, 64)).astype(np.uint16)
        cutouts[f"{roi.name}/v1"] = Cutout(pix, np.ones(n, bool), DET)
    return ShotBlock(np.zeros(n, np.int64), np.zeros(n), points, cutouts, run=1, hightag=201902)


def standard_stream(shots: int, *, seed: int = 2019, config: Config | None = None,
                    dtype: str = "uint16") -> Iterator[ShotBlock]:
    """``shots`` shots in blocks of 1,200; tags step by 2 from 1,000,000 at 60 Hz."""
    config = config or standard_config()
    rng = np.random.default_rng(seed)
    templates = [_template(rng, config, dtype) for _ in range(_TEMPLATES)]
    for i, start in enumerate(range(0, shots, BLOCK)):
        n = min(BLOCK, shots - start)
        tags = FIRST_TAG + 2 * np.arange(start, start + n, dtype=np.int64)
        block = templates[i % _TEMPLATES].slice(0, n)
        yield block.with_(tags=tags, time=1.7e9 + tags / 120.0)


def make_recording(path: str | os.PathLike[str], *, shots: int = 24_000, seed: int = 2019,
                   dtype: str = "uint16") -> Path:
    """Write the standard stream (pixels of ``dtype``) as a closed recording at ``path`` (which must not exist)."""
    config = standard_config()
    blocks = list(standard_stream(shots, seed=seed, config=config, dtype=dtype))
    writer = RecordingWriter.create(path, config=config, source=standard_source(dtype), rois=standard_rois(config),
                                    points=POINTS)
    for b in blocks:
        writer.write(b)
    writer.close()
    return Path(path)


# --- the three writers ----------------------------------------------------------------


def _writer_rate(blocks: list[ShotBlock], tmp: Path, config: Config, closes: list[float] | None = None) -> float:
    """Shots/s from create to the last commit; the clean close (which always fsyncs) is timed apart.

    The close's fsync waits for whatever the page cache still holds: here the whole run (a
    second of writing), in a real recording the last ~30 s (the kernel writes back the rest
    as it goes). It is a cost per recording, not per shot, so it is reported on its own.
    """
    path = tmp / "bench.zarr"
    dtype = str(next(iter(blocks[0].cutouts.values())).pixels.dtype)
    t0 = time.perf_counter()
    writer = RecordingWriter.create(path, config=config, source=standard_source(dtype), rois=standard_rois(config),
                                    points=POINTS)
    for b in blocks:
        writer.write(b)
    writer.commit()
    dt = time.perf_counter() - t0
    writer.close()
    if closes is not None:
        closes.append(time.perf_counter() - t0 - dt)
    shutil.rmtree(path)
    return sum(len(b) for b in blocks) / dt


def _commit_ms(blocks: list[ShotBlock], tmp: Path, config: Config, *, commits: int = 40) -> float:
    """Median milliseconds of one commit of 120 shots (what the recorder commits every 2 s at 60 Hz)."""
    path = tmp / "commit.zarr"
    writer = RecordingWriter.create(path, config=config, source=standard_source(), rois=standard_rois(config),
                                    points=POINTS, commit_seconds=3600.0)
    times = []
    shot = 0
    for i in range(commits):
        block = blocks[i % len(blocks)].slice(0, 120)
        tags = FIRST_TAG + 2 * np.arange(shot, shot + 120, dtype=np.int64)
        writer.write(block.with_(tags=tags, time=1.7e9 + tags / 120.0))
        t0 = time.perf_counter()
        writer.commit()
        times.append(time.perf_counter() - t0)
        shot += 120
    writer.close()
    shutil.rmtree(path)
    return 1000 * float(np.median(times))


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
    ap.add_argument("--dir", help="where to write (default: the system's temporary directory)")
    args = ap.parse_args()
    config = standard_config()
    blocks = list(standard_stream(args.shots, config=config))
    floats = list(standard_stream(args.shots, config=config, dtype="float32"))
    mb = sum(sum(a.nbytes for a in _arrays(b).values()) for b in blocks) / 1e6
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        raw, raw_runs = median_of(args.repeats, lambda: _tofile_rate(blocks, tmp))
        h5, h5_runs = median_of(args.repeats, lambda: _h5py_rate(blocks, tmp))
        # interleaved, so load on the machine falls on both alike
        closes: list[float] = []
        pairs = [(_writer_rate(blocks, tmp, config, closes), _writer_rate(blocks, tmp, with_fsync(config)))
                 for _ in range(args.repeats)]
        runs, sync_runs = [p[0] for p in pairs], [p[1] for p in pairs]
        rate, sync_rate = statistics.median(runs), statistics.median(sync_runs)
        commit_pairs = [(_commit_ms(blocks, tmp, config), _commit_ms(blocks, tmp, with_fsync(config)))
                        for _ in range(args.repeats)]
        commit, commit_sync = (statistics.median(p[i] for p in commit_pairs) for i in (0, 1))
        raw32, raw32_runs = median_of(args.repeats, lambda: _tofile_rate(floats, tmp))
        rate32, runs32 = median_of(args.repeats, lambda: _writer_rate(floats, tmp, config))
        size = make_recording(tmp / "size.zarr", shots=args.shots)
        disk_mb = sum(p.stat().st_size for p in size.rglob("*") if p.is_file()) / 1e6
        size32 = make_recording(tmp / "size32.zarr", shots=args.shots, dtype="float32")
        disk32_mb = sum(p.stat().st_size for p in size32.rglob("*") if p.is_file()) / 1e6
    common = {"shots": args.shots, "raw_mb": round(mb, 1)}
    emit("writer_tofile", "shots_per_s", raw, "shots/s", runs=[round(r) for r in raw_runs], **common)
    emit("writer_h5py", "shots_per_s", h5, "shots/s", baseline="numpy tofile", baseline_value=raw,
         runs=[round(r) for r in h5_runs], **common)
    emit("writer_zarr", "shots_per_s", rate, "shots/s", baseline="numpy tofile", baseline_value=raw,
         gate=">= 10000", ok=rate >= 10_000, runs=[round(r) for r in runs], disk_mb=round(disk_mb, 1), **common)
    emit("writer_zarr_vs_h5py", "ratio", rate / h5, "x", baseline="h5py resizable append",
         baseline_value=h5, **common)
    emit("writer_close", "s", statistics.median(closes), "s for the clean close (commit, trim, fsync of the run)",
         runs=[round(c, 3) for c in closes], **common)
    emit("writer_zarr_fsync", "shots_per_s", sync_rate, "shots/s (record.fsync = true)",
         baseline="writer_zarr, same run, interleaved", baseline_value=rate, runs=[round(r) for r in sync_runs],
         baseline_runs=[round(r) for r in runs], **common)
    emit("writer_commit_120", "ms", commit_sync, "ms per commit of 120 shots with fsync",
         baseline="the same commit without fsync", baseline_value=commit, **common)
    emit("writer_zarr_float32", "shots_per_s", rate32, "shots/s (float32 pixels)", baseline="numpy tofile, float32",
         baseline_value=raw32, gate=">= 10000", ok=rate32 >= 10_000, runs=[round(r) for r in runs32],
         baseline_runs=[round(r) for r in raw32_runs], disk_mb=round(disk32_mb, 1), shots=args.shots)


if __name__ == "__main__":
    main()
