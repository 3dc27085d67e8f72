"""Soak: a real ``shotwatch record`` at 60 Hz with a real ``shotwatch console`` attached in tmux.

    benchmarks/soak.py --minutes 30        # the acceptance run (`make soak`)
    benchmarks/soak.py --minutes 2 --no-save   # a quick check (samples every 10 s)

Not named ``bench_*`` so ``make bench`` does not run it. Prints JSON lines: one
``soak_sample`` per sample (RSS and CPU of both processes, the recorder's status counters, what
the console shows), then the verdict rows:

- ``soak_rss_recorder`` / ``soak_rss_console``: RSS slope in MB/h (Theil-Sen: the median of the
  pairwise slopes, robust to the recorder's 4.2 MB frame-buffer steps; least squares and the
  RSS floor in the first and last third are reported beside it) over the samples after a 60 s
  warm-up (the console's rolling window fills in ~35 s at 60 Hz). Gate <= 10 MB/h
  (an 8-hour shift would add < 80 MB); judged only when >= 10 min remain after the warm-up,
  shorter runs report the slope with ``ok`` null.
- ``soak_reconcile``: what the source produced against what was committed. The simulator's
  shots are a pure function of (seed, tag), so the tags it produced up to the last tag seen are
  listed again by reading it at rate 0; then produced = committed + the shots each loss counter
  names (``shots lost (reader late)``, ``tags not increasing``). Gate: nothing unexplained, and
  no recorded tag the source did not produce.
- ``soak_dropped``: produced minus committed. Gate == 0, and no fault counter of the service
  (``publish dropped``, ...) above 0. The shots the recorder's live summary received
  (``--summary-json``) are its baseline.
- ``soak_complete``: the recording is closed, and holds at least every shot the last heartbeat
  before the stop reported.
- ``soak_console``: the console showed live data (a rate in Hz) at every sample, and ``q``
  ended it with exit code 0.

Exit status 1 if any gate failed. The verdict rows go to
``benchmarks/results/<UTC start>-<commit>-soak.jsonl`` (benchmarks/_results.py) unless
``--no-save``; the samples only to stdout.

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
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from _common import config_text, emit
from _pty_link import SHOTWATCH, RecorderProc, cpu_seconds, info_json, private_runtime
from _results import ROOT, ResultsWriter, provenance
from shotwatch.recording import RecordingReader
from shotwatch.schemas import parse_config
from shotwatch.sources import open_source

WARMUP_S = 60.0
SLOPE_GATE_MB_H = 10.0
SEED = 2019
# Counters, in shots, of shots the source produced that the recording cannot hold: the reader
# fell behind the simulator's clock, or the recorder dropped tags that did not increase. (The
# simulator's missing tags and vetoed shots are beam physics: never produced, never lost.)
LOST_SHOTS = ("shots lost (reader late)", "tags not increasing")
# Faults of the service, counted in messages: they take nothing from the recording, but none
# may happen in a soak.
FAULTS = ("publish dropped", "publish errors", "unpublishable messages", "control thread failures")


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


def source_tags(seed: int, last_tag: int) -> np.ndarray:
    """Every tag the simulator with ``seed`` produces up to ``last_tag``, in order.

    Its shots are a pure function of (seed, tag) whatever the rate (DESIGN.md, Scale), so the
    simulator read again at rate 0, without ROIs or frames, lists what the paced one produced.
    """
    config = parse_config(tomllib.loads(config_text(rate=0, frames_every=0, seed=seed)), origin="soak")
    source = open_source(config, frames_every=0)
    source.open()
    source.set_rois(rois={})
    chunks = [np.empty(0, np.int64)]
    try:
        while not len(chunks[-1]) or chunks[-1][-1] < last_tag:
            block = source.read(timeout=1.0)
            if block is not None:
                chunks.append(block.tags)
    finally:
        source.close()
    tags = np.concatenate(chunks)
    return tags[tags <= last_tag]


def reconcile(produced: np.ndarray, committed: np.ndarray, counters: dict[str, int]) -> dict[str, Any]:
    """Produced = committed + the shots each loss counter names, checked by tag.

    Returns the counts, the named losses, ``missing`` (produced tags not in the recording),
    ``foreign`` (recorded tags the source never produced) and ``unexplained`` (produced minus
    committed minus the named losses: 0 when the counters tell the whole story).
    """
    lost = {k: int(counters[k]) for k in LOST_SHOTS if counters.get(k)}
    return {"produced": int(len(produced)), "committed": int(len(committed)), "lost": lost,
            "missing": int(np.setdiff1d(produced, committed).size),
            "foreign": int(np.setdiff1d(committed, produced).size),
            "unexplained": int(len(produced) - len(committed) - sum(lost.values()))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--sample", type=float, help="seconds between samples (default 30; 10 for runs under 10 min)")
    ap.add_argument("--rate", type=float, default=60.0, help="simulator shots per second")
    ap.add_argument("--dir", default=None, help="where the recording goes (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the recording and logs")
    ap.add_argument("--no-save", action="store_true", help="do not write a result file")
    args = ap.parse_args()
    writer = None if args.no_save else ResultsWriter(ROOT, provenance(ROOT), suffix="-soak")
    load0 = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="soak-", dir=args.dir))
    try:
        rows = soak(args, work)
    finally:  # the recording grows ~9 GB an hour: never leave it behind by accident
        if args.keep:
            print(json.dumps({"bench": "soak_files", "dir": str(work)}), flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = sorted(r["bench"] for r in rows if r.get("ok") is False)
    if writer is not None:
        command = f"benchmarks/soak.py --minutes {args.minutes:g}" + (f" --rate {args.rate:g}" if args.rate != 60 else "")
        writer.script("soak", rows, exit=1 if failed else 0, seconds=time.time() - writer.started,
                      load=(load0, os.getloadavg()[0]))
        writer.finish(command, failed)
    return 1 if failed else 0


def soak(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Record with a console attached for ``args.minutes``, sampling; returns the verdict rows."""
    every = args.sample or (30.0 if args.minutes >= 10 else 10.0)
    config = work / "soak.toml"
    config.write_text(config_text(rate=args.rate, seed=SEED))
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
    return [*rss_rows(args, samples), *recording_rows(args, last, rec_code, rec_path, summary),
            console_row(samples, con_code)]


def rss_rows(args: argparse.Namespace, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    span = samples[-1]["t_s"] if samples else 0.0
    judged = span - WARMUP_S >= 600
    rows = []
    for who in ("recorder", "console"):
        slope = slope_mb_per_h(samples, f"{who}_rss_mb")
        first = next((s[f"{who}_rss_mb"] for s in samples if s["t_s"] >= WARMUP_S), float("nan"))
        floor = floors(samples, f"{who}_rss_mb")
        lsq = round(lsq_slope_mb_per_h(samples, f"{who}_rss_mb"), 2)
        rows.append(emit(
            f"soak_rss_{who}", "rss_slope", slope, "MB/h", baseline="RSS after the warm-up (MB)", baseline_value=first,
            gate=f"<= {SLOPE_GATE_MB_H:g} MB/h (judged on >= 10 min after warm-up)",
            ok=(slope <= SLOPE_GATE_MB_H) if judged else None,
            note=f"least squares {lsq:g} MB/h; floor {floor[0]:.1f} -> {floor[1]:.1f} MB", minutes=args.minutes,
            rss_first_mb=samples[0][f"{who}_rss_mb"] if samples else None,
            rss_last_mb=samples[-1][f"{who}_rss_mb"] if samples else None, lsq_slope=lsq,
            floor_first_third_mb=floor[0], floor_last_third_mb=floor[1],
            cpu_fraction=round((samples[-1][f"{who}_cpu_s"] - samples[0][f"{who}_cpu_s"]) / max(1.0, span), 4)
            if samples else None))
    return rows


def recording_rows(args: argparse.Namespace, last: Any, rec_code: int | None, rec_path: Path,
                   summary: Path) -> list[dict[str, Any]]:
    """soak_reconcile, soak_dropped and soak_complete, from the recording, the last heartbeat and
    the simulator read again."""
    info = info_json(rec_path) if rec_path.exists() else {}
    tags = RecordingReader(rec_path).tags() if rec_path.exists() else np.empty(0, np.int64)
    received = json.loads(summary.read_text())["shots"]["total"] if summary.exists() else None
    counters = dict(last.counters) if last is not None else {}
    seen = [int(tags[-1])] if len(tags) else []
    if last is not None and last.last_tag is not None:
        seen.append(int(last.last_tag))
    last_tag = max(seen, default=-1)
    r = reconcile(source_tags(SEED, last_tag) if last_tag >= 0 else np.empty(0, np.int64), tags, counters)
    named = " + ".join(f"{n:,} {k}" for k, n in r["lost"].items()) or "0 counted lost"
    reconciled = emit(
        "soak_reconcile", "produced_minus_committed_minus_named_losses", r["unexplained"], "shots",
        baseline="shots the seeded simulator produced up to the last tag", baseline_value=r["produced"],
        gate="produced = committed + named losses, every recorded tag produced",
        ok=r["unexplained"] == 0 and r["foreign"] == 0 and r["produced"] > 0,
        note=f"produced {r['produced']:,} = committed {r['committed']:,} + {named}", last_tag=last_tag, **r)
    faults = {k: v for k, v in counters.items() if k in FAULTS and v}
    dropped = r["produced"] - r["committed"]
    dropped_row = emit(
        "soak_dropped", "produced_minus_committed", dropped, "shots", baseline="shots received (live summary)",
        baseline_value=received, gate="== 0 and no fault counter", ok=dropped == 0 and not faults,
        note=f"received {received:,}; faults {faults or 'none'}" if received is not None else "no live summary",
        received=received, faults=faults, all_counters={k: v for k, v in counters.items() if v},
        expected_at_rate=round(args.rate * args.minutes * 60), tag_gaps=getattr(last, "tag_gaps", None),
        recorder_exit=rec_code)
    last_shots = getattr(last, "shots", None)
    complete = emit(
        "soak_complete", "committed", r["committed"], "shots", baseline="shots in the last heartbeat before stop",
        baseline_value=last_shots, gate="closed and committed >= last heartbeat",
        ok=bool(info.get("closed")) and last_shots is not None and r["committed"] >= last_shots,
        closed=info.get("closed"), bytes=info.get("bytes"))
    return [reconciled, dropped_row, complete]


def console_row(samples: list[dict[str, Any]], con_code: int | None) -> dict[str, Any]:
    live = sum(1 for s in samples if s["console_live"])
    skipped = samples[-1]["console_skipped_blocks"] if samples else None
    return emit("soak_console", "samples_showing_live_data", live, "samples", baseline="samples",
                baseline_value=len(samples), gate="all samples live and exit 0", ok=live == len(samples) and con_code == 0,
                note=f"exit {con_code}; skipped blocks {skipped}", exit_code=con_code, skipped_blocks=skipped)


if __name__ == "__main__":
    raise SystemExit(main())
