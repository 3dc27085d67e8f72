"""Histograms of I0 and ROI values for the live console, with fixed edges per series.

Series: ``"i0"`` over every shot with a finite I0 (so the I0 window can be judged), each
roi key's value over the accepted shots with a finite value, and every named value (points,
aliases, channels, keyed ``named:<name>``) over every shot where it is finite (so a veto's
bounds can be judged the same way).

Edges: given per series, or chosen automatically from the first block that has data for the
series: ``bins`` equal bins over the 0.5–99.5 percentile range widened by a quarter of that
span on each side (a single value v gets [v − max(|v|/2, 0.5), v + max(|v|/2, 0.5)]). Values
outside fall into ``under``/``over``. Edges never move afterwards; ``reset`` zeroes counts
and keeps edges. Merging states with the same edges is exact and associative; when two states
picked different automatic edges, the right-hand counts are re-binned by bin centre into the
left-hand edges (approximate; start parallel workers from one ``reset`` state to avoid it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..schemas import RoiVersion, ShotBlock
from .analysis import Analysis, ShotTable, display_keys, shot_table
from .channels import named_points
from .live import NAMED

__all__ = ["HistSeries", "Histogram"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class HistSeries:
    """One series: ``counts[j]`` holds edges[j] <= v < edges[j+1] (last bin closed)."""

    edges: F64
    counts: npt.NDArray[np.int64]
    under: int = 0
    over: int = 0

    @classmethod
    def of(cls, edges: F64, values: F64) -> HistSeries:
        counts, _ = np.histogram(values, bins=edges)
        return cls(edges, counts.astype(np.int64), int(np.count_nonzero(values < edges[0])),
                   int(np.count_nonzero(values > edges[-1])))

    def merge(self, other: HistSeries) -> HistSeries:
        """Both states together (associative)."""
        if np.array_equal(self.edges, other.edges):
            return HistSeries(self.edges, self.counts + other.counts, self.under + other.under,
                              self.over + other.over)
        centres = (other.edges[:-1] + other.edges[1:]) / 2
        moved = HistSeries.of(self.edges, np.repeat(centres, other.counts))
        return HistSeries(self.edges, self.counts + moved.counts, self.under + other.under + moved.under,
                          self.over + other.over + moved.over)

    def reset(self) -> HistSeries:
        return HistSeries(self.edges, np.zeros_like(self.counts))


def auto_edges(values: F64, bins: int) -> F64:
    """Automatic edges from the first data (see the module docstring)."""
    lo, hi = (float(x) for x in np.percentile(values, [0.5, 99.5]))
    if hi > lo:
        pad = (hi - lo) / 4
        lo, hi = lo - pad, hi + pad
    else:
        pad = max(abs(lo) / 2, 0.5)
        lo, hi = lo - pad, hi + pad
    return np.linspace(lo, hi, bins + 1)


class Histogram:
    """Counts per series over fixed edges (module docstring).

    Args:
        analysis: what to compute.
        bins: bins per automatic series.
        edges: series (``"i0"``, a roi key ``name/vK``, or a named value by its name) -> fixed edges.
    """

    def __init__(self, analysis: Analysis, *, bins: int = 64,
                 edges: Mapping[str, npt.ArrayLike] | None = None) -> None:
        self.analysis, self.bins = analysis, bins
        self.edges = {k: np.asarray(v, np.float64) for k, v in (edges or {}).items()}

    def init(self) -> dict[str, HistSeries]:
        """No data."""
        return {}

    def reset(self, state: dict[str, HistSeries]) -> dict[str, HistSeries]:
        """Same edges, no counts."""
        return {k: s.reset() for k, s in state.items()}

    def update(self, state: dict[str, HistSeries], block: ShotBlock, *, table: ShotTable | None = None,
               versions: Mapping[str, RoiVersion] | None = None) -> dict[str, HistSeries]:
        """``state`` plus ``block`` (``table``: its shot table, if already computed; else
        ``versions`` as :func:`shot_table` takes them)."""
        t = shot_table(block, self.analysis, versions or {}) if table is None else table
        series = {"i0": t.i0[np.isfinite(t.i0)]}
        for key, v in t.values.items():
            series[key] = v[t.accepted & np.isfinite(v)]
        for name, v in named_points(self.analysis, block, t.channels).items():
            v = np.asarray(v, np.float64)
            series[NAMED + name] = v[np.isfinite(v)]
        fresh = {}
        for name, values in series.items():
            if not values.size:
                continue
            old = state.get(name)
            edges = old.edges if old is not None else self.edges.get(name, self.edges.get(name.removeprefix(NAMED)))
            fresh[name] = HistSeries.of(edges if edges is not None else auto_edges(values, self.bins), values)
        return self.merge(state, fresh)

    def merge(self, a: dict[str, HistSeries], b: dict[str, HistSeries]) -> dict[str, HistSeries]:
        """Both states together (associative)."""
        out = dict(a)
        for name, s in b.items():
            out[name] = out[name].merge(s) if name in out else s
        return out

    def series(self, state: dict[str, HistSeries], name: str) -> HistSeries | None:
        """One series (``"i0"``, a roi key ``name/vK``, or a point, alias or channel by its
        name), None if it has no data yet."""
        return state.get(name, state.get(NAMED + name))

    def result(self, state: dict[str, HistSeries]) -> dict[str, dict[str, Any]]:
        """``{series: {"edges", "counts", "under", "over"}}``, roi keys named as in the summary,
        named values by their name."""
        rois = [k for k, s in state.items() if k != "i0" and not k.startswith(NAMED) and s.counts.sum() + s.under + s.over]
        shown = display_keys(rois)
        out: dict[str, dict[str, Any]] = {}
        for name, s in state.items():
            label = "i0" if name == "i0" else name.removeprefix(NAMED) if name.startswith(NAMED) else shown.get(name)
            if label is not None:
                out[label] = {"edges": s.edges, "counts": s.counts, "under": s.under, "over": s.over}
        return out
