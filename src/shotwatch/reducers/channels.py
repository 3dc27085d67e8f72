"""Channels and aliases per block: expressions evaluated vectorised over the block's shots.

A name in an expression is an earlier channel, an alias (its point's value) or an ROI name
(the value of whichever version of that ROI is valid at the shot: versions never overlap in
time, so a channel is one key across versions). ``pixels(ROI)`` is the area of that version's
rectangle. Every intermediate result that is not finite becomes NaN (x/0, log of a negative,
an overflow), so NaN is what propagates, never an error and never an infinity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..schemas import ShotBlock, split_roi_key
from ..schemas.expr import Bin, Call, Name, Neg, Node, Num, Pixels

if TYPE_CHECKING:
    from .analysis import Analysis

__all__ = ["evaluate_channels", "named_points"]

F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]

_UNARY: dict[str, Callable[[F64], F64]] = {"abs": np.abs, "sqrt": np.sqrt, "log": np.log, "exp": np.exp}
_BINARY: dict[str, Callable[[F64, F64], F64]] = {"+": np.add, "-": np.subtract, "*": np.multiply,
                                                 "/": np.divide}


def evaluate_channels(analysis: Analysis, block: ShotBlock, values: Mapping[str, F64],
                      valid: Mapping[str, Bool]) -> dict[str, F64]:
    """channel name -> float64[n] for every channel of ``analysis``, in order."""
    n = len(block)
    by_name: dict[str, list[str]] = {}
    for key in values:
        by_name.setdefault(split_roi_key(key)[0], []).append(key)

    def roi(name: str, column: Callable[[str], F64]) -> F64:
        out = np.full(n, np.nan)
        for key in by_name.get(name, ()):
            ok = valid[key]
            out[ok] = column(key)[ok]
        return out

    def area(key: str) -> F64:
        h, w = block.cutouts[key].pixels.shape[1:]
        return np.full(n, float(h * w))

    env: dict[str, F64] = {}

    def lookup(name: str) -> F64:
        if name in env:
            return env[name]
        if name in analysis.aliases:
            return _finite(_column(block, analysis.aliases[name], n))
        return roi(name, values.__getitem__)

    with np.errstate(all="ignore"):
        for name, tree in analysis.channels:
            env[name] = _evaluate(tree, n, lookup, lambda r: roi(r, area))
    return env


def named_points(analysis: Analysis, block: ShotBlock, channels: Mapping[str, F64]) -> dict[str, F64]:
    """The block's points plus every alias (its point's values) and channel, by name."""
    n = len(block)
    points = dict(block.points)
    points.update({a: _column(block, target, n) for a, target in analysis.aliases.items()})
    points.update(channels)
    return points


def _evaluate(node: Node, n: int, lookup: Callable[[str], F64], pixels: Callable[[str], F64]) -> F64:
    if isinstance(node, Num):
        return np.full(n, node.value)
    if isinstance(node, Name):
        return lookup(node.name)
    if isinstance(node, Pixels):
        return pixels(node.roi)
    if isinstance(node, Neg):
        return -_evaluate(node.arg, n, lookup, pixels)
    if isinstance(node, Bin):
        left = _evaluate(node.left, n, lookup, pixels)
        return _finite(_BINARY[node.op](left, _evaluate(node.right, n, lookup, pixels)))
    if isinstance(node, Call):
        args = [_evaluate(a, n, lookup, pixels) for a in node.args]
        if node.func in _UNARY:
            return _finite(_UNARY[node.func](args[0]))
        # np.minimum/maximum propagate NaN, as every other operation does
        return _finite((np.minimum if node.func == "min" else np.maximum).reduce(args))
    raise TypeError(f"not an expression node: {node!r}")  # the parser builds nothing else


def _finite(x: F64) -> F64:
    return np.where(np.isfinite(x), x, np.nan)


def _column(block: ShotBlock, name: str, n: int) -> F64:
    values = block.points.get(name)
    return np.full(n, np.nan) if values is None else np.asarray(values, np.float64)
