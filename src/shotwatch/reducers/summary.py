"""The summary reduction: INTERFACE.md's ``reduce --json`` layout, live and offline alike."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..schemas import ShotBlock
from .analysis import Analysis, ShotTable, display_keys, shot_table
from .moments import Moments

__all__ = ["SummaryReducer", "SummaryState", "jsonable"]

# Cells of every roi key's Moments: (group, bin) with group 0 = all shots, 1 = laser on,
# 2 = laser off, and bin n_bins = every shot whatever its bin (the top-level statistics).
_ALL, _ON, _OFF = 0, 1, 2


@dataclass(frozen=True)
class SummaryState:
    """Immutable state of :class:`SummaryReducer` (never modified; update returns a new one).

    Attributes:
        total: shots reduced.
        accepted: shots accepted.
        outside: accepted shots whose scan value is NaN or outside the edges.
        vetoed: criterion -> shots failing it.
        valid: roi key -> shots where its cutout is valid (decides result key names).
        stats: roi key -> Moments over cells (group, bin) of the accepted finite values.
    """

    total: int = 0
    accepted: int = 0
    outside: int = 0
    vetoed: Mapping[str, int] = field(default_factory=dict)
    valid: Mapping[str, int] = field(default_factory=dict)
    stats: Mapping[str, Moments] = field(default_factory=dict)


class SummaryReducer:
    """Counts, sums, normalisation, scan bins and pump-probe split, mergeable.

    Args:
        analysis: what to compute.
    """

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis
        self._shape = (3, analysis.n_bins + 1)

    def init(self) -> SummaryState:
        """No shots."""
        return SummaryState(vetoed={k: 0 for k in self.analysis.veto_keys})

    def update(self, state: SummaryState, block: ShotBlock, *, table: ShotTable | None = None) -> SummaryState:
        """``state`` plus the shots of ``block``.

        Args:
            state: the state so far.
            block: the new shots.
            table: ``shot_table(block, analysis)`` if the caller already computed it.
        """
        t = shot_table(block, self.analysis) if table is None else table
        if not len(t):
            return state
        fresh = SummaryState(
            total=len(t), accepted=int(np.count_nonzero(t.accepted)),
            outside=int(np.count_nonzero(t.accepted & (t.bin < 0))) if self.analysis.n_bins else 0,
            vetoed={k: int(np.count_nonzero(v)) for k, v in t.vetoed.items()},
            valid={k: int(np.count_nonzero(v)) for k, v in t.valid.items()},
            stats={k: self._moments(t, k) for k in t.values if t.valid[k].any()},
        )
        return self.merge(state, fresh)

    def merge(self, a: SummaryState, b: SummaryState) -> SummaryState:
        """Both states' shots together (associative; counts exact, values to rounding)."""
        stats = dict(a.stats)
        for key, m in b.stats.items():
            stats[key] = stats[key].merge(m) if key in stats else m
        return SummaryState(
            total=a.total + b.total, accepted=a.accepted + b.accepted, outside=a.outside + b.outside,
            vetoed=_add(a.vetoed, b.vetoed), valid=_add(a.valid, b.valid), stats=stats,
        )

    def result(self, state: SummaryState) -> dict[str, Any]:
        """INTERFACE.md's ``reduce --json`` dict (NaN written as None)."""
        names = display_keys(k for k, c in state.valid.items() if c > 0)
        empty = Moments.zeros(self._shape)
        per_key = {shown: state.stats.get(key, empty) for key, shown in names.items()}
        out: dict[str, Any] = {
            "shots": {"total": state.total, "accepted": state.accepted,
                      "vetoed": {k: state.vetoed.get(k, 0) for k in self.analysis.veto_keys}},
            "rois": {key: self._roi(m) for key, m in per_key.items()},
            "scan": self._scan(state, per_key) if self.analysis.n_bins else None,
        }
        return jsonable(out)

    def result_keys(self, state: SummaryState) -> dict[str, str]:
        """Roi key (``name/vK``) -> the key it has in :meth:`result`, for every key with valid
        shots in ``state`` (INTERFACE.md: the bare name while a ROI has one such version)."""
        return display_keys(k for k, c in state.valid.items() if c > 0)

    # --- internals ---------------------------------------------------------------------

    def _moments(self, t: ShotTable, key: str) -> Moments:
        v = t.values[key]
        sel = np.flatnonzero(t.accepted & np.isfinite(v))
        nb = self.analysis.n_bins
        b, laser = t.bin[sel], t.laser[sel]
        group = np.where(laser == 1, _ON, _OFF)
        decided = laser >= 0
        binned = b >= 0
        # every selected shot lands in (all, whole), plus (all, bin), (on|off, whole), (on|off, bin)
        parts = [
            (sel, np.full(sel.size, _ALL * (nb + 1) + nb)),
            (sel[binned], _ALL * (nb + 1) + b[binned]),
            (sel[decided], group[decided] * (nb + 1) + nb),
            (sel[decided & binned], group[decided & binned] * (nb + 1) + b[decided & binned]),
        ]
        shots = np.concatenate([p[0] for p in parts])
        cells = np.concatenate([p[1] for p in parts]).astype(np.int64)
        return Moments.of(cells, v[shots], t.i0[shots], self._shape)

    def _cell(self, m: Moments, group: int, index: int) -> dict[str, Any]:
        s = m.cell((group, index))
        if self.analysis.i0 is None:
            s["norm"] = s["mean_ratio"] = s["sem"] = math.nan
        return s

    def _roi(self, m: Moments) -> dict[str, Any]:
        nb = self.analysis.n_bins
        s = self._cell(m, _ALL, nb)
        out = {k: s[k] for k in ("count", "sum", "mean", "norm", "mean_ratio")}
        if self.analysis.pump_probe is not None:
            for name, g in (("on", _ON), ("off", _OFF)):
                c = self._cell(m, g, nb)
                out[name] = {"count": c["count"], "norm": c["norm"]}
        return out

    def _bins(self, m: Moments, group: int) -> dict[str, list[Any]]:
        cells = [self._cell(m, group, j) for j in range(self.analysis.n_bins)]
        return {k: [c[k] for c in cells] for k in ("count", "norm", "sem")}

    def _scan(self, state: SummaryState, per_key: Mapping[str, Moments]) -> dict[str, Any]:
        a = self.analysis
        e = np.asarray(a.edges)
        rois: dict[str, Any] = {}
        for key, m in per_key.items():
            rois[key] = self._bins(m, _ALL)
            if a.pump_probe is not None:
                rois[key]["on"] = self._bins(m, _ON)
                rois[key]["off"] = self._bins(m, _OFF)
        return {"name": a.scan_name, "unit": a.scan_unit, "edges": e.tolist(),
                "centers": ((e[:-1] + e[1:]) / 2).tolist(), "outside": state.outside, "rois": rois}


def _add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def jsonable(obj: Any) -> Any:
    """A copy with numpy scalars as Python numbers and non-finite floats as None."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj

