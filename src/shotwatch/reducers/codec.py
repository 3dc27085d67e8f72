"""Reducer states as JSON-able trees with numpy arrays, and back, validated (never pickle).

What crosses a process boundary is a *tree*: dicts with str keys, lists, str, int, float,
bool, None and numpy arrays (1 to 3 dimensions, plain numeric or bool dtypes): the
recorder's recomputed state to its consoles (``StateMsg``, through ``link/wire.py``'s tree
encoding), a recomputation worker's state to the recorder, an MPI rank's to rank 0.

API (pure numpy, no I/O):

- :func:`encode_state(reducer, state) <encode_state>` -> tree, for any of the reducers
  :class:`~.summary.SummaryReducer`, :class:`~.live.RollingWindow`,
  :class:`~.live.Correlation`, :class:`~.hist.Histogram`, :class:`~.live.Trend`.
- :func:`decode_state(reducer, tree) <decode_state>` -> the state, checked against that
  reducer (its analysis's scan bins, veto and channel names): every key, dtype, shape, length
  and count; rows beyond the reducer's window size are dropped, oldest first (the sender may
  keep a longer window). Anything wrong raises ``ValueError`` naming the place
  (``summary.stats[3].count: expected int64 of shape (3, 21), found float64 (3, 20)``).

``decode_state(r, encode_state(r, s))`` merges exactly like ``s`` (tests/test_codec.py). The
trees group arrays (one array for the moments of every roi key, one for all histogram
counts...), so a state holds a handful of arrays however many ROI versions a run had.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..schemas import ROI_NAME
from .hist import Histogram, HistSeries
from .live import NAMED, Correlation, RollingWindow, Tagged, Trend
from .moments import Moments
from .summary import SummaryReducer, SummaryState

__all__ = ["CODEC_VERSION", "KINDS", "AnyReducer", "decode_state", "encode_state", "kind_of"]

CODEC_VERSION = 1
KINDS = ("summary", "window", "corr", "hist", "trend")
"""The reducer kinds, as StateMsg names them."""
AnyReducer = SummaryReducer | RollingWindow | Correlation | Histogram | Trend
Array = npt.NDArray[Any]

_ROI_KEY = re.compile(ROI_NAME.rstrip("$") + r"/v[1-9][0-9]{0,8}$")
_MAX_NAME = 256
_MAX_BINS = 1 << 20
_MAX_ROWS = 1 << 22
_FLOATS = ("sum_v", "sum_i0", "mean_r", "m2_r", "m2_v", "m2_i", "c_vi")  # Moments' float fields, in order
_WINDOW = {"i0": "<f8", "accepted": "|b1"}
_CORR = {"i0": "<f8", "value": "<f8", "accepted": "|b1"}


def kind_of(reducer: AnyReducer) -> str:
    """The kind (one of :data:`KINDS`) of ``reducer``."""
    if isinstance(reducer, SummaryReducer):
        return "summary"
    if isinstance(reducer, RollingWindow):
        return "window"
    if isinstance(reducer, Correlation):
        return "corr"
    if isinstance(reducer, Histogram):
        return "hist"
    return "trend"


def encode_state(reducer: AnyReducer, state: Any) -> dict[str, Any]:
    """``state`` of ``reducer`` as a tree (see the module docstring)."""
    kind = kind_of(reducer)
    body: dict[str, Any]
    if kind == "summary":
        body = _summary_out(state)
    elif kind == "corr":
        keys = list(state)
        body = {"keys": keys, **_tagged_out([state[k] for k in keys])}
    elif kind == "hist":
        body = _hist_out(state)
    else:
        body = _tagged_out([state])
    return {"kind": kind, "codec": CODEC_VERSION, **body}


def decode_state(reducer: AnyReducer, tree: Any) -> Any:
    """The state ``tree`` holds, checked against ``reducer``.

    Raises:
        ValueError: anything that is not what :func:`encode_state` writes for this reducer,
            naming the place and what was expected and found.
    """
    kind = kind_of(reducer)
    t = _dict(tree, kind)
    if t.get("kind") != kind or t.get("codec") != CODEC_VERSION:
        raise ValueError(f"{kind}: expected kind {kind!r} and codec {CODEC_VERSION}, found "
                         f"{_short(t.get('kind'))} and {_short(t.get('codec'))}")
    if isinstance(reducer, SummaryReducer):
        return _summary_in(reducer, t)
    if isinstance(reducer, RollingWindow):
        return _window_in(t, reducer.size)
    if isinstance(reducer, Correlation):
        return _corr_in(t, reducer.size)
    if isinstance(reducer, Histogram):
        return _hist_in(t)
    return _trend_in(t, reducer.size)


# --- summary ----------------------------------------------------------------------------


def _summary_out(s: SummaryState) -> dict[str, Any]:
    return {"total": s.total, "accepted": s.accepted, "outside": s.outside, "vetoed": dict(s.vetoed),
            "valid": dict(s.valid), "nonfinite": dict(s.nonfinite),
            "stats": _moments_out(s.stats), "channels": _moments_out(s.channels)}


def _moments_out(ms: Mapping[str, Moments]) -> dict[str, Any]:
    keys = list(ms)
    if not keys:
        return {"keys": [], "count": np.zeros((0, 0), np.int64), "floats": np.zeros((0, 7, 0))}
    count = np.stack([np.asarray(ms[k].count, np.int64).reshape(-1) for k in keys])
    floats = np.stack([np.stack([np.asarray(getattr(ms[k], f), np.float64).reshape(-1) for f in _FLOATS])
                       for k in keys])
    return {"keys": keys, "count": count, "floats": floats}


def _summary_in(reducer: SummaryReducer, t: dict[str, Any]) -> SummaryState:
    a = reducer.analysis
    total = _count(t, "total", "summary", None)
    accepted = _count(t, "accepted", "summary", total)
    outside = _count(t, "outside", "summary", accepted)
    vetoed = _counts(t, "vetoed", "summary", total, allowed=a.veto_keys)
    valid = _counts(t, "valid", "summary", total, roi_keys=True)
    nonfinite = _counts(t, "nonfinite", "summary", None, roi_keys=True)
    cells = (3, a.n_bins + 1)
    stats = _moments_in(t.get("stats"), "summary.stats", cells, accepted, roi_keys=True)
    channels = _moments_in(t.get("channels"), "summary.channels", cells, accepted, allowed=a.channel_names)
    _only(t, ("kind", "codec", "total", "accepted", "outside", "vetoed", "valid", "nonfinite", "stats", "channels"),
          "summary")
    return SummaryState(total=total, accepted=accepted, outside=outside, vetoed=vetoed, valid=valid, stats=stats,
                        nonfinite=nonfinite, channels=channels)


def _moments_in(node: Any, where: str, cells: tuple[int, int], most: int, *, roi_keys: bool = False,
                allowed: Sequence[str] | None = None) -> dict[str, Moments]:
    t = _dict(node, where)
    _only(t, ("keys", "count", "floats"), where)
    keys = _names(t.get("keys"), f"{where}.keys", roi_keys=roi_keys, allowed=allowed)
    size = cells[0] * cells[1]
    count = _array(t.get("count"), f"{where}.count", "<i8", (len(keys), size) if keys else None)
    floats = _array(t.get("floats"), f"{where}.floats", "<f8", (len(keys), len(_FLOATS), size) if keys else None)
    if count.size and (int(count.min()) < 0 or int(count.max()) > most):
        raise ValueError(f"{where}.count: expected counts in [0, {most}] (the accepted shots), "
                         f"found [{int(count.min())}, {int(count.max())}]")
    return {k: Moments(count[i].reshape(cells), *(floats[i, j].reshape(cells) for j in range(len(_FLOATS))))
            for i, k in enumerate(keys)}


# --- windows, trends, correlations (Tagged) ---------------------------------------------------


def _tagged_out(parts: Sequence[Tagged]) -> dict[str, Any]:
    """Several Tagged with the same columns, concatenated (one array per column dtype)."""
    names = list(parts[0].columns) if parts else []
    groups: dict[str, list[str]] = {}
    for name in names:
        col = parts[0].columns[name]
        if col.ndim != 1:
            raise ValueError(f"{name}: expected a column of one dimension, found {col.ndim}")
        groups.setdefault(np.dtype(col.dtype).str, []).append(name)
    for p in parts:
        if set(p.columns) != set(names):
            raise ValueError(f"expected the same columns in every part, found {list(p.columns)} and {names}")
    return {
        "lengths": np.array([len(p) for p in parts], np.int64),
        "tags": np.concatenate([np.asarray(p.tags, np.int64) for p in parts]) if parts else np.zeros(0, np.int64),
        "groups": [{"names": group, "data": np.stack([np.concatenate([np.asarray(p.columns[n]) for p in parts])
                                                      for n in group])} for group in groups.values()],
    }


def _tagged_in(t: dict[str, Any], where: str, size: int) -> list[Tagged]:
    lengths = _array(t.get("lengths"), f"{where}.lengths", "<i8", None)
    if lengths.ndim != 1 or (lengths.size and (int(lengths.min()) < 0 or int(lengths.sum()) > _MAX_ROWS)):
        raise ValueError(f"{where}.lengths: expected lengths >= 0 summing to at most {_MAX_ROWS}, "
                         f"found {lengths.tolist()[:8]}")
    total = int(lengths.sum())
    tags = _array(t.get("tags"), f"{where}.tags", "<i8", (total,))
    columns: dict[str, Array] = {}
    groups = t.get("groups")
    if not isinstance(groups, list):
        raise ValueError(f"{where}.groups: expected a list, found {_short(groups)}")
    for i, g in enumerate(groups):
        gw = f"{where}.groups[{i}]"
        gd = _dict(g, gw)
        _only(gd, ("names", "data"), gw)
        names = _names(gd.get("names"), f"{gw}.names")
        data = _array(gd.get("data"), f"{gw}.data", None, (len(names), total))
        for j, n in enumerate(names):
            if n in columns:
                raise ValueError(f"{gw}.names: expected each column once, found {n!r} again")
            columns[n] = data[j]
    out, start = [], 0
    for n in lengths.tolist():
        part = tags[start:start + n]
        if n > 1 and not bool(np.all(part[1:] > part[:-1])):
            raise ValueError(f"{where}.tags: expected strictly increasing tags, found a step <= 0")
        keep = slice(start + max(0, n - size), start + n)  # a sender with a longer window: the newest rows
        out.append(Tagged(tags[keep], {k: v[keep] for k, v in columns.items()}))
        start += n
    return out


def _one(t: dict[str, Any], where: str, size: int) -> Tagged:
    _only(t, ("kind", "codec", "lengths", "tags", "groups"), where)
    parts = _tagged_in(t, where, size)
    if len(parts) != 1:
        raise ValueError(f"{where}.lengths: expected one part, found {len(parts)}")
    return parts[0]


def _window_in(t: dict[str, Any], size: int) -> Tagged:
    state = _one(t, "window", size)
    for name, col in state.columns.items():
        want = _WINDOW.get(name) or ("<f8" if name.startswith(("value:", NAMED)) else None)
        if want is None or (name.startswith("value:") and not _ROI_KEY.match(name[6:])):
            raise ValueError(f"window.groups: expected columns i0, accepted, value:<roi key> and {NAMED}<name>, "
                             f"found {name!r}")
        _dtype(col, want, f"window.{name}")
    return state


def _trend_in(t: dict[str, Any], size: int) -> Tagged:
    state = _one(t, "trend", size)
    for name, col in state.columns.items():
        kind, _, key = name.partition(":")
        if kind not in ("mean", "count") or not _ROI_KEY.match(key) or f"{'count' if kind == 'mean' else 'mean'}:{key}" \
                not in state.columns:
            raise ValueError(f"trend.groups: expected paired columns mean:<roi key> and count:<roi key>, found {name!r}")
        _dtype(col, "<f8" if kind == "mean" else "<i8", f"trend.{name}")
        if kind == "count" and col.size and int(col.min()) < 0:
            raise ValueError(f"trend.{name}: expected counts >= 0, found {int(col.min())}")
    return state


def _corr_in(t: dict[str, Any], size: int) -> dict[str, Tagged]:
    _only(t, ("kind", "codec", "keys", "lengths", "tags", "groups"), "corr")
    keys = _names(t.get("keys"), "corr.keys", roi_keys=True)
    parts = _tagged_in(t, "corr", size)
    if len(parts) != len(keys):
        raise ValueError(f"corr.lengths: expected one length per key ({len(keys)}), found {len(parts)}")
    if keys and set(parts[0].columns) != set(_CORR):
        raise ValueError(f"corr.groups: expected the columns {sorted(_CORR)}, found {sorted(parts[0].columns)}")
    for name, dtype in _CORR.items():
        for key, p in zip(keys, parts, strict=True):
            _dtype(p.columns[name], dtype, f"corr[{key!r}].{name}")
    return dict(zip(keys, parts, strict=True))


# --- histograms ------------------------------------------------------------------------------


def _hist_out(state: Mapping[str, HistSeries]) -> dict[str, Any]:
    names = list(state)
    series = [state[n] for n in names]
    return {"names": names, "bins": np.array([s.counts.size for s in series], np.int64),
            "edges": np.concatenate([np.asarray(s.edges, np.float64) for s in series]) if series else np.zeros(0),
            "counts": np.concatenate([np.asarray(s.counts, np.int64) for s in series]) if series
            else np.zeros(0, np.int64),
            "under": np.array([s.under for s in series], np.int64), "over": np.array([s.over for s in series], np.int64)}


def _hist_in(t: dict[str, Any]) -> dict[str, HistSeries]:
    _only(t, ("kind", "codec", "names", "bins", "edges", "counts", "under", "over"), "hist")
    names = _names(t.get("names"), "hist.names", roi_keys=True, also=("i0",), named=True)
    k = len(names)
    bins = _array(t.get("bins"), "hist.bins", "<i8", (k,))
    if k and (int(bins.min()) < 1 or int(bins.max()) > _MAX_BINS):
        raise ValueError(f"hist.bins: expected 1 to {_MAX_BINS} bins per series, found {bins.tolist()[:8]}")
    edges = _array(t.get("edges"), "hist.edges", "<f8", (int(bins.sum()) + k,))
    counts = _array(t.get("counts"), "hist.counts", "<i8", (int(bins.sum()),))
    under, over = (_array(t.get(n), f"hist.{n}", "<i8", (k,)) for n in ("under", "over"))
    for name, arr in (("counts", counts), ("under", under), ("over", over)):
        if arr.size and int(arr.min()) < 0:
            raise ValueError(f"hist.{name}: expected counts >= 0, found {int(arr.min())}")
    out, e0, c0 = {}, 0, 0
    for i, (name, nb) in enumerate(zip(names, bins.tolist(), strict=True)):
        e = edges[e0:e0 + nb + 1]
        if not (np.all(np.isfinite(e)) and np.all(e[1:] > e[:-1])):
            raise ValueError(f"hist.edges of {name!r}: expected finite, strictly increasing edges")
        out[name] = HistSeries(e, counts[c0:c0 + nb], int(under[i]), int(over[i]))
        e0, c0 = e0 + nb + 1, c0 + nb
    return out


# --- checks ----------------------------------------------------------------------------------


def _dict(node: Any, where: str) -> dict[str, Any]:
    if not isinstance(node, dict) or not all(isinstance(k, str) for k in node):
        raise ValueError(f"{where}: expected a map with str keys, found {_short(node)}")
    return node


def _only(t: dict[str, Any], keys: Sequence[str], where: str) -> None:
    extra = sorted(set(t) - set(keys))
    if extra:
        raise ValueError(f"{where}: expected only the keys {', '.join(keys)}, found {', '.join(map(repr, extra[:5]))}")


def _count(t: dict[str, Any], key: str, where: str, most: int | None) -> int:
    v = t.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0 or (most is not None and v > most):
        bound = f"[0, {most}]" if most is not None else ">= 0"
        raise ValueError(f"{where}.{key}: expected a whole number in {bound}, found {_short(v)}")
    return v


def _counts(t: dict[str, Any], key: str, where: str, most: int | None, *, roi_keys: bool = False,
            allowed: Sequence[str] | None = None) -> dict[str, int]:
    d = _dict(t.get(key), f"{where}.{key}")
    _names(list(d), f"{where}.{key}", roi_keys=roi_keys, allowed=allowed)
    return {k: _count(d, k, f"{where}.{key}", most) for k in d}


def _names(node: Any, where: str, *, roi_keys: bool = False, allowed: Sequence[str] | None = None,
           also: Sequence[str] = (), named: bool = False) -> list[str]:
    if not isinstance(node, list) or not all(isinstance(n, str) and 0 < len(n) <= _MAX_NAME for n in node):
        raise ValueError(f"{where}: expected a list of names (1 to {_MAX_NAME} characters), found {_short(node)}")
    if len(set(node)) != len(node):
        raise ValueError(f"{where}: expected each name once, found {_short(node)}")
    for n in node:
        if n in also or (named and n.startswith(NAMED) and len(n) > len(NAMED)):
            continue  # ``named:<point, alias or channel>``: any name the source gives
        if roi_keys and not _ROI_KEY.match(n):
            raise ValueError(f"{where}: expected roi keys 'name/vK', found {n!r}")
        if allowed is not None and n not in allowed:
            raise ValueError(f"{where}: expected names among {', '.join(allowed) or 'none'}, found {n!r}")
    return list(node)


def _array(node: Any, where: str, dtype: str | None, shape: tuple[int, ...] | None) -> Array:
    if not isinstance(node, np.ndarray):
        raise ValueError(f"{where}: expected an array, found {_short(node)}")
    if dtype is not None:
        _dtype(node, dtype, where)
    elif node.dtype.str not in ("<f8", "<i8", "|b1"):
        raise ValueError(f"{where}: expected float64, int64 or bool, found {node.dtype.str}")
    if shape is not None and tuple(node.shape) != shape:
        raise ValueError(f"{where}: expected shape {shape}, found {tuple(node.shape)}")
    return node


def _dtype(a: Array, dtype: str, where: str) -> None:
    if a.dtype.str != dtype:
        raise ValueError(f"{where}: expected dtype {np.dtype(dtype).name}, found {a.dtype.name}")


def _short(v: Any) -> str:
    text = f"{type(v).__name__} {tuple(v.shape)}" if isinstance(v, np.ndarray) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
