"""The summary reduction: INTERFACE.md's ``reduce --json`` layout, live and offline alike."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..schemas import RoiVersion, ShotBlock
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
        nonfinite: roi key -> non-finite, unmasked pixels over the shots of ``stats``.
        channels: channel name -> Moments, as ``stats``.
    """

    total: int = 0
    accepted: int = 0
    outside: int = 0
    vetoed: Mapping[str, int] = field(default_factory=dict)
    valid: Mapping[str, int] = field(default_factory=dict)
    stats: Mapping[str, Moments] = field(default_factory=dict)
    nonfinite: Mapping[str, int] = field(default_factory=dict)
    channels: Mapping[str, Moments] = field(default_factory=dict)


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

    def update(self, state: SummaryState, block: ShotBlock, *, table: ShotTable | None = None,
               versions: Mapping[str, RoiVersion] | None = None) -> SummaryState:
        """``state`` plus the shots of ``block``.

        Args:
            state: the state so far.
            block: the new shots.
            table: ``shot_table(block, analysis, versions)`` if the caller already computed it.
            versions: roi key -> version, where ``table`` is not given (see :func:`shot_table`).
        """
        t = shot_table(block, self.analysis, versions or {}) if table is None else table
        if not len(t):
            return state
        stats, nonfinite = {}, {}
        for k, v in t.values.items():
            if t.valid[k].any():
                sel = np.flatnonzero(t.accepted & np.isfinite(v))
                stats[k] = self._moments(t, v, sel)
                nonfinite[k] = int(t.nonfinite[k][sel].sum()) if k in t.nonfinite else 0
        fresh = SummaryState(
            total=len(t), accepted=int(np.count_nonzero(t.accepted)),
            outside=int(np.count_nonzero(t.accepted & (t.bin < 0))) if self.analysis.n_bins else 0,
            vetoed={k: int(np.count_nonzero(v)) for k, v in t.vetoed.items()},
            valid={k: int(np.count_nonzero(v)) for k, v in t.valid.items()},
            stats=stats, nonfinite=nonfinite,
            channels={k: self._moments(t, v, np.flatnonzero(t.accepted & np.isfinite(v)))
                      for k, v in t.channels.items()},
        )
        return self.merge(state, fresh)

    def merge(self, a: SummaryState, b: SummaryState) -> SummaryState:
        """Both states' shots together (associative; counts exact, values to rounding)."""
        return SummaryState(
            total=a.total + b.total, accepted=a.accepted + b.accepted, outside=a.outside + b.outside,
            vetoed=_add(a.vetoed, b.vetoed), valid=_add(a.valid, b.valid), stats=_merged(a.stats, b.stats),
            nonfinite=_add(a.nonfinite, b.nonfinite), channels=_merged(a.channels, b.channels),
        )

    def result(self, state: SummaryState) -> dict[str, Any]:
        """INTERFACE.md's ``reduce --json`` dict (NaN written as None)."""
        names = display_keys(k for k, c in state.valid.items() if c > 0)
        empty = Moments.zeros(self._shape)
        per_key = {shown: state.stats.get(key, empty) for key, shown in names.items()}
        per_channel = {name: state.channels.get(name, empty) for name in self.analysis.channel_names}
        rois = {shown: self._roi(per_key[shown], state.nonfinite.get(key, 0)) for key, shown in names.items()}
        out: dict[str, Any] = {
            "shots": {"total": state.total, "accepted": state.accepted,
                      "vetoed": {k: state.vetoed.get(k, 0) for k in self.analysis.veto_keys}},
            "analysis_version": self.analysis.version,
            "rois": rois,
            "channels": {name: self._roi(m, 0) for name, m in per_channel.items()},
            "scan": self._scan(state, per_key, per_channel) if self.analysis.n_bins else None,
        }
        shown: dict[str, Any] = jsonable(out)
        return shown

    def result_keys(self, state: SummaryState) -> dict[str, str]:
        """Roi key (``name/vK``) -> the key it has in :meth:`result`, for every key with valid
        shots in ``state`` (INTERFACE.md: the bare name while a ROI has one such version)."""
        return display_keys(k for k, c in state.valid.items() if c > 0)

    # --- internals ---------------------------------------------------------------------

    def _moments(self, t: ShotTable, v: npt.NDArray[np.float64], sel: npt.NDArray[np.intp]) -> Moments:
        """Moments over the cells (group, bin) of the shots ``sel`` (accepted, finite value)."""
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
            s["norm"] = s["mean_ratio"] = s["sem"] = s["sem_norm"] = math.nan
        return s

    def _roi(self, m: Moments, nonfinite: int) -> dict[str, Any]:
        nb = self.analysis.n_bins
        s = self._cell(m, _ALL, nb)
        out = {k: s[k] for k in ("count", "sum", "mean", "norm", "sem_norm", "mean_ratio")}
        out["nonfinite"] = nonfinite
        if self.analysis.pump_probe is not None:
            on, off = self._cell(m, _ON, nb), self._cell(m, _OFF, nb)
            out["on"] = {k: on[k] for k in ("count", "norm", "sem_norm")}
            out["off"] = {k: off[k] for k in ("count", "norm", "sem_norm")}
            out.update({k: float(v[0]) for k, v in _difference([on], [off]).items()})
        return out

    def _bins(self, m: Moments, group: int) -> list[dict[str, Any]]:
        return [self._cell(m, group, j) for j in range(self.analysis.n_bins)]

    def _binned(self, m: Moments) -> dict[str, Any]:
        keys = ("count", "norm", "sem", "sem_norm")
        cells = self._bins(m, _ALL)
        out: dict[str, Any] = {k: [c[k] for c in cells] for k in keys}
        if self.analysis.pump_probe is not None:
            on, off = self._bins(m, _ON), self._bins(m, _OFF)
            out["on"] = {k: [c[k] for c in on] for k in keys}
            out["off"] = {k: [c[k] for c in off] for k in keys}
            out.update({k: v.tolist() for k, v in _difference(on, off).items()})
        return out

    def _scan(self, state: SummaryState, per_key: Mapping[str, Moments],
              per_channel: Mapping[str, Moments]) -> dict[str, Any]:
        a = self.analysis
        e = np.asarray(a.edges)
        return {"name": a.scan_name, "unit": a.scan_unit, "edges": e.tolist(),
                "centers": ((e[:-1] + e[1:]) / 2).tolist(), "outside": state.outside,
                "rois": {key: self._binned(m) for key, m in per_key.items()},
                "channels": {name: self._binned(m) for name, m in per_channel.items()}}


def _difference(on: list[dict[str, Any]], off: list[dict[str, Any]]) -> dict[str, npt.NDArray[np.float64]]:
    """diff, diff_sem, rel, rel_sem of on − off, cell by cell (INTERFACE.md); NaN where undefined."""
    n_on, s_on = (np.array([c[k] for c in on], np.float64) for k in ("norm", "sem_norm"))
    n_off, s_off = (np.array([c[k] for c in off], np.float64) for k in ("norm", "sem_norm"))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = n_on - n_off
        ratio = n_on / n_off
        return {"diff": diff, "diff_sem": np.sqrt(s_on**2 + s_off**2), "rel": diff / n_off,
                "rel_sem": np.sqrt(s_on**2 + ratio**2 * s_off**2) / np.abs(n_off)}


def _merged(a: Mapping[str, Moments], b: Mapping[str, Moments]) -> dict[str, Moments]:
    out = dict(a)
    for key, m in b.items():
        out[key] = out[key].merge(m) if key in out else m
    return out


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

