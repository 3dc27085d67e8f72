"""Console CPU at the default 1 Hz refresh, attached to a separate recorder at 60 Hz.

``shotwatch record`` (demo, 60 Hz) runs headless; ``shotwatch console --connect ADDR`` runs on a
120x40 pty read as fast as it writes. After the first data are on screen and 3 s more, the
console's user + system CPU time (psutil, all its threads) over 20 s of wall time, as a fraction
of one core. Gate: <= 0.10.

Baseline, same run: a minimal Textual app that repaints one line every second on the same pty —
what Textual's event loop and a 1 Hz paint cost before any data arrive, so ``ratio`` says what
the feed thread, the reducers and the widgets add. Also reported: the console with
``--low-bandwidth`` (0.5 Hz, no plots), same gate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import emit
from _pty_link import SHOTWATCH, PtyLink, RecorderProc, box, cpu_seconds, has_data, private_runtime

TICKING_APP = """
import time
from textual.app import App
from textual.widgets import Static
class Ticking(App):
    def compose(self):
        yield Static("ticking", id="t")
    def on_mount(self):
        self.set_interval(1.0, lambda: self.query_one("#t", Static).update(f"ticking {time.time():.0f}"))
Ticking().run()
"""


def measure(link: PtyLink, ready: object, *, seconds: float, settle: float = 3.0) -> float:
    """CPU seconds per wall second of the program on ``link`` once ``ready(screen)`` holds."""
    if link.wait_for(ready, 30.0) is None:  # type: ignore[arg-type]
        raise RuntimeError(f"{link.argv} never showed what was expected:\n{link.text()}")
    time.sleep(settle)
    proc = link.process()
    c0, w0 = cpu_seconds(proc), time.monotonic()
    time.sleep(seconds)
    c1, w1 = cpu_seconds(proc), time.monotonic()
    return (c1 - c0) / (w1 - w0)


def console_cpu(control: str, runtime: Path, *, seconds: float, low_bandwidth: bool) -> tuple[float, int | None]:
    argv = [SHOTWATCH, "console", "--connect", control] + (["--low-bandwidth"] if low_bandwidth else [])
    with PtyLink(argv, env={"XDG_RUNTIME_DIR": str(runtime)}) as link:
        cpu = measure(link, has_data, seconds=seconds)
        link.send("q")
        return cpu, link.wait_exit(15.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        runtime = private_runtime(Path(tmp))
        with PtyLink([sys.executable, "-c", TICKING_APP]) as link:
            base = measure(link, lambda ls: "ticking" in "".join(ls), seconds=args.seconds)
            link.send("q")
        rec = RecorderProc(Path(tmp) / "cpu.zarr", runtime=runtime)
        info = rec.start()
        try:
            rows = []
            for low in (False, True):
                cpu, code = console_cpu(str(info["control"]), runtime, seconds=args.seconds, low_bandwidth=low)
                rows.append((low, cpu, code))
            rec_cpu = cpu_seconds(rec.proc) if rec.proc else float("nan")  # type: ignore[arg-type]
        finally:
            rec.stop()
    for low, cpu, code in rows:
        emit(f"console_cpu{'_low' if low else ''}", "cpu_fraction_of_one_core", cpu, "core",
             baseline="minimal Textual app repainting a line at 1 Hz", baseline_value=base, gate="<= 0.10",
             ok=cpu <= 0.10, exit_code=code, seconds=args.seconds, **box(),
             command=f"shotwatch console --connect ADDR{' --low-bandwidth' if low else ''} (recorder: shotwatch record)",
             recorder_cpu_s_total=round(rec_cpu, 1))


if __name__ == "__main__":
    main()
