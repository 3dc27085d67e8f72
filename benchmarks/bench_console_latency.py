"""How soon the operator sees data: ``shotwatch run`` to first data, and a shot to its value on screen.

Both on a 120x40 pty read as fast as the console writes (a local terminal: the link's share is
measured by bench_console_bandwidth.py, which also reports first data over 64 kbit/s).

- **first data** (gate <= 2 s): from spawning ``shotwatch run`` until the rendered screen shows a
  rate ``NN.N Hz`` and a number on the bragg row. Median of 3. Baseline, same run: a minimal
  Textual app (one Static) from spawn to its first paint — the floor Python + Textual impose.
- **shot to screen** (gate: 95th percentile <= one refresh period + 100 ms): every time the value
  on the bragg row changes, note the wall time; after the run, find the shot whose value that
  is in the recording (``reduce --per-shot``, formatted as the console formats it, among the
  shots of the preceding 3 s; ambiguous matches are left out and counted) and take
  screen time - shot time. The shot's time is the simulator's nominal pulse time, so the figure
  includes everything: the simulator's 0.1 s blocks, publishing, the feed thread, the paint
  tick. Baseline = the target itself (refresh period + 100 ms), so ``ratio`` <= 1 passes.
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit
from _pty_link import (
    SHOTWATCH,
    PtyLink,
    Screen,
    box,
    has_data,
    median,
    percentile,
    private_runtime,
    roi_value,
)

IDLE_APP = """
from textual.app import App
from textual.widgets import Static
class Idle(App):
    def compose(self):
        yield Static("idle app ready")
Idle().run()
"""


def fmt_num(x: float) -> str:
    """The console's number format (console/format.py ``fmt_num``), kept here so the
    benchmark does not import the console."""
    import math

    if not math.isfinite(x):
        return "missing"
    ax = abs(x)
    if ax != 0 and (ax >= 1e5 or ax < 1e-3):
        return f"{x:.3e}"
    return f"{x:.4g}"


def first_paint(argv: list[str], pred: object, tmp: Path, *, timeout: float = 30.0,
                painted: list[float] | None = None) -> float:
    """Seconds from spawn until ``pred(screen)``; the program is then asked to quit.

    ``painted`` receives the seconds until anything at all was on the screen.
    """
    with PtyLink(argv, env={"XDG_RUNTIME_DIR": str(private_runtime(tmp))}) as link:
        t_any = link.wait_for(lambda ls: any(line.strip() for line in ls), timeout)
        t = link.wait_for(pred, timeout)  # type: ignore[arg-type]
        link.send("q")
        link.wait_exit(30.0)
        if painted is not None:
            painted.append(float("nan") if t_any is None else t_any - link.t0)
        return float("nan") if t is None else t - link.t0


def first_data(tmp: Path, repeats: int) -> None:
    painted: list[float] = []
    runs = [first_paint([SHOTWATCH, "run", "-o", str(tmp / f"fd{i}.zarr")], has_data, tmp, painted=painted)
            for i in range(repeats)]
    base = [first_paint([sys.executable, "-c", IDLE_APP], lambda ls: "idle app ready" in "".join(ls), tmp)
            for _ in range(repeats)]
    value = median(runs)
    emit("console_first_data", "spawn_to_data_on_screen_s", value, "s", baseline="minimal Textual app to first paint",
         baseline_value=median(base), gate="<= 2.0", ok=value <= 2.0, runs=[round(r, 2) for r in runs],
         baseline_runs=[round(b, 2) for b in base], first_paint_s=[round(p, 2) for p in painted],
         command="shotwatch run -o REC", **box())


def shot_to_screen(tmp: Path, seconds: float, low_bandwidth: bool) -> None:
    rec = tmp / f"lat{'-low' if low_bandwidth else ''}.zarr"
    argv = [SHOTWATCH, "run", "-o", str(rec)] + (["--low-bandwidth"] if low_bandwidth else [])
    period = 2.0 if low_bandwidth else 1.0  # the console's default refresh (INTERFACE: 1 Hz, 0.5 with --low-bandwidth)
    seen: list[tuple[float, str]] = []
    stale: list[int] = [0, 0]
    offset = time.time() - time.monotonic()

    def on_read(t: float, lines: Screen) -> None:
        value = roi_value(lines, "bragg")
        if value is not None and (not seen or seen[-1][1] != value):
            seen.append((t + offset, value))
            stale[0] += 1
            stale[1] += "STALE" in lines[0]  # the status bar's age flag, with the beam running

    with PtyLink(argv, env={"XDG_RUNTIME_DIR": str(private_runtime(tmp))}) as link:
        link.watch(on_read)
        link.wait_for(has_data, 30.0)
        time.sleep(seconds)
        link.send("q")
        code = link.wait_exit(30.0)
    shots = per_shot(rec)
    lat, ambiguous, unmatched = match(seen[1:], shots)  # the first value is the start-up paint
    p95 = percentile(lat, 0.95)
    target = period + 0.1
    emit(f"console_shot_to_screen{'_low' if low_bandwidth else ''}", "p95_latency_s", p95, "s",
         baseline="target: refresh period + 100 ms", baseline_value=target, gate=f"p95 <= {target:g}",
         ok=bool(lat) and p95 <= target, median_s=round(median(lat), 3), max_s=round(max(lat, default=float("nan")), 3),
         n=len(lat), ambiguous=ambiguous, unmatched=unmatched, exit_code=code,
         stale_paints=f"{stale[1]}/{stale[0]}", command=" ".join(argv[1:]), **box())


def per_shot(rec: Path) -> list[tuple[float, str]]:
    """(shot time, bragg value as the console prints it) for every shot recorded."""
    out = subprocess.run([SHOTWATCH, "reduce", str(rec), "--per-shot"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    rows = []
    for row in csv.DictReader(io.StringIO(out)):
        if row["bragg"] and row["time"]:
            rows.append((float(row["time"]), fmt_num(float(row["bragg"]))))
    return rows


def match(seen: list[tuple[float, str]], shots: list[tuple[float, str]],
          window: float = 3.0) -> tuple[list[float], int, int]:
    """Latencies of the values seen on screen; also how many were ambiguous or unmatched."""
    lat: list[float] = []
    ambiguous = unmatched = 0
    for t, value in seen:
        hits = [ts for ts, v in shots if v == value and t - window <= ts <= t + 0.05]
        if len(hits) == 1:
            lat.append(t - hits[0])
        elif hits:
            ambiguous += 1
        else:
            unmatched += 1
    return lat, ambiguous, unmatched


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0, help="live time for the shot-to-screen samples")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lat-") as tmp:
        first_data(Path(tmp), args.repeats)
        shot_to_screen(Path(tmp), args.seconds, low_bandwidth=False)
        shot_to_screen(Path(tmp), args.seconds, low_bandwidth=True)


if __name__ == "__main__":
    main()
