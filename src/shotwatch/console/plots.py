"""The plot area's four views, drawn with plotext as uncoloured text (pure: data in, str out).

Plots are monochrome on purpose: every colour change costs ~20 bytes on the wire, and a
plot repainted in colour over SSH would cost more than all the numbers on the screen. Only
the UI thread calls these (plotext keeps one global figure).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotext as plt

from .model import Snapshot

__all__ = ["VIEWS", "render_view"]

VIEWS = {"1": "scan", "2": "correlation", "3": "histogram", "4": "trend"}
"""Key -> plot view name."""
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MARKERS = ("●", "○", "×")


def render_view(view: str, snap: Snapshot, roi: str | None, *, width: int, height: int) -> str:
    """One view of the selected ROI as plain text of at most ``width`` x ``height`` cells.

    Args:
        view: "scan", "correlation", "histogram" or "trend".
        snap: the model snapshot.
        roi: the selected ROI name (None: no ROI yet).
        width, height: the plot area in cells.
    """
    if roi is None:
        return "no ROI defined — press n to add one"
    if width < 20 or height < 5:
        return ""  # too small to say anything useful; the numbers above still do
    fig = _figure(width, height)
    drawer = {"scan": _scan, "correlation": _corr, "histogram": _hist, "trend": _trend}[view]
    footer = _bin_counts(snap, roi, width) if view == "scan" else ""
    if footer:
        fig.plot_size(width, height - 1)
    empty = drawer(fig, snap, roi)
    if empty:
        return empty
    return _ANSI.sub("", str(fig.build())).rstrip("\n") + footer


def _bin_counts(snap: Snapshot, roi: str, width: int) -> str:
    """One line under the scan plot: accepted shots per bin (the plot cannot show counts)."""
    scan = snap.summary.get("scan") if snap.summary else None
    if not scan:
        return ""
    per = scan["rois"].get(snap.result_keys.get(roi, ""))
    if per is None:
        return ""
    counts = " ".join(str(c) for c in per["count"])
    line = f"shots per bin: {counts}  (outside {scan['outside']})"
    return "\n" + (line if len(line) <= width else line[: width - 1] + "…")


def _figure(width: int, height: int) -> Any:
    fig = plt.figure
    fig.clear()
    fig.plot_size(width, height)
    fig.theme("colorless")
    return fig


def _signal(fig: Any, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, label: str, marker: str, *, lines: bool) -> None:
    sig = fig.signal(list(x), list(y), marker=marker)
    if label:
        sig.label(label)
    sig.lines(lines)
    fig.draw(sig)


def _scan(fig: Any, snap: Snapshot, roi: str) -> str:
    scan = snap.summary.get("scan") if snap.summary else None
    key = snap.result_keys.get(roi)
    if not scan or key is None:
        return "no [scan] configured — views 2–4 still work" if not scan else f"{roi}: no shots yet"
    per = scan["rois"].get(key)
    if per is None:
        return f"{roi}: no accepted shots in any bin yet"
    centers = np.asarray(scan["centers"], np.float64)
    series: list[tuple[str, Mapping[str, Any]]] = [("all", per)]
    if "on" in per:
        series = [("on", per["on"]), ("off", per["off"])]
    drawn = False
    for (label, s), marker in zip(series, _MARKERS, strict=False):
        n = int(np.nansum(_arr(s["count"])))
        drawn |= _binned(fig, centers, _arr(s["norm"]), _arr(s["sem_norm"]), f"{label} (n={n})", marker)
    if "on" in per:
        drawn |= _binned(fig, centers, _arr(per["diff"]), _arr(per["diff_sem"]), "on−off", "×")
    fig.label(f"{_short(scan['name'])} ({scan['unit']})" if scan["unit"] else _short(scan["name"]), axis="x")
    fig.title(f"{roi} norm vs scan (bars ± sem_norm)")
    return "" if drawn else f"{roi}: no bin has a value yet"


def _binned(fig: Any, centers: np.ndarray, y: np.ndarray, err: np.ndarray, label: str, marker: str) -> bool:
    """``y ± err`` per bin; a bin without a value is a gap in the line, never bridged."""
    ok = np.isfinite(y)
    if not ok.any():
        return False
    for i, run in enumerate(_runs(ok)):
        _signal(fig, centers[run], y[run], label if i == 0 else "", marker, lines=len(run) > 1)
    bars = ok & np.isfinite(err)
    if bars.any():  # plotext's error bar spans yerr in all: 2·err is ± err
        fig.draw(fig.error(list(centers[bars]), list(y[bars]), list(2 * err[bars])))
    return True


def _runs(ok: np.ndarray) -> list[np.ndarray]:
    """Indices of each run of consecutive true entries."""
    idx = np.flatnonzero(ok)
    return [r for r in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1) if r.size]


def _arr(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _corr(fig: Any, snap: Snapshot, roi: str) -> str:
    ser = snap.series.get(roi)
    if ser is None or not len(ser.corr_value):
        return f"{roi} vs I0: no shot with both values yet"
    acc = ser.corr_accepted
    # vetoed shots stay on the plot (small dots) so the I0 window can be judged against them
    for mask, label, marker in ((acc, "accepted", "•"), (~acc, "vetoed", "·")):
        if mask.any():
            _signal(fig, ser.corr_i0[mask], ser.corr_value[mask], f"{label} ({int(mask.sum())})", marker, lines=False)
    fig.label("I0", axis="x")
    fig.title(f"{roi} vs I0 (last {len(ser.corr_value)} shots)")
    return ""


def _hist(fig: Any, snap: Snapshot, roi: str) -> str:
    ser = snap.series.get(roi)
    if ser is None or not ser.hist_counts.sum():
        return f"{roi}: no accepted shot with a value yet"
    centers = (ser.hist_edges[:-1] + ser.hist_edges[1:]) / 2
    fig.bar(list(centers), list(ser.hist_counts.astype(float)))
    fig.title(f"{roi} histogram, accepted shots since reset ({int(ser.hist_counts.sum())} in range)")
    return ""


def _trend(fig: Any, snap: Snapshot, roi: str) -> str:
    ser = snap.series.get(roi)
    ok = np.isfinite(ser.trend_mean) if ser is not None else np.empty(0, bool)
    if ser is None or not ok.any():
        return f"{roi}: no accepted shot with a value yet"
    # the estimator by name: a per-block mean of ratios, not norm (Σ value / Σ I0) as in the scan view
    what = "mean_ratio (mean of value/I0)" if snap.trend_quantity == "ratio" else "mean value"
    _signal(fig, ser.trend_tags[ok].astype(np.float64), ser.trend_mean[ok], what.split(" (")[0], "•", lines=True)
    fig.label("tag", axis="x")
    fig.title(f"{roi} {what} per block vs tag")
    return ""


def _short(name: str) -> str:
    """A long facility name keeps its informative end: ``…motor_user_1/position``."""
    return name if len(name) <= 28 else "…" + name[-27:]
