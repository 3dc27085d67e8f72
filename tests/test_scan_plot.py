"""The console's scan view: norm ± sem_norm, on−off with its error bars, empty bins as gaps.

The trend view names its estimator (a per-block mean of ratios, not norm).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from shotwatch.console.model import Series, Snapshot
from shotwatch.console.plots import render_view


def snapshot(norm: list[float | None], sem_norm: list[float | None], *, pump_probe: bool = False) -> Snapshot:
    n = len(norm)
    per: dict[str, Any] = {"count": [3] * n, "norm": norm, "sem": [None] * n, "sem_norm": sem_norm}
    if pump_probe:
        off = [None if x is None else x / 4 for x in norm]
        per["on"] = dict(per)
        per["off"] = {"count": [3] * n, "norm": off, "sem": [None] * n, "sem_norm": sem_norm}
        per["diff"], per["diff_sem"] = [None if x is None else 3 * x / 4 for x in norm], sem_norm
    scan = {"name": "delay", "unit": "ps", "centers": [float(x) for x in range(n)], "outside": 0, "rois": {"r": per}}
    return Snapshot(summary={"scan": scan}, result_keys={"r": "r"})


def row_at(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(label))


def test_empty_bins_are_gaps_not_lines() -> None:
    gap = render_view("scan", snapshot([1.0, None, None, 1.0, 1.0], [None] * 5), "r", width=60, height=16)
    full = render_view("scan", snapshot([1.0] * 5, [None] * 5), "r", width=60, height=16)
    assert re.search("● +●", row_at(gap, "1.0")), gap  # nothing drawn across the empty bins
    assert not re.search("● +●", row_at(full, "1.0")), full
    assert "norm vs scan (bars ± sem_norm)" in gap


def test_error_bars_are_sem_norm_and_on_minus_off_has_its_own() -> None:
    without = render_view("scan", snapshot([1.0, 2.0, 1.5], [None] * 3), "r", width=60, height=16)
    with_bars = render_view("scan", snapshot([1.0, 2.0, 1.5], [0.2, 0.3, None]), "r", width=60, height=16)
    assert "┼" not in without and with_bars.count("┼") == 2  # one bar per bin that has a sem_norm
    pp = render_view("scan", snapshot([4.0, 8.0, 6.0], [0.2, 0.3, None], pump_probe=True), "r", width=80, height=30)
    assert "on−off" in pp and pp.count("┼") == 6  # on, off and on−off: two bars each


def test_trend_names_its_estimator() -> None:
    series = Series(values=np.empty(0), trend_tags=np.array([2, 4, 6]), trend_mean=np.array([1.0, 1.2, 1.1]))
    snap = Snapshot(series={"r": series}, trend_quantity="ratio")
    assert "r mean_ratio (mean of value/I0) per block vs tag" in render_view("trend", snap, "r", width=70, height=16)
    snap = Snapshot(series={"r": series}, trend_quantity="value")
    assert "r mean value per block vs tag" in render_view("trend", snap, "r", width=70, height=16)
