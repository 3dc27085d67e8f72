"""`reduce` of 10 recordings (500,000 shots) in one process against `--workers 2`, start-up included.

Gate (issue 12): `shotwatch reduce REC… --workers 2` >= 1.6 x as fast as the same command in
one process, in the same run, on these 2-core machines. Both are timed as whole commands
(interpreter start, planning, the local Dask cluster's start and stop for `--workers 2`),
alternately, page cache warm; the figure is the median of the per-pair ratios. Both
results are checked equal (counts exactly, values to 1e-9 relative) or the row fails; a failed
gate is also exit status 1.

The recordings: the simulator at rate = 0 (`shotwatch record --shots 50000`, seeds 1..10),
the demo configuration with `frames_every = 0`: per shot 2 ROIs of 32 x 32 float32 (8 KiB
raw) and 5 points, reduced under the demo analysis (photon threshold, I0 window, two vetoes,
a 20-bin delay scan, tag-modulo pump-probe). Also reported: the local cluster's start and
stop alone, and the one-process rate (shots/s per core, what scaling projections use).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import config_text, emit

SHOTS_PER_RECORDING = 50_000


def generate(root: Path, recordings: int, shots: int) -> list[Path]:
    """``recordings`` recordings of ``shots`` shots each, two simulators at a time."""
    paths = []
    pending: list[subprocess.Popen[bytes]] = []
    for i in range(1, recordings + 1):
        cfg = root / f"sim{i}.toml"
        cfg.write_text(config_text(rate=0, frames_every=0, seed=i))
        paths.append(root / f"run{i:02d}.zarr")
        pending.append(subprocess.Popen([sys.executable, "-m", "shotwatch", "record", "-c", str(cfg), "-o",
                                         str(paths[-1]), "--shots", str(shots)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if len(pending) == 2 or i == recordings:
            for p in pending:
                if p.wait() != 0:
                    raise SystemExit(f"bench_dask: shotwatch record exited {p.returncode}")
            pending = []
    return paths


def timed_reduce(paths: list[Path], out: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `shotwatch reduce … --json` command, its workers included
    (they are its children, reaped before it exits, so their CPU time is in RUSAGE_CHILDREN)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shotwatch", "reduce", *map(str, paths), "--json", "-o", str(out), *extra],
                   check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def same(a: Any, b: Any) -> bool:
    """Counts exactly, floats to 1e-9 relative, same keys (INTERFACE.md's equality)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-9 * abs(a)
    return type(a) is type(b) and a == b


def cluster_start_stop(workers: int) -> float:
    """Seconds to start and stop the local cluster `--workers` uses, with nothing to reduce."""
    code = ("import time; t=time.perf_counter()\n"
            "from shotwatch.commands.reduce_dask import connect\n"
            f"with connect(workers={workers}, scheduler=None) as c: c.submit(int, 1).result()\n"
            "print(time.perf_counter() - t)")
    script = ("if __name__ == '__main__':\n" + "".join("    " + line + "\n" for line in code.splitlines()))
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


@contextlib.contextmanager
def running_cluster(root: Path, workers: int) -> Iterator[tuple[str, dict[str, str]]]:
    """A TLS cluster started as `--workers` starts its own, and the environment that lets a
    `--scheduler` command in another process join it (the README's recipe, files mode 0600)."""
    import dask
    from distributed import LocalCluster
    from distributed.security import Security

    sec = Security.temporary()
    pem = root / "tls.pem"
    pem.touch(mode=0o600)
    pem.write_text(sec.tls_ca_file + sec.tls_client_key)  # a self-signed certificate and its key
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
           "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(pem), "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(pem)}
    with dask.config.set({"distributed.scheduler.http.routes": [], "distributed.worker.profile.enabled": False}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", protocol="tls://",
                         security=sec, dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                         silence_logs=logging.CRITICAL) as cluster:
        yield cluster.scheduler_address, env


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recordings", type=int, default=10)
    ap.add_argument("--shots", type=int, default=SHOTS_PER_RECORDING, help="per recording")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    total = args.recordings * args.shots
    with tempfile.TemporaryDirectory(prefix="bench_dask-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        paths = generate(root, args.recordings, args.shots)
        made = time.perf_counter() - t0
        size = sum(f.stat().st_size for p in paths for f in p.rglob("*") if f.is_file())
        timed_reduce(paths, root / "warm.json")  # warm the page cache
        load0 = os.getloadavg()[0]
        pairs = []
        for _ in range(args.repeats):
            pairs.append((timed_reduce(paths, root / "one.json"),
                          timed_reduce(paths, root / "two.json", "--workers", str(args.workers))))
        load1 = os.getloadavg()[0]
        equal = same(json.loads((root / "one.json").read_text()), json.loads((root / "two.json").read_text()))
        starts = [cluster_start_stop(args.workers) for _ in range(args.repeats)]
        with running_cluster(root, args.workers) as (address, env):
            running = [timed_reduce(paths, root / "three.json", "--scheduler", address, env=env)
                       for _ in range(args.repeats)]
        equal = equal and same(json.loads((root / "one.json").read_text()),
                               json.loads((root / "three.json").read_text()))
    one, two = (statistics.median(p[k][0] for p in pairs) for k in (0, 1))
    cpu_one, cpu_two = (statistics.median(p[k][1] for p in pairs) for k in (0, 1))
    speedup = statistics.median(p[0][0] / p[1][0] for p in pairs)
    common = {"recordings": args.recordings, "shots": total, "bytes": size, "generate_s": round(made, 1),
              "load1": [round(load0, 2), round(load1, 2)], "cores": os.cpu_count()}
    ok = speedup >= 1.6 and equal
    emit("reduce_many", "speedup", speedup, f"x one process (--workers {args.workers}, start-up included)",
         baseline="the same command in one process", baseline_value=1.0, gate=">= 1.6 and results equal", ok=ok, equal=equal,
         pairs_s=[[round(a[0], 2), round(b[0], 2)] for a, b in pairs], **common)
    emit("reduce_many_one_process", "shots_per_s", total / one, "shots/s (whole command, 1 process)",
         seconds=round(one, 2), cpu_s=round(cpu_one, 2), **common)
    emit("reduce_many_workers", "shots_per_s", total / two, f"shots/s (whole command, --workers {args.workers})",
         baseline="1 process", baseline_value=total / one, seconds=round(two, 2), cpu_s=round(cpu_two, 2), **common)
    run_wall = statistics.median(r[0] for r in running)
    emit("reduce_many_running_cluster", "shots_per_s", total / run_wall,
         f"shots/s (whole command, --scheduler of {args.workers} workers started before)",
         baseline="1 process", baseline_value=total / one, seconds=round(run_wall, 2),
         cpu_s_client=round(statistics.median(r[1] for r in running), 2), **common)
    emit("reduce_many_cluster", "seconds", statistics.median(starts), f"s to start and stop {args.workers} "
         "local workers (TLS), nothing reduced", runs=[round(s, 2) for s in starts])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())  # the gate by exit code too, for a run outside run_all
