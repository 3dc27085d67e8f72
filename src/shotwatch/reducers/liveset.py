"""The console's reducers as one set: what a console shows, and what a recomputation sends it.

A console reduces every block into five states (``summary``, ``window``, ``corr``, ``hist``,
``trend``); after an analysis change the recorder reduces the recording's shots ``[0, B)``
into the same five, under the same sizes, and sends them (``StateMsg``); the console merges
them with its own. :class:`LiveSet` is that one definition, used on both sides, so the
states always fit together. Pure numpy, like every reducer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..schemas import RoiVersion, ShotBlock
from .analysis import Analysis, ShotTable, shot_table
from .codec import decode_state, encode_state
from .hist import Histogram, HistSeries
from .live import Correlation, RollingWindow, Tagged, Trend
from .summary import SummaryReducer, SummaryState

__all__ = ["HIST_BINS", "TREND_BLOCKS", "WINDOW_SHOTS", "LiveSet", "LiveStates"]

WINDOW_SHOTS = 2000
"""Shots kept for sparklines, the correlation plot and the histogram's recent data: half a
minute at 60 Hz, enough to judge an I0 window."""
HIST_BINS = 40
"""Histogram bins: fits an 80-column plot with a readable bar per bin."""
TREND_BLOCKS = 500
"""Blocks kept for the trend plot (one point per block: ~2 min of 0.25 s blocks)."""


@dataclass(frozen=True)
class LiveStates:
    """The five states of a :class:`LiveSet` (immutable, like each of them)."""

    summary: SummaryState
    window: Tagged
    corr: dict[str, Tagged]
    hist: dict[str, HistSeries]
    trend: Tagged


class LiveSet:
    """The console's reducers over one analysis.

    Args:
        analysis: what to compute.
        window: shots kept by the rolling window and the correlation samples.
        hist_bins: bins of each automatic histogram series.
        trend: blocks kept by the trend.
    """

    def __init__(self, analysis: Analysis, *, window: int = WINDOW_SHOTS, hist_bins: int = HIST_BINS,
                 trend: int = TREND_BLOCKS) -> None:
        self.analysis = analysis
        self.summary = SummaryReducer(analysis)
        self.window = RollingWindow(analysis, size=window)
        self.corr = Correlation(analysis, size=window)
        self.hist = Histogram(analysis, bins=hist_bins)
        self.trend = Trend(analysis, size=trend)

    def init(self) -> LiveStates:
        """No data."""
        return LiveStates(self.summary.init(), self.window.init(), self.corr.init(), self.hist.init(),
                          self.trend.init())

    def update(self, states: LiveStates, block: ShotBlock, *, table: ShotTable | None = None,
               versions: Mapping[str, RoiVersion] | None = None) -> LiveStates:
        """``states`` plus ``block``; its shot table computed once for all five (or ``table``)."""
        t = shot_table(block, self.analysis, versions or {}) if table is None else table
        return LiveStates(self.summary.update(states.summary, block, table=t),
                          self.window.update(states.window, block, table=t),
                          self.corr.update(states.corr, block, table=t),
                          self.hist.update(states.hist, block, table=t),
                          self.trend.update(states.trend, block, table=t))

    def update_summary(self, states: LiveStates, block: ShotBlock, *, table: ShotTable | None = None,
                       versions: Mapping[str, RoiVersion] | None = None) -> LiveStates:
        """``states`` plus ``block`` in the summary only: for shots that the newer shots of a
        recomputation push out of every window anyway (the histogram counts every shot, so it
        is updated too)."""
        t = shot_table(block, self.analysis, versions or {}) if table is None else table
        return LiveStates(self.summary.update(states.summary, block, table=t), states.window, states.corr,
                          self.hist.update(states.hist, block, table=t), states.trend)

    def merge(self, a: LiveStates, b: LiveStates) -> LiveStates:
        """Both sets of states together, ``a``'s shots before ``b``'s (associative)."""
        return LiveStates(self.summary.merge(a.summary, b.summary), self.window.merge(a.window, b.window),
                          self.corr.merge(a.corr, b.corr), self.hist.merge(a.hist, b.hist),
                          self.trend.merge(a.trend, b.trend))

    def encode(self, states: LiveStates) -> dict[str, Any]:
        """name -> tree of each state (``reducers.codec``): what a StateMsg carries."""
        return {"summary": encode_state(self.summary, states.summary),
                "window": encode_state(self.window, states.window),
                "corr": encode_state(self.corr, states.corr),
                "hist": encode_state(self.hist, states.hist),
                "trend": encode_state(self.trend, states.trend)}

    def decode(self, trees: Mapping[str, Any]) -> LiveStates:
        """The states :meth:`encode` wrote, each checked against its reducer.

        Raises:
            ValueError: a state missing, extra or malformed (the message names it).
        """
        names = ("summary", "window", "corr", "hist", "trend")
        if set(trees) != set(names):
            raise ValueError(f"states: expected {', '.join(names)}, found {', '.join(sorted(map(str, trees)))}")
        return LiveStates(decode_state(self.summary, trees["summary"]), decode_state(self.window, trees["window"]),
                          decode_state(self.corr, trees["corr"]), decode_state(self.hist, trees["hist"]),
                          decode_state(self.trend, trees["trend"]))
