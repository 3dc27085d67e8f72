"""Shared helpers for benchmarks: JSON result lines, medians, the demo config variants.

Every benchmark prints one JSON object per line: ``{"bench", "metric", "value", "unit",
"baseline", "baseline_value", "ratio", "gate", "ok"}``; ``ratio`` = value / baseline_value
measured in the same run (these machines are noisy: compare ratios and medians).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from shotwatch.schemas import demo_text


def emit(bench: str, metric: str, value: float, unit: str, *, baseline: str | None = None,
         baseline_value: float | None = None, gate: str | None = None, ok: bool | None = None,
         **extra: Any) -> dict[str, Any]:
    row = {"bench": bench, "metric": metric, "value": round(value, 4), "unit": unit,
           "baseline": baseline, "baseline_value": None if baseline_value is None else round(baseline_value, 4),
           "ratio": None if not baseline_value else round(value / baseline_value, 4),
           "gate": gate, "ok": ok, **extra}
    print(json.dumps(row), flush=True)
    return row


def median_of(repeats: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    values = [fn() for _ in range(repeats)]
    return statistics.median(values), values


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def config_text(*, rate: float = 60.0, frames_every: int = 60, four_rois: bool = False, seed: int = 2019) -> str:
    """The demo configuration, optionally at another rate and with 4 ROIs of 64x64."""
    text = demo_text().replace("rate = 30.0", f"rate = {rate}").replace("seed = 2019", f"seed = {seed}")
    text = text.replace("frames_every = 30", f"frames_every = {frames_every}")
    if four_rois:
        head, _, _ = text.partition("[[roi]]")
        rest = text[text.index("[scan]"):]
        rois = "".join(
            f'[[roi]]\nname = "r{i}"\ndetector = "MPCCD-1N0-M06-004"\nx = [{x0}, {x0 + 64}]\ny = [{y0}, {y0 + 64}]\n\n'
            for i, (x0, y0) in enumerate([(168, 268), (400, 100), (40, 600), (300, 880)])
        )
        text = head + rois + rest
    return text
