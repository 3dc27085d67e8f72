"""Recorder CPU at 60 Hz with full MPCCD frames generated, cut, averaged, frames_every = 60.

Gate (issue 3): <= 20 % of one core. Baseline, same run: the simulator alone at 60 Hz
(generation cost only), so the ratio says what recording and cutting add.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from _common import config_text, emit

SIM_ONLY = """
import sys, time, tomllib
from shotwatch.schemas import parse_config
from shotwatch.sources import open_source
cfg = parse_config(tomllib.loads(open(sys.argv[1]).read()), origin="bench")
src = open_source(cfg); src.open()
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    src.read(timeout=0.2)
"""


def cpu_fraction(args: list[str], seconds: float, *, settle: float = 3.0) -> float:
    """CPU seconds per wall second of a process, after ``settle`` s of start-up."""
    proc = psutil.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle)
        t0 = proc.cpu_times()
        w0 = time.monotonic()
        time.sleep(seconds)
        t1 = proc.cpu_times()
        w1 = time.monotonic()
    finally:
        proc.terminate()
        proc.wait(20)
    return ((t1.user - t0.user) + (t1.system - t0.system)) / (w1 - w0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "demo60.toml"
        cfg.write_text(config_text(rate=60.0, frames_every=60))
        env_py = sys.executable
        base = cpu_fraction([env_py, "-c", SIM_ONLY, str(cfg), str(args.seconds + 5)], args.seconds)
        rec = cpu_fraction([env_py, "-m", "shotwatch", "record", "-c", str(cfg), "-o",
                            str(Path(tmp) / "cpu.zarr"), "--publish", "auto",
                            "--control", "auto"], args.seconds)
    emit("recorder_cpu_60hz", "cpu_fraction_of_one_core", rec, "core", baseline="simulator alone at 60 Hz",
         baseline_value=base, gate="<= 0.20", ok=rec <= 0.20, cores=os.cpu_count())


if __name__ == "__main__":
    main()
