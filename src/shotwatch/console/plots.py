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
from .views import Choice, bounds, corr_pair, hist_name, pair

__all__ = ["VIEWS", "render_view"]

VIEWS = {"1": "scan", "2": "correlation", "3": "histogram", "4": "trend"}
"""Key -> plot view name."""
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MARKERS = ("●", "○", "×")


def render_view(view: str, snap: Snapshot, roi: str | None, *, width: int, height: int,
                choice: Choice | None = None) -> str:
    """One view as plain text of at most ``width`` x ``height`` cells.

    Args:
        view: "scan", "correlation", "histogram" or "trend".
        snap: the model snapshot.
        roi: the selected ROI name (None: no ROI yet).
        width, height: the plot area in cells.
        choice: the values ``c`` and ``h`` chose (default: the selected ROI's).
    """
    chosen = choice is not None and (view == "correlation" and choice.corr or view == "histogram" and choice.hist)
    if roi is None and not chosen:
        return "no ROI defined — press n to add one"
    if width < 20 or height < 5:
        return ""  # too small to say anything useful; the numbers above still do
    fig = _figure(width, height)
    footer = _bin_counts(snap, roi, width) if view == "scan" and roi is not None else ""
    if footer:
        fig.plot_size(width, height - 1)
    if view == "correlation":
        empty = _corr(fig, snap, corr_pair(snap, choice, roi))
    elif view == "histogram":
        empty = _hist(fig, snap, hist_name(snap, choice, roi))
    else:
        assert roi is not None
        empty = {"scan": _scan, "trend": _trend}[view](fig, snap, roi)
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


def _corr(fig: Any, snap: Snapshot, names: tuple[str, str] | None) -> str:
    """y against x over the last shots of the window (``c`` chooses them)."""
    p = pair(snap, *names) if names else None
    if p is None or not len(p.xs):
        x, y = names or ("?", "?")
        return f"{y} vs {x}: no shot with both values yet — c chooses others"
    acc = p.accepted
    # vetoed shots stay on the plot (small dots) so the I0 window can be judged against them
    for mask, label, marker in ((acc, "accepted", "•"), (~acc, "vetoed", "·")):
        if mask.any():
            _signal(fig, p.xs[mask], p.ys[mask], f"{label} ({int(mask.sum())})", marker, lines=False)
    fig.label(_short(p.x), axis="x")
    fig.title(f"{_short(p.y)} vs {_short(p.x)} (last {len(p.xs)} shots with both)")
    return ""


def _hist(fig: Any, snap: Snapshot, name: str | None) -> str:
    """The value's histogram since reset, with the accepted window(s) on it (``h`` chooses)."""
    ser = snap.hists.get(name) if name else None
    if name is None or ser is None or not ser.counts.sum():
        return f"{name}: no shot with a value yet — h chooses another"
    centers = (ser.edges[:-1] + ser.edges[1:]) / 2
    fig.draw(fig.bar(list(centers), list(ser.counts.astype(float))))  # plotext draws what is drawn, only
    lo, hi = float(ser.edges[0]), float(ser.edges[-1])
    windows = bounds(snap.config, name)
    for b in windows:  # a bound off the histogram's range would only squash the bars
        for x in (b.lo, b.hi):
            if x is not None and lo <= x <= hi:
                fig.line(x, orientation="v")
    total = int(ser.counts.sum()) + ser.under + ser.over
    what = "accepted shots" if name in {v.name for v in snap.rois} else "shots"
    title = f"{_short(name)} histogram: {total} {what} since reset"
    if ser.under or ser.over:
        title += f" (outside: {ser.under} below, {ser.over} above)"
    if windows:
        title += " · " + ", ".join(w.text() for w in windows)
    fig.title(title)
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
