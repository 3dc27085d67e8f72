"""Reducers for the live console: sparkline windows, ROI-vs-I0 samples and trends.
All follow init / update / merge / result with immutable states (running-average images
are the recorder's, ``recorder/images.py``).

Windows keep the last N entries *by tag*, so merging two states takes the newest N of their
union: exact and associative whatever the split. Result keys follow the summary's naming rule
(bare ROI name when only one of its versions has data in the state, else ``name/vK``).

The rolling window also keeps every *named* value of the shots (the block's points, aliases
and channels, by name), so a console can correlate any two values of the last N shots
(:meth:`RollingWindow.column`) without knowing in advance which pair it will be asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..schemas import RoiVersion, ShotBlock
from .analysis import Analysis, ShotTable, display_keys, shot_table
from .channels import named_points

__all__ = ["NAMED", "Correlation", "RollingWindow", "Tagged", "Trend"]

Array = npt.NDArray[Any]
F64 = npt.NDArray[np.float64]

NAMED = "named:"
"""Prefix of the window columns and histogram series of named values (points, aliases,
channels), apart from the roi keys (``name/vK``), which a point name could look like."""


@dataclass(frozen=True)
class Tagged:
    """Columns aligned on increasing ``tags``; a column missing on one side merges as its fill.

    Attributes:
        tags: int64[m], increasing.
        columns: name -> array[m].
    """

    tags: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    columns: Mapping[str, Array] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.tags.shape[0])

    def merge(self, other: Tagged, size: int) -> Tagged:
        """The newest ``size`` rows of both (ordered by tag)."""
        if not len(other) and set(other.columns) <= set(self.columns):
            return self
        names = list(dict.fromkeys([*self.columns, *other.columns]))
        tags = np.concatenate([self.tags, other.tags])
        order = np.argsort(tags, kind="stable")[-size:] if size > 0 else np.empty(0, np.int64)
        cols = {n: np.concatenate([_col(self, n, other), _col(other, n, self)])[order] for n in names}
        return Tagged(tags[order], cols)


def _col(t: Tagged, name: str, like: Tagged) -> Array:
    if name in t.columns:
        return t.columns[name]
    ref = like.columns[name]
    fill: Any = np.nan if ref.dtype.kind == "f" else 0
    return np.full((len(t), *ref.shape[1:]), fill, ref.dtype)


def _table(block: ShotBlock, analysis: Analysis, table: ShotTable | None,
           versions: Mapping[str, RoiVersion] | None) -> ShotTable:
    return shot_table(block, analysis, versions or {}) if table is None else table


def _ratio(t: ShotTable, values: F64) -> F64:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(t.accepted, values / t.i0, np.nan)


def _shown(keys: Mapping[str, Array]) -> dict[str, str]:
    return display_keys(k for k, v in keys.items() if np.isfinite(v).any())


class RollingWindow:
    """The last ``size`` shots: tag, I0, accepted, each roi key's value and value/I0, and
    every named value (points, aliases, channels; :meth:`column`).

    ``result`` → ``{"tags", "i0", "accepted", "values": {key: f64}, "ratios": {key: f64}}``;
    the ratio is NaN for vetoed shots (and everywhere without ``[i0]``).
    """

    def __init__(self, analysis: Analysis, *, size: int = 600) -> None:
        self.analysis, self.size = analysis, size

    def init(self) -> Tagged:
        """No data."""
        return Tagged()

    def update(self, state: Tagged, block: ShotBlock, *, table: ShotTable | None = None,
               versions: Mapping[str, RoiVersion] | None = None) -> Tagged:
        """``state`` plus ``block`` (``table``: its shot table, if already computed; else
        ``versions`` as :func:`shot_table` takes them)."""
        t = _table(block, self.analysis, table, versions)
        cols: dict[str, Array] = {"i0": t.i0, "accepted": t.accepted}
        cols.update({f"value:{k}": v for k, v in t.values.items()})
        cols.update({NAMED + k: np.asarray(v, np.float64)
                     for k, v in named_points(self.analysis, block, t.channels).items()})
        return state.merge(Tagged(t.tags, cols), self.size)

    def merge(self, a: Tagged, b: Tagged) -> Tagged:
        """Both states together (associative)."""
        return a.merge(b, self.size)

    def result(self, state: Tagged) -> dict[str, Any]:
        """The value for display (see the class docstring)."""
        values = {k.removeprefix("value:"): v for k, v in state.columns.items() if k.startswith("value:")}
        i0 = state.columns.get("i0", np.empty(0))
        accepted = state.columns.get("accepted", np.empty(0, bool)).astype(bool)
        shown = _shown(values)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = {shown[k]: np.where(accepted, values[k] / i0, np.nan) for k in shown}
        return {"tags": state.tags, "i0": i0, "accepted": accepted,
                "values": {shown[k]: values[k] for k in shown}, "ratios": ratios}

    def values(self, state: Tagged, key: str) -> F64 | None:
        """Roi key ``key``'s (``name/vK``) values over the window, aligned with ``state.tags``
        (NaN where a shot had none); None if the window never saw the key."""
        column = state.columns.get(f"value:{key}")
        return None if column is None else np.asarray(column, np.float64)

    def column(self, state: Tagged, name: str) -> F64 | None:
        """Any value over the window by its name, aligned with ``state.tags``: ``"i0"``, a
        roi key (``name/vK``), a point, an alias or a channel; None if the window never saw it."""
        if name == "i0":
            column = state.columns.get("i0")
        else:
            column = state.columns.get(f"value:{name}", state.columns.get(NAMED + name))
        return None if column is None else np.asarray(column, np.float64)

    def names(self, state: Tagged) -> list[str]:
        """The named values (points, aliases, channels) the window holds, in arrival order."""
        return [k.removeprefix(NAMED) for k in state.columns if k.startswith(NAMED)]


class Correlation:
    """Per roi key, the last ``size`` shots with a finite I0 and value: (tag, I0, value, accepted).

    ``result`` → ``{key: {"tags", "i0", "value", "accepted"}}`` (vetoed shots included and
    flagged, so the I0 window can be judged on the plot).
    """

    def __init__(self, analysis: Analysis, *, size: int = 2000) -> None:
        self.analysis, self.size = analysis, size

    def init(self) -> dict[str, Tagged]:
        """No data."""
        return {}

    def update(self, state: dict[str, Tagged], block: ShotBlock, *,
               table: ShotTable | None = None,
               versions: Mapping[str, RoiVersion] | None = None) -> dict[str, Tagged]:
        """``state`` plus ``block`` (``table``: its shot table, if already computed; else
        ``versions`` as :func:`shot_table` takes them)."""
        t = _table(block, self.analysis, table, versions)
        fresh = {}
        for key, v in t.values.items():
            ok = np.isfinite(v) & np.isfinite(t.i0)
            if ok.any():
                fresh[key] = Tagged(t.tags[ok], {"i0": t.i0[ok], "value": v[ok], "accepted": t.accepted[ok]})
        return self.merge(state, fresh)

    def merge(self, a: dict[str, Tagged], b: dict[str, Tagged]) -> dict[str, Tagged]:
        """Both states together (associative)."""
        out = dict(a)
        for key, s in b.items():
            # a key new to ``a`` is trimmed too: a long block must not hold more than size samples
            out[key] = (out[key] if key in out else Tagged()).merge(s, self.size)
        return out

    def result(self, state: dict[str, Tagged]) -> dict[str, Any]:
        """The value for display (see the class docstring)."""
        shown = display_keys(k for k, s in state.items() if len(s))
        return {shown[k]: {"tags": s.tags, "i0": s.columns["i0"], "value": s.columns["value"],
                           "accepted": s.columns["accepted"].astype(bool)}
                for k, s in state.items() if k in shown}

    def samples(self, state: dict[str, Tagged], key: str) -> dict[str, Array] | None:
        """Roi key ``key``'s samples (``tags``, ``i0``, ``value``, ``accepted``), None if none."""
        s = state.get(key)
        if s is None:
            return None
        return {"tags": s.tags, "i0": s.columns["i0"], "value": s.columns["value"],
                "accepted": s.columns["accepted"].astype(bool)}


class Trend:
    """Per block, the mean of value / I0 over its accepted shots (of value without ``[i0]``).

    One entry per block (tagged by its first tag), the newest ``size`` kept. ``result`` →
    ``{"quantity": "ratio"|"value", "tags": int64, "rois": {key: {"mean", "count"}}}``.
    """

    def __init__(self, analysis: Analysis, *, size: int = 500) -> None:
        self.analysis, self.size = analysis, size

    def init(self) -> Tagged:
        """No data."""
        return Tagged()

    def update(self, state: Tagged, block: ShotBlock, *, table: ShotTable | None = None,
               versions: Mapping[str, RoiVersion] | None = None) -> Tagged:
        """``state`` plus ``block`` (``table``: its shot table, if already computed; else
        ``versions`` as :func:`shot_table` takes them)."""
        t = _table(block, self.analysis, table, versions)
        if not len(t):
            return state
        cols: dict[str, Array] = {}
        for key, v in t.values.items():
            q = _ratio(t, v) if self.analysis.i0 is not None else np.where(t.accepted, v, np.nan)
            ok = np.isfinite(q)
            n = int(np.count_nonzero(ok))
            cols[f"mean:{key}"] = np.array([q[ok].mean() if n else np.nan])
            cols[f"count:{key}"] = np.array([n], np.int64)
        return state.merge(Tagged(t.tags[:1].copy(), cols), self.size)

    def merge(self, a: Tagged, b: Tagged) -> Tagged:
        """Both states together (associative)."""
        return a.merge(b, self.size)

    def result(self, state: Tagged) -> dict[str, Any]:
        """The value for display (see the class docstring)."""
        means = {k.removeprefix("mean:"): v for k, v in state.columns.items() if k.startswith("mean:")}
        shown = _shown(means)
        return {"quantity": "ratio" if self.analysis.i0 is not None else "value", "tags": state.tags,
                "rois": {shown[k]: {"mean": means[k], "count": state.columns[f"count:{k}"]} for k in shown}}

    def means(self, state: Tagged, key: str) -> F64 | None:
        """Roi key ``key``'s per-block means, aligned with ``state.tags``; None if never seen."""
        column = state.columns.get(f"mean:{key}")
        return None if column is None else np.asarray(column, np.float64)
