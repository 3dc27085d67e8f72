"""What the correlation and histogram views show, and their one-line text forms: pure.

Values are named as the operator knows them (``Snapshot.named``: I0, ROI names, channels,
aliases, points). By default the correlation is the selected ROI against I0 and the histogram
the selected ROI's; ``c`` and ``h`` choose any value instead (:class:`Choice`). The accepted
window a value is judged by is I0's window, or the bounds of a veto on that value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..reducers.hist import HistSeries
from ..schemas import Config
from .format import BARS, fmt_num
from .model import Snapshot
from .tuning import NAMED_I0

__all__ = ["Bounds", "Choice", "Pair", "bounds", "corr_line", "corr_pair", "hist_line", "hist_name", "pair",
           "view_line"]

F64 = npt.NDArray[np.float64]


@dataclass
class Choice:
    """What the correlation and histogram views show (None: follow the selected ROI)."""

    corr: tuple[str, str] | None = None
    """(x, y) value names."""
    hist: str | None = None
    """The value name."""


@dataclass(frozen=True)
class Pair:
    """The shots of the window where both values are finite."""

    x: str
    y: str
    xs: F64
    ys: F64
    accepted: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Bounds:
    """An accepted window on a value: I0's, or a veto's (None = no bound on that side)."""

    label: str
    lo: float | None
    hi: float | None

    def text(self) -> str:
        lo = "-∞" if self.lo is None else fmt_num(self.lo)
        hi = "∞" if self.hi is None else fmt_num(self.hi)
        return f"{self.label} [{lo}, {hi}]"

    def inside(self, values: F64) -> int:
        ok = np.isfinite(values)
        if self.lo is not None:
            ok &= values >= self.lo
        if self.hi is not None:
            ok &= values <= self.hi
        return int(np.count_nonzero(ok))


def corr_pair(snap: Snapshot, choice: Choice | None, selected: str | None) -> tuple[str, str] | None:
    """(x, y) names: the chosen pair, else the selected ROI against I0 (or None)."""
    if choice is not None and choice.corr is not None:
        return choice.corr
    if selected is None:
        return None
    return (NAMED_I0 if NAMED_I0 in snap.named else "tag", selected)


def pair(snap: Snapshot, x: str, y: str) -> Pair | None:
    """The finite (x, y) samples of the window; ``tag`` stands for the shot's tag; None if a
    value is unknown."""
    xs = snap.tags.astype(np.float64) if x == "tag" else snap.named.get(x)
    ys = snap.named.get(y)
    if xs is None or ys is None or len(xs) != len(ys):
        return None
    ok = np.isfinite(xs) & np.isfinite(ys)
    acc = snap.accepted if len(snap.accepted) == len(ok) else np.ones(len(ok), bool)
    return Pair(x, y, xs[ok], ys[ok], acc[ok])


def hist_name(snap: Snapshot, choice: Choice | None, selected: str | None) -> str | None:
    """The value the histogram shows: the chosen one, else the selected ROI."""
    if choice is not None and choice.hist is not None:
        return choice.hist
    return selected


def bounds(cfg: Config | None, name: str) -> list[Bounds]:
    """The accepted windows that judge value ``name`` (I0's, vetoes on it or on its alias)."""
    if cfg is None:
        return []
    point = cfg.alias.get(name, name)
    out = []
    if cfg.i0 is not None and (name == NAMED_I0 or cfg.alias.get(cfg.i0.name, cfg.i0.name) == point):
        out.append(Bounds("I0 window", cfg.i0.min, cfg.i0.max))
    for v in cfg.veto:
        if cfg.alias.get(v.name, v.name) == point and (v.min is not None or v.max is not None):
            out.append(Bounds("veto", v.min, v.max))
    return out


def corr_line(p: Pair | None, width: int) -> str:
    """``y vs x: n 1843 (accepted 1700) · r 0.93 · slope 1.2e3`` (the --low-bandwidth view)."""
    if p is None:
        return "correlation: a value is not known — c chooses"
    n = len(p.xs)
    head = f"{p.y} vs {p.x}: n {n} (accepted {int(p.accepted.sum())})"
    if n >= 2 and np.ptp(p.xs) > 0 and np.ptp(p.ys) > 0:
        r = float(np.corrcoef(p.xs, p.ys)[0, 1])
        slope = float(np.polyfit(p.xs, p.ys, 1)[0])
        head += f" · r {r:.3f} · slope {fmt_num(slope)}"
    return _cut(head, width)


def hist_line(name: str, series: HistSeries | None, windows: list[Bounds], width: int) -> str:
    """``I0 ▁▂▅█│▇▃▁ 0.01…0.4 · I0 window [0.05, ∞]: 1843 of 2000`` with ``│`` at each bound
    (the --low-bandwidth view)."""
    if series is None or not int(series.counts.sum()) + series.under + series.over:
        return f"{name}: no value yet — h chooses another"
    counts, edges = series.counts, series.edges
    total = int(counts.sum()) + series.under + series.over
    tail = f" {fmt_num(float(edges[0]))}…{fmt_num(float(edges[-1]))}"
    if series.under or series.over:
        tail += f" (under {series.under}, over {series.over})"
    for b in windows:
        tail += f" · {b.text()}: {_inside(series, b)} of {total}"
    bars = _bars(counts, edges, windows, max(8, min(len(counts) + 2, width - len(name) - len(tail) - 2)))
    return _cut(f"{name} {bars}{tail}", width)


def _inside(series: HistSeries, b: Bounds) -> int:
    """Shots whose bin centre lies in the window (plus under/over when that side is open)."""
    centres = (series.edges[:-1] + series.edges[1:]) / 2
    lo = -math.inf if b.lo is None else b.lo
    hi = math.inf if b.hi is None else b.hi
    n = int(series.counts[(centres >= lo) & (centres <= hi)].sum())
    return n + (series.under if b.lo is None else 0) + (series.over if b.hi is None else 0)


def _bars(counts: npt.NDArray[np.int64], edges: F64, windows: list[Bounds], room: int) -> str:
    top = max(1, int(counts.max()))
    glyphs = [BARS[int(c * (len(BARS) - 1) / top)] if c else " " for c in counts]  # empty bins blank
    marks = sorted({int(np.searchsorted(edges, x)) for b in windows for x in (b.lo, b.hi)
                    if x is not None and edges[0] < x < edges[-1]}, reverse=True)
    for m in marks:  # a bound between bins j-1 and j
        glyphs.insert(m, "│")
    return "".join(glyphs)[:room]


def view_line(view: str, snap: Snapshot, selected: str | None, choice: Choice | None, *, width: int) -> str:
    """The --low-bandwidth text of the correlation or histogram view."""
    if view == "correlation":
        names = corr_pair(snap, choice, selected)
        return corr_line(pair(snap, *names) if names else None, width)
    name = hist_name(snap, choice, selected)
    if name is None:
        return "histogram: no value — h chooses"
    return hist_line(name, snap.hists.get(name), bounds(snap.config, name), width)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
