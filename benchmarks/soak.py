"""Soak: a real ``shotwatch record`` at 60 Hz with a real ``shotwatch console`` attached in tmux.

    benchmarks/soak.py --minutes 30        # the acceptance run (`make soak`)
    benchmarks/soak.py --minutes 2         # a quick check (samples every 10 s)

Not named ``bench_*`` so ``make bench`` does not run it. Prints JSON lines: one
``soak_sample`` per sample (RSS and CPU of both processes, the recorder's status counters, what
the console shows), then the verdict rows:

- ``soak_rss_recorder`` / ``soak_rss_console``: RSS slope in MB/h (Theil-Sen: the median of the
  pairwise slopes, robust to the recorder's 4.2 MB frame-buffer steps; least squares and the
  RSS floor in the first and last third are reported beside it) over the samples after a 60 s
  warm-up (the console's rolling window fills in ~35 s at 60 Hz). Gate <= 10 MB/h
  (an 8-hour shift would add < 80 MB); judged only when >= 10 min remain after the warm-up,
  shorter runs report the slope with ``ok`` null.
- ``soak_dropped``: shots the recorder received (its live summary's ``shots.total``,
  ``--summary-json``) minus shots committed (``shotwatch info``). Gate == 0, and no recorder
  or publisher fault counter (``shots lost (reader late)``, ``publish dropped``, ...) above 0.
- ``soak_complete``: the recording is closed, and holds at least every shot the last heartbeat
  before the stop reported.
- ``soak_console``: the console showed live data (a rate in Hz) at every sample, and ``q``
  ended it with exit code 0.

The recording (~2 MB/s: one full frame a second) is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from _common import config_text, emit
from _pty_link import SHOTWATCH, RecorderProc, cpu_seconds, info_json, private_runtime

WARMUP_S = 60.0
SLOPE_GATE_MB_H = 10.0
# Counters that would mean the recorder or its publisher lost something (the simulator's own
# missing tags and vetoed shots are beam physics, not losses).
LOSS_COUNTERS = ("shots lost (reader late)", "publish dropped", "publish errors", "tags not increasing",
                 "control thread failures")


class StatusWatch:
    """Keeps the newest recorder heartbeat, read from the PUB socket like any console."""

    def __init__(self, control: str) -> None:
        from shotwatch.link.messages import StatusMsg
        from shotwatch.link.netfeed import NetFeed

        self._feed = NetFeed(control, read_only=True)
        self._kind = StatusMsg
        self.status: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-status")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._feed.poll(timeout=0.5):
                if isinstance(msg, self._kind):
                    self.status = msg.status

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._feed.close()


class TmuxConsole:
    """``shotwatch console`` in a 120x40 pane of a private tmux server."""

    def __init__(self, workdir: Path, control: str, runtime: Path) -> None:
        self.socket = workdir / "tmux.sock"
        self.code_file = workdir / "console.exit"
        inner = (f"env XDG_RUNTIME_DIR={shlex.quote(str(runtime))} {shlex.quote(SHOTWATCH)} console --connect "
                 f"{shlex.quote(control)}; echo $? > {shlex.quote(str(self.code_file))}; exec sleep 3600")
        self("new-session", "-d", "-s", "soak", "-x", "120", "-y", "40",
             f"env PATH={shlex.quote(os.environ.get('PATH', ''))} sh -c {shlex.quote(inner)}")
        pane = int(self("display-message", "-p", "-t", "soak", "#{pane_pid}").strip())
        self.proc = self._find_console(pane)

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", str(self.socket), "-f", "/dev/null", *args], capture_output=True,
                              text=True, timeout=20, check=True).stdout

    @staticmethod
    def _find_console(pane: int, timeout: float = 10.0) -> psutil.Process:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in psutil.Process(pane).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "console" in p.cmdline():
                        return p
            time.sleep(0.1)
        raise RuntimeError("shotwatch console did not start in tmux")

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "soak")

    def live(self) -> bool:
        m = re.search(r"(\d+\.\d) Hz", self.screen())
        return bool(m and float(m.group(1)) > 0)

    def quit(self, timeout: float = 30.0) -> int | None:
        self("send-keys", "-t", "soak", "q")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.code_file.exists() and self.code_file.read_text().strip():
                return int(self.code_file.read_text())
            time.sleep(0.2)
        return None

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, timeout=20, check=False)


def _points(samples: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(s["t_s"], s[key]) for s in samples if s["t_s"] >= WARMUP_S and s.get(key) is not None]


def slope_mb_per_h(samples: list[dict[str, Any]], key: str) -> float:
    """Theil-Sen slope (median of pairwise slopes) of ``key`` (MB) after the warm-up, in MB/h.

    Robust on purpose: the recorder's RSS moves in 4.2 MB steps (two full frames in flight)
    and a least-squares line through 60 such samples swings by +-10 MB/h on one late step.
    """
    pts = _points(samples, key)
    slopes = [(v2 - v1) / (t2 - t1) for i, (t1, v1) in enumerate(pts) for t2, v2 in pts[i + 1:] if t2 > t1]
    return 3600.0 * statistics.median(slopes) if len(pts) >= 3 else float("nan")


def lsq_slope_mb_per_h(samples: list[dict[str, Any]], key: str) -> float:
    """Least-squares slope, reported beside the robust one."""
    pts = _points(samples, key)
    if len(pts) < 3:
        return float("nan")
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mv = sum(v for _, v in pts) / n
    den = sum((t - mt) ** 2 for t, _ in pts)
    return 3600.0 * sum((t - mt) * (v - mv) for t, v in pts) / den if den else float("nan")


def floors(samples: list[dict[str, Any]], key: str) -> tuple[float, float]:
    """Lowest RSS in the first and in the last third after the warm-up: a leak lifts the floor,
    buffers in flight only the peaks."""
    vals = [v for _, v in _points(samples, key)]
    k = max(1, len(vals) // 3)
    return (min(vals[:k]), min(vals[-k:])) if vals else (float("nan"), float("nan"))


def sample(t0: float, rec: psutil.Process, con: psutil.Process, watch: StatusWatch, tmux: TmuxConsole) -> dict[str, Any]:
    st = watch.status
    screen = tmux.screen()
    skipped = re.search(r"skipped (\d+) blocks", screen)
    row: dict[str, Any] = {
        "bench": "soak_sample", "t_s": round(time.monotonic() - t0, 1),
        "recorder_rss_mb": round(rec.memory_info().rss / 1e6, 2), "console_rss_mb": round(con.memory_info().rss / 1e6, 2),
        "recorder_cpu_s": round(cpu_seconds(rec), 2), "console_cpu_s": round(cpu_seconds(con), 2),
        "console_live": bool(re.search(r"[1-9]\d*\.\d Hz", screen)), "console_skipped_blocks": int(skipped.group(1)) if skipped else 0,
    }
    if st is not None:
        row.update(shots=st.shots, committed=st.committed, rate_hz=st.rate_hz, state=st.state,
                   counters={k: v for k, v in st.counters.items() if v}, tag_gaps=st.tag_gaps, bytes=st.bytes)
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--sample", type=float, help="seconds between samples (default 30; 10 for runs under 10 min)")
    ap.add_argument("--rate", type=float, default=60.0, help="simulator shots per second")
    ap.add_argument("--dir", default=None, help="where the recording goes (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the recording and logs")
    args = ap.parse_args()
    every = args.sample or (30.0 if args.minutes >= 10 else 10.0)
    work = Path(tempfile.mkdtemp(prefix="soak-", dir=args.dir))
    config = work / "soak.toml"
    config.write_text(config_text(rate=args.rate))
    rec_path, summary = work / "soak.zarr", work / "summary.json"
    runtime = private_runtime(work)
    rec = RecorderProc(rec_path, runtime=runtime, config=config, extra=["--summary-json", str(summary)])
    info = rec.start()
    watch = StatusWatch(str(info["control"]))
    tmux = TmuxConsole(work, str(info["control"]), runtime)
    samples: list[dict[str, Any]] = []
    con_code = rec_code = None
    last = None
    try:
        deadline = time.monotonic() + 30.0
        while not tmux.live() and time.monotonic() < deadline:
            time.sleep(0.5)
        t0 = time.monotonic()
        assert rec.proc is not None
        recp = psutil.Process(rec.proc.pid)
        while True:
            samples.append(sample(t0, recp, tmux.proc, watch, tmux))
            if time.monotonic() - t0 >= args.minutes * 60:
                break
            time.sleep(max(0.0, min(every, t0 + args.minutes * 60 - time.monotonic())))
        last = watch.status
        con_code = tmux.quit()
        rec_code = rec.stop()
    finally:
        watch.close()
        tmux.kill()
        if rec_code is None:
            rec_code = rec.stop()
    verdict(args, samples, last, con_code, rec_code, rec_path, summary)
    if args.keep:
        print(json.dumps({"bench": "soak_files", "dir": str(work)}), flush=True)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def verdict(args: argparse.Namespace, samples: list[dict[str, Any]], last: Any, con_code: int | None,
            rec_code: int | None, rec_path: Path, summary: Path) -> None:
    span = samples[-1]["t_s"] if samples else 0.0
    judged = span - WARMUP_S >= 600
    for who in ("recorder", "console"):
        slope = slope_mb_per_h(samples, f"{who}_rss_mb")
        first = next((s[f"{who}_rss_mb"] for s in samples if s["t_s"] >= WARMUP_S), float("nan"))
        floor = floors(samples, f"{who}_rss_mb")
        emit(f"soak_rss_{who}", "rss_slope", slope, "MB/h", baseline="RSS after the warm-up (MB)", baseline_value=first,
             gate=f"<= {SLOPE_GATE_MB_H:g} MB/h (judged on >= 10 min after warm-up)",
             ok=(slope <= SLOPE_GATE_MB_H) if judged else None, rss_first_mb=samples[0][f"{who}_rss_mb"] if samples else None,
             rss_last_mb=samples[-1][f"{who}_rss_mb"] if samples else None, minutes=args.minutes,
             lsq_slope=round(lsq_slope_mb_per_h(samples, f"{who}_rss_mb"), 2), floor_first_third_mb=floor[0],
             floor_last_third_mb=floor[1],
             cpu_fraction=round((samples[-1][f"{who}_cpu_s"] - samples[0][f"{who}_cpu_s"]) / max(1.0, span), 4)
             if samples else None)
    info = info_json(rec_path) if rec_path.exists() else {}
    total = json.loads(summary.read_text())["shots"]["total"] if summary.exists() else None
    committed = int(info.get("committed", -1))  # type: ignore[call-overload]
    counters = dict(last.counters) if last is not None else {}
    losses = {k: v for k, v in counters.items() if k in LOSS_COUNTERS and v}
    dropped = float("nan") if total is None else total - committed
    emit("soak_dropped", "received_minus_committed", dropped, "shots", baseline="shots received (live summary)",
         baseline_value=total, gate="== 0 and no loss counters", ok=dropped == 0 and not losses, committed=committed,
         loss_counters=losses, all_counters={k: v for k, v in counters.items() if v},
         expected_at_rate=round(args.rate * span), tag_gaps=getattr(last, "tag_gaps", None), recorder_exit=rec_code)
    last_shots = getattr(last, "shots", None)
    emit("soak_complete", "committed", committed, "shots", baseline="shots in the last heartbeat before stop",
         baseline_value=last_shots, gate="closed and committed >= last heartbeat",
         ok=bool(info.get("closed")) and last_shots is not None and committed >= last_shots, closed=info.get("closed"),
         bytes=info.get("bytes"))
    live = sum(1 for s in samples if s["console_live"])
    emit("soak_console", "samples_showing_live_data", live, "samples", baseline="samples", baseline_value=len(samples),
         gate="all samples live and exit 0", ok=live == len(samples) and con_code == 0, exit_code=con_code,
         skipped_blocks=samples[-1]["console_skipped_blocks"] if samples else None)


if __name__ == "__main__":
    raise SystemExit(main())
