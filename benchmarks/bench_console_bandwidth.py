"""Console output over a slow link, and typing into the ROI form across it, as an operator meets it.

Two scenarios, each ``shotwatch run`` (recorder + console, the demo at 60 Hz) on a 120x40 pty
whose output is read no faster than the link (benchmarks/_pty_link.py) and rendered by pyte:

- 64 kbit/s (8,000 B/s), default display: gate <= 6,000 B/s steady state; after 30 s of live
  data press ``e``, allow 8 s for the form, type ``177`` into x0: on screen within 1.5 s.
- 9600 baud (960 B/s), ``--low-bandwidth``: gate <= 800 B/s; after 60 s press ``e``, allow 20 s,
  typed value on screen within 2.5 s.
- 64 kbit/s in the detector view (``d`` once the data are on screen), where the operator nudges
  ROIs with the arrow keys: the same gates, plus (report only) three right-arrow taps timed
  until the screen shows the rectangle the recorder applied.
- The analysis form (issue 10), at 64 kbit/s and at 9600 baud ``--low-bandwidth``: ``a``
  instead of ``e``, ``0.2`` typed into I0's minimum (the value the form opens on, selected);
  the same gates, plus the bytes per second while the form stays open (``form_open_Bps``,
  the worst 10-second window of ``hold_s``, gated like the steady state).
- The new views at 64 kbit/s and 9600 baud ``--low-bandwidth``: the I0 histogram (``h``,
  ``i0``, enter: its window drawn on it) and the correlation of the scan motor against I0
  (``c``, ``motor``, enter, enter), each chosen once the data are on screen; the same gates.

"Steady state" is judged on the worst 10-second window in the second half of the live time
(and at least 5 s after the first data reached the screen), until ``e`` is pressed (a median per second would hide the plot repaint every 5 s;
STYLE.md: the budget is a steady state, not an average). Median and mean are reported too.
Whatever the console writes beyond the link's rate queues in the pty ahead of the keystroke, so
the typing time includes the backlog, as it would over SSH.

Baselines measured in the same run: for bytes, what the link delivers from a program that always
has output (``yes``), so ``ratio`` is the share of the link the console takes (the gates are
0.75 and 0.83 of it); for keys, a raw-mode echo program on the same link (the link's own floor).
Per-region B/s (status, ROI rows, plot, form, key bar) are estimated from what pyte saw drawn on
each row, to tell which widget costs the bytes.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import emit
from _pty_link import (
    LINK_64K,
    LINK_9600,
    SHOTWATCH,
    PtyLink,
    Screen,
    box,
    has_data,
    max_window,
    median,
    private_runtime,
    saturate_link,
)

ECHO = ("import os, sys, tty\ntty.setraw(0)\nos.write(1, b'echo ready\\r\\n')\n"
        "while (c := os.read(0, 1)) not in (b'', b'q'):\n    os.write(1, c)\n")
TYPED = "177"
"""What the operator types into x0 (the demo's bragg ROI starts at x0 = 184)."""


@dataclass
class Scenario:
    name: str
    rate: float
    low_bandwidth: bool
    live_s: float
    form_s: float
    budget_bps: float
    key_budget_s: float
    view: str | None = None
    """A key pressed once the first data are on screen (``d``: the detector view)."""
    nudges: int = 0
    """Right-arrow nudges of the ROI after the form test, timed until the screen shows the result."""
    form: str = "e"
    """The form opened and typed into: ``e`` (the ROI form) or ``a`` (the analysis form)."""
    hold_s: float = 0.0
    """Seconds the form stays open after the typed value showed, bytes per second measured."""


def form_open(lines: Screen) -> bool:
    return any(re.search(r"edit bragg:.*\b184\b", line) for line in lines)


def typed_shown(lines: Screen) -> bool:
    return any(re.search(rf"edit bragg:.*\b{TYPED}\b", line) for line in lines)


def form_closed(lines: Screen) -> bool:
    return not any("edit bragg:" in line for line in lines)


TYPED_I0 = "0.2"
"""What the operator types into the analysis form's I0 minimum (the demo's is 0.05)."""


def analysis_open(lines: Screen) -> bool:
    return any(re.search(r"^analysis( \d+/\d+)?  i0 ≥ \[0\.05 ", line) for line in lines)


def analysis_typed(lines: Screen) -> bool:
    return any(re.search(rf"^analysis( \d+/\d+)?  i0 ≥ \[{re.escape(TYPED_I0)} ", line) for line in lines)


def analysis_closed(lines: Screen) -> bool:
    return not any(line.startswith("analysis") for line in lines)


FORMS = {"e": (form_open, TYPED, typed_shown, form_closed),
         "a": (analysis_open, TYPED_I0, analysis_typed, analysis_closed)}
"""Form key -> (is it open, what is typed, is it on screen, is the form closed)."""


def regions(lines: Screen) -> dict[str, range]:
    """Screen rows of each part of the live screen, from its content (see console/live.py)."""
    n = len(lines)
    sel = next((i for i in range(2, n) if lines[i].startswith("▶ ")), 7)
    form = next((i for i in range(sel + 1, n) if re.match(r"^(ROI|edit|new ROI|mark|analysis)", lines[i])), n - 3)
    return {"status": range(0, 2), "rois": range(2, sel + 1), "plot": range(sel + 1, form),
            "form": range(form, form + 1), "keys": range(form + 1, n)}


def key_floor(rate: float) -> float:
    """Seconds from typing to seeing it echoed on the same link with nothing else to send."""
    with PtyLink([sys.executable, "-c", ECHO], rate=rate) as link:
        link.wait_for(lambda ls: "echo ready" in ls[0], 10)
        t = link.send(TYPED)
        seen = link.wait_for(lambda ls: TYPED in "".join(ls), 10)
        link.send("q")
        return (seen - t) if seen else float("nan")


def run(sc: Scenario, tmp: Path) -> dict[str, object]:
    """One scenario; returns what was measured (times in s, rates in B/s)."""
    argv = [SHOTWATCH, "run", "-o", str(tmp / f"{sc.name}.zarr")] + (["--low-bandwidth"] if sc.low_bandwidth else [])
    out: dict[str, object] = {"command": " ".join(argv[1:]), "link_Bps": sc.rate, "view": sc.view}
    with PtyLink(argv, rate=sc.rate, env={"XDG_RUNTIME_DIR": str(private_runtime(tmp))}) as link:
        first = link.wait_for(has_data, sc.live_s)
        out["first_data_s"] = None if first is None else round(first - link.t0, 2)
        if sc.view:
            for key in sc.view.split(" "):  # a view and, for c and h, the values chosen
                link.send(key.replace("ENTER", "\r"))
                time.sleep(0.3)
        steady(sc, link, first, out)
        typing(sc, link, out)
        if sc.nudges:
            nudging(sc, link, out)
        t_q = link.send("q")
        code = link.wait_exit(60.0)
        out["exit_code"] = code
        out["quit_s"] = None if code is None else round(time.monotonic() - t_q, 2)
    return out


def steady(sc: Scenario, link: PtyLink, first: float | None, out: dict[str, object]) -> None:
    """Bytes per second until ``live_s`` after the start, and which screen regions drew them."""
    # Steady state: the second half of the live time, and 5 s after the first data at least,
    # so the start-up paint still draining through a slow link is not counted as steady.
    warm = max(link.t0 + sc.live_s / 2, (first or link.t0) + 5.0)
    rows0 = None
    while time.monotonic() < link.t0 + sc.live_s:
        if rows0 is None and time.monotonic() >= warm:
            rows0 = link.row_bytes()
        time.sleep(0.2)
    t_e = time.monotonic()
    span = max(1e-9, t_e - warm)
    per_sec = link.per_second(warm, t_e)
    out.update(max10_Bps=round(max_window(per_sec, 10)), median_Bps=round(median(per_sec)),
               mean_Bps=round(link.total_bytes(warm, t_e) / span), steady_s=round(span, 1),
               backlog_at_e=link.backlog())
    screen = link.lines()
    out["screen_at_e"] = screen
    if rows0 is not None:
        rows1 = link.row_bytes()
        out["region_Bps"] = {k: round(sum(rows1[i] - rows0[i] for i in r) / span) for k, r in regions(screen).items()}


def typing(sc: Scenario, link: PtyLink, out: dict[str, object]) -> None:
    """``e`` (or ``a``), wait for the form, type into its first field, time until it is on
    screen; keep it open ``hold_s`` (bytes per second); then Esc."""
    is_open, typed, is_typed, is_closed = FORMS[sc.form]
    t_e = link.send(sc.form)
    shown = link.wait_for(is_open, sc.form_s)
    out["form_s"] = None if shown is None else round(shown - t_e, 2)
    out["form_bytes"] = link.total_bytes(t_e, shown or time.monotonic())
    if shown is None:
        return
    t_k = link.send(typed)
    seen = link.wait_for(is_typed, 60.0)  # measured past the budget, to say by how much
    out["typed_s"] = None if seen is None else round(seen - t_k, 2)
    if seen is not None and sc.hold_s:
        time.sleep(sc.hold_s)
        t_h = time.monotonic()
        per_sec = link.per_second(seen, t_h)
        out.update(form_open_max10_Bps=round(max_window(per_sec, 10)), form_open_mean_Bps=round(
            link.total_bytes(seen, t_h) / max(1e-9, t_h - seen)), hold_s=sc.hold_s)
    link.send("\x1b")
    link.wait_for(is_closed, 30.0)


def nudging(sc: Scenario, link: PtyLink, out: dict[str, object]) -> None:
    """Tap right-arrow ``nudges`` times (0.3 s apart): seconds from the last tap until the
    screen shows the rectangle the recorder applied, and the bytes that cost."""
    time.sleep(2.0)  # let the Esc repaint pass
    x0 = 184 + sc.nudges
    want = re.compile(rf"▶ bragg on .*x \[{x0}, {x0 + 32}\)")
    t_first = time.monotonic()
    for _ in range(sc.nudges):
        t_last = link.send("\x1b[C")
        time.sleep(0.3)
    done = link.wait_for(lambda ls: any(want.search(x) and "requested" not in x for x in ls), 60.0)
    out["nudge_s"] = None if done is None else round(done - t_last, 2)
    out["nudge_bytes"] = link.total_bytes(t_first, done or time.monotonic())


def report(sc: Scenario, m: dict[str, object], link_bps: float, floor_s: float) -> None:
    bps = float(m["max10_Bps"])  # type: ignore[arg-type]
    extra = {k: v for k, v in m.items() if k not in ("screen_at_e", "nudge_s", "nudge_bytes")}
    emit(f"console_bytes_{sc.name}", "max_10s_window_Bps", bps, "B/s", baseline=f"link delivery ({sc.rate:g} B/s "
         "nominal) measured with `yes`", baseline_value=link_bps, gate=f"<= {sc.budget_bps:g}",
         ok=bps <= sc.budget_bps and m["first_data_s"] is not None, **extra, **box())
    typed = m.get("typed_s")
    ok = typed is not None and float(typed) <= sc.key_budget_s and m.get("form_s") is not None  # type: ignore[arg-type]
    held = {k: m[k] for k in ("form_open_max10_Bps", "form_open_mean_Bps", "hold_s") if k in m}
    if "form_open_max10_Bps" in held:  # the form open is a steady state too
        ok = ok and float(held["form_open_max10_Bps"]) <= sc.budget_bps  # type: ignore[arg-type]
    emit(f"console_typing_{sc.name}", "typed_to_screen_s", float("nan") if typed is None else float(typed),  # type: ignore[arg-type]
         "s", baseline="raw-mode echo program on the same link", baseline_value=floor_s,
         gate=f"<= {sc.key_budget_s:g} s (form allowed {sc.form_s:g} s)"
              + (f"; form open <= {sc.budget_bps:g} B/s" if held else ""), ok=ok,
         form=sc.form, form_s=m.get("form_s"), form_bytes=m.get("form_bytes"), exit_code=m.get("exit_code"),
         **held, **box())
    if sc.nudges:
        nudge = m.get("nudge_s")
        emit(f"console_nudge_{sc.name}", "last_nudge_to_screen_s", float("nan") if nudge is None else float(nudge),  # type: ignore[arg-type]
             "s", baseline="raw-mode echo program on the same link", baseline_value=floor_s,
             gate=f"report only (the typing budget, {sc.key_budget_s:g} s, for reference)", ok=None,
             nudges=sc.nudges, nudge_bytes=m.get("nudge_bytes"), **box())


SCENARIOS = [
    Scenario("64k", LINK_64K, False, 30.0, 8.0, 6000.0, 1.5),
    Scenario("9600_low", LINK_9600, True, 60.0, 20.0, 800.0, 2.5),
    # Where the operator nudges ROIs with the arrows (they only work in this view).
    Scenario("64k_detector", LINK_64K, False, 30.0, 8.0, 6000.0, 1.5, view="d", nudges=3),
    # The analysis form (issue 10): typed into, then held open to measure its steady state.
    Scenario("64k_analysis", LINK_64K, False, 30.0, 8.0, 6000.0, 1.5, form="a", hold_s=12.0),
    Scenario("9600_low_analysis", LINK_9600, True, 60.0, 20.0, 800.0, 2.5, form="a", hold_s=12.0),
    # The new views: I0's histogram with its window, the scan motor against I0.
    Scenario("64k_hist", LINK_64K, False, 30.0, 8.0, 6000.0, 1.5, view="h i0 ENTER"),
    Scenario("64k_corr", LINK_64K, False, 30.0, 8.0, 6000.0, 1.5, view="c motor ENTER ENTER"),
    # 90 s: at 9600 baud the start-up paint drains until ~30 s, and choosing the view adds to it.
    Scenario("9600_low_hist", LINK_9600, True, 90.0, 20.0, 800.0, 2.5, view="h i0 ENTER"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=[sc.name for sc in SCENARIOS], help="one scenario")
    ap.add_argument("--show", action="store_true", help="print the rendered screen at `e` to stderr")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bw-") as tmp:
        for sc in SCENARIOS:
            if args.only and sc.name != args.only:
                continue
            link_bps = saturate_link(sc.rate, 5.0)
            floor_s = key_floor(sc.rate)
            m = run(sc, Path(tmp))
            if args.show:
                print("\n".join(str(x).rstrip() for x in m["screen_at_e"]), file=sys.stderr)  # type: ignore[attr-defined]
            report(sc, m, link_bps, floor_s)


if __name__ == "__main__":
    main()
