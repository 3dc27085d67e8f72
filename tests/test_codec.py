"""The reducer state codec (reducers/codec.py): trees with arrays, round trips that merge exactly
like the states they came from, through the wire too, and malformed trees refused in one line."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import synth
from shotwatch.link import wire
from shotwatch.reducers import LiveSet, decode_state, encode_state
from test_reducers_props import CHANNELS, VERSIONS, analysis, stream


def _same(a: Any, b: Any) -> bool:
    """Exactly equal, NaN equal to NaN, arrays of the same dtype."""
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and \
            np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return bool(a == b)


def _results(ls: LiveSet, s: Any) -> dict[str, Any]:
    return {"summary": ls.summary.result(s.summary), "window": ls.window.result(s.window),
            "corr": ls.corr.result(s.corr), "hist": ls.hist.result(s.hist), "trend": ls.trend.result(s.trend)}


def _states(ls: LiveSet, blocks: list[Any]) -> Any:
    s = ls.init()
    for b in blocks:
        s = ls.update(s, b, versions=VERSIONS)
    return s


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), sizes=st.lists(st.integers(0, 40), min_size=1, max_size=6),
       cut=st.integers(0, 6), window=st.integers(1, 60), i0=st.booleans(), scan=st.booleans(),
       pp=st.sampled_from(["tag", "point", None]), channels=st.booleans(), wire_too=st.booleans())
def test_decoded_states_merge_exactly_like_the_originals(seed: int, sizes: list[int], cut: int, window: int,
                                                         i0: bool, scan: bool, pp: str | None, channels: bool,
                                                         wire_too: bool) -> None:
    a = analysis(i0=i0, scan=scan, pp=pp, channels=channels, dark=seed % 3 == 0, mask=seed % 2 == 0)
    ls = LiveSet(a, window=window, hist_bins=7, trend=5)
    blocks = stream(seed, sizes, "float32" if seed % 2 else "uint16", nan_pixels=0.02)
    cut = min(cut, len(blocks))
    first, second = _states(ls, blocks[:cut]), _states(ls, blocks[cut:])
    trees = ls.encode(first)
    if wire_too:  # what a StateMsg does to them
        trees = {k: wire.decode_tree([bytes(f) for f in wire.encode_tree(v)]) for k, v in trees.items()}
    back = ls.decode(trees)
    assert _same(_results(ls, ls.merge(back, second)), _results(ls, ls.merge(first, second)))
    assert _same(_results(ls, back), _results(ls, first))
    again = ls.encode(back)  # and encoding the decoded state gives the same tree
    assert _same(again, ls.encode(first))


def test_a_longer_window_than_the_receivers_keeps_the_newest_rows() -> None:
    a = analysis()
    blocks = stream(3, [30, 30])
    wide, narrow = LiveSet(a, window=50), LiveSet(a, window=20)
    s = _states(wide, blocks)
    got = narrow.window.result(decode_state(narrow.window, encode_state(wide.window, s.window)))
    assert got["tags"].tolist() == wide.window.result(s.window)["tags"].tolist()[-20:]


def _good() -> tuple[LiveSet, dict[str, Any]]:
    a = analysis(channels=True)
    ls = LiveSet(a, window=30, hist_bins=5, trend=4)
    return ls, ls.encode(_states(ls, stream(5, [12, 9, 15])))


def _break(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    _, trees = _good()
    t = copy.deepcopy(trees)
    node = t
    for p in path[:-1]:
        node = node[p]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value(node[path[-1]]) if callable(value) else value
    return t


_DELETE = object()
BAD: dict[str, tuple[tuple[Any, ...], Any, str]] = {
    "missing state": (("hist",), _DELETE, "states: expected"),
    "wrong kind": (("window", "kind"), "corr", "expected kind"),
    "codec 2": (("trend", "codec"), 2, "codec"),
    "accepted > total": (("summary", "accepted"), 10**6, "summary.accepted"),
    "negative total": (("summary", "total"), -1, "summary.total"),
    "bool total": (("summary", "total"), True, "summary.total"),
    "unknown veto": (("summary", "vetoed", "nope"), 1, "summary.vetoed"),
    "bad roi key": (("summary", "valid", "a"), 1, "roi keys"),
    "unknown channel": (("summary", "channels", "keys"), lambda k: ["zzz", *k[1:]], "summary.channels.keys"),
    "moments float counts": (("summary", "stats", "count"), lambda c: c.astype(np.float64), "dtype int64"),
    "moments cells": (("summary", "stats", "floats"), lambda f: f[:, :, :-1], "shape"),
    "moments negative": (("summary", "stats", "count"), lambda c: c - 10**6, "summary.stats.count"),
    "extra key": (("summary", "extra"), 1, "only the keys"),
    "tags decrease": (("window", "tags"), lambda t: t[::-1].copy(), "increasing"),
    "window length": (("window", "lengths"), lambda n: n + 1, "window.tags"),
    "window column": (("window", "groups", 0, "names"), lambda n: ["zz", *n[1:]], "window.groups"),
    "window list": (("window", "groups"), {}, "window.groups"),
    "corr keys": (("corr", "keys"), lambda k: k[:-1], "corr.lengths"),
    "hist edges": (("hist", "edges"), lambda e: e[::-1].copy(), "strictly increasing"),
    "hist bins": (("hist", "bins"), lambda b: b * 0, "hist.bins"),
    "hist under": (("hist", "under"), lambda u: u - 5, "hist.under"),
    "trend unpaired": (("trend", "groups", 0, "names"), lambda n: ["mean:zz/v9", *n[1:]], "trend.groups"),
    "not an array": (("hist", "counts"), [1, 2], "expected an array"),
    "not a map": (("corr",), [1], "expected a map"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_trees_are_refused_in_one_line(name: str) -> None:
    path, value, needle = BAD[name]
    ls, _ = _good()
    with pytest.raises(ValueError) as info:
        ls.decode(_break(path, value))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_good_trees_decode() -> None:  # the breakages above start from a tree that decodes
    ls, trees = _good()
    assert ls.decode(trees).summary.total == 36
    assert set(trees) == {"summary", "window", "corr", "hist", "trend"} and CHANNELS
    assert synth.DET in ls.analysis.ev_per_adu
