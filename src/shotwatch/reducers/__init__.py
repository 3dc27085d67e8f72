"""Reducers: pure numpy, mergeable reductions of ShotBlocks (no I/O, clocks or logging).

Every reducer is ``init() -> state``, ``update(state, block) -> state``, ``merge(a, b) ->
state``, ``result(state)``; states are immutable values. ``update`` also takes
``table=shot_table(block, analysis, versions)`` so a caller feeding several reducers computes
the per-shot table (the expensive ROI sums) once per block; ``Analysis.from_config`` is the
one place an analysis is built.
"""

from __future__ import annotations

from .analysis import Analysis, ShotTable, display_keys, roi_versions, shot_table, shot_table_with
from .codec import decode_state, encode_state
from .hist import Histogram
from .live import Correlation, RollingWindow, Trend
from .liveset import LiveSet, LiveStates
from .summary import SummaryReducer
from .tables import format_table, per_shot_csv, scan_csv

__all__ = [
    "Analysis", "Correlation", "Histogram", "LiveSet", "LiveStates", "RollingWindow", "ShotTable",
    "SummaryReducer", "Trend", "decode_state", "display_keys", "encode_state", "format_table", "per_shot_csv",
    "roi_versions", "scan_csv", "shot_table", "shot_table_with",
]
