"""`mpirun -n N shotwatch record --mpi` on the CPU-heavy workload: one worker rank against two.

The workload (issue 12): the simulator at rate 0 delivering a full 1024 x 512 frame for every
shot, with a dark, a mask and 16 ROIs of 128 x 128 spread over the sensor, frames_every = 0.
One process is bound by generating and correcting frames; worker ranks share that work.

Each job runs ``--warmup`` s after rank 0 answers (the first blocks), then its shots/s are
taken from the recording's commits over ``--seconds`` s (no console attached: one would take
a core's share copying cutouts), with rank 0's CPU over the same window (psutil).
Gate: shots/s with two worker ranks (``-n 3``) >= 1.6 x one (``-n 2``), in the same run; the
exit status is 1 when it fails. For reference, one worker rank against one process
(``-n 1``: the plain recorder, which generates, cuts and records in one process).

    .venv/bin/python benchmarks/bench_mpi.py                    # ~1.5 min
    .venv/bin/python benchmarks/bench_mpi.py --seconds 5 --warmup 4
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from _common import emit
from shotwatch.link.netfeed import NetFeed
from shotwatch.link.runfile import runfile_for
from shotwatch.recording import RecordingReader
from shotwatch.recording.darkfile import write_dark_file
from shotwatch.schemas import DarkFrame
from shotwatch.sources.sim import DETECTOR, SHAPE

BIN = Path(sys.executable).parent
GATE = 1.6


def rois() -> str:
    """16 ROIs of 128 x 128: a 4 x 4 grid over the 512-wide, 1024-high sensor."""
    out = []
    for i in range(16):
        x0, y0 = (i % 4) * 128, (i // 4) * 256 + 64
        out.append(f'[[roi]]\nname = "r{i:02d}"\ndetector = "{DETECTOR}"\nx = [{x0}, {x0 + 128}]\n'
                   f"y = [{y0}, {y0 + 128}]\n")
    return "\n".join(out)


def write_config(tmp: Path) -> Path:
    rng = np.random.default_rng(5)
    mean = (300 + 20 * rng.standard_normal(SHAPE)).astype(np.float32)
    write_dark_file(tmp / "dark.zarr", {DETECTOR: DarkFrame(mean, np.full(SHAPE, 6, np.float32), 50, 0, 98)},
                    source={"kind": "sim"})
    cfg = tmp / "mpi.toml"
    cfg.write_text(f"""[source]
kind = "sim"
seed = 7
rate = 0
full_frames = true

[calibration]
threshold_ev = 500.0
photon_energy_ev = 9000.0
dark = "dark.zarr"

[[mask]]
detector = "{DETECTOR}"
x = [190, 194]
y = [290, 300]

{rois()}
[record]
frames_every = 0
""")
    return cfg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def committed(out: Path) -> int:
    return RecordingReader(out).committed


def commit_rate(out: Path, seconds: float) -> float:
    """Shots/s between the first and the last commit seen within ``seconds`` (the recording
    commits every couple of seconds: rates are taken from commit to commit, exactly)."""
    seen: list[tuple[int, float]] = []
    last = committed(out)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.1)
        now = committed(out)
        if now != last:
            seen.append((now, time.monotonic()))
            last = now
    if len(seen) < 2:
        raise RuntimeError(f"fewer than 2 commits in {seconds:g} s: measure longer (--seconds)")
    (c0, t0), (c1, t1) = seen[0], seen[-1]
    return (c1 - c0) / (t1 - t0)


def measure(n: int, cfg: Path, out: Path, *, warmup: float, seconds: float) -> tuple[float, float]:
    """(shots/s, rank 0's CPU in % of a core) of ``mpiexec -n n ... record --mpi``."""
    control = f"tcp://127.0.0.1:{free_port()}"
    cmd = [str(BIN / "mpiexec"), "-n", str(n), str(BIN / "shotwatch"), "record", "--mpi", "-c", str(cfg),
           "-o", str(out), "--control", control, "--publish", f"tcp://127.0.0.1:{free_port()}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    feed = NetFeed(control=control)
    try:
        deadline = time.monotonic() + 120
        while feed.hello(timeout=2) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mpiexec -n {n}: no hello from rank 0: {proc.communicate()[1][-500:]}")
        info = runfile_for(control)
        assert info is not None
        rank0 = psutil.Process(info.pid)
        time.sleep(warmup)
        c0, w0 = sum(rank0.cpu_times()[:2]), time.monotonic()
        rate = commit_rate(out, seconds)
        c1, w1 = sum(rank0.cpu_times()[:2]), time.monotonic()
        reply = feed.request("stop", timeout=30)
        assert reply.ok, reply.error
        proc.communicate(timeout=60)
    finally:
        feed.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return rate, 100 * (c1 - c0) / (w1 - w0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0, help="measured window per job")
    ap.add_argument("--warmup", type=float, default=6.0, help="seconds after rank 0's hello before measuring")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(Path(tmp))
        alone, _ = measure(1, cfg, Path(tmp) / "n1.zarr", warmup=args.warmup, seconds=args.seconds)
        one, cpu_one = measure(2, cfg, Path(tmp) / "n2.zarr", warmup=args.warmup, seconds=args.seconds)
        two, cpu_two = measure(3, cfg, Path(tmp) / "n3.zarr", warmup=args.warmup, seconds=args.seconds)
    ok = one > 0 and two / one >= GATE
    emit("mpi_record_full_frames", "shots_per_s_two_worker_ranks", two, "shots/s",
         baseline="one worker rank (mpirun -n 2), same run", baseline_value=one, gate=f">= {GATE} x", ok=ok,
         seconds=args.seconds, rois="16 x 128x128", frame="1024x512 float32, dark, mask")
    emit("mpi_record_full_frames", "shots_per_s_one_worker_rank", one, "shots/s",
         baseline="one process (mpirun -n 1: the plain recorder), same run", baseline_value=alone, gate=None,
         ok=None)
    emit("mpi_record_full_frames", "rank0_cpu_two_worker_ranks", cpu_two, "% of a core",
         baseline="rank 0 with one worker rank", baseline_value=cpu_one, gate=None, ok=None,
         cores=psutil.cpu_count())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
