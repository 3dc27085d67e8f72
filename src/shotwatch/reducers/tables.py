"""Text outputs of ``reduce``: per-shot CSV, scan CSV and the human-readable summary."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..schemas import RoiVersion, ShotBlock, split_roi_key
from .analysis import Analysis, ShotTable, shot_table

__all__ = ["format_table", "per_shot_csv", "scan_csv"]

F64 = npt.NDArray[np.float64]
_DIFF = ("diff", "diff_sem", "rel", "rel_sem")


def per_shot_csv(blocks: Iterable[ShotBlock], analysis: Analysis, *, roi_names: list[str],
                 versions: Mapping[str, RoiVersion] | None = None) -> Iterator[str]:
    """``reduce --per-shot`` rows, each a string ending in a newline, header first.

    Columns ``tag,time,i0,accepted,scan,laser_on,<roi name>...,<channel name>...``: one column
    per ROI name with the value of whichever of its versions is valid at that shot, then one
    per channel. Empty cells for NaN, an invalid cutout, and a column whose section is not
    configured. Floats are written with Python's ``repr`` so they read back to the same
    float64. ``versions``: roi key -> version, as :func:`shot_table` takes them.
    """
    channels = list(analysis.channel_names)
    yield ",".join(["tag", "time", "i0", "accepted", "scan", "laser_on", *roi_names, *channels]) + "\n"
    for block in blocks:
        if not len(block):
            continue
        t = shot_table(block, analysis, versions or {})
        laser = [_flag(x) for x in t.laser.tolist()] if analysis.pump_probe is not None else _blank(len(t))
        columns = [
            [str(x) for x in t.tags.tolist()], _floats(t.time),
            _floats(t.i0), ["1" if x else "0" for x in t.accepted.tolist()], _floats(t.scan), laser,
            *(_floats(_by_name(t, name)) for name in roi_names),
            *(_floats(t.channels[name]) for name in channels),
        ]
        for row in zip(*columns, strict=True):
            yield ",".join(row) + "\n"


def scan_csv(result: dict[str, Any]) -> str:
    """``reduce --csv``: one row per scan bin (INTERFACE.md; existing columns never move).

    ``center``; per roi key ``count, norm, sem`` (with pump-probe also ``on.norm, off.norm``);
    the same per channel; then per roi key and channel ``sem_norm`` (with pump-probe also
    ``on.sem_norm, off.sem_norm, diff, diff_sem, rel, rel_sem``). Null cells are empty.
    Without a ``scan`` in ``result`` only the ``center`` header is written.
    """
    scan = result.get("scan")
    if not scan:
        return "center\n"
    header = ["center"]
    cols: list[Sequence[Any]] = [scan["centers"]]
    every = [*scan["rois"].items(), *scan.get("channels", {}).items()]
    for key, r in every:
        header += [f"{key}.count", f"{key}.norm", f"{key}.sem"]
        cols += [r["count"], r["norm"], r["sem"]]
        if "on" in r:
            header += [f"{key}.on.norm", f"{key}.off.norm"]
            cols += [r["on"]["norm"], r["off"]["norm"]]
    for key, r in every:
        header.append(f"{key}.sem_norm")
        cols.append(r["sem_norm"])
        if "on" in r:
            header += [f"{key}.on.sem_norm", f"{key}.off.sem_norm"] + [f"{key}.{k}" for k in _DIFF]
            cols += [r["on"]["sem_norm"], r["off"]["sem_norm"], *(r[k] for k in _DIFF)]
    lines = [",".join(header)]
    lines += [",".join(_cell(v) for v in row) for row in zip(*cols, strict=True)]
    return "\n".join(lines) + "\n"


def format_table(result: dict[str, Any]) -> str:
    """A short human-readable summary of a :class:`SummaryReducer` result."""
    shots = result["shots"]
    lines = [f"shots: {shots['total']} total, {shots['accepted']} accepted"]
    lines += [f"  vetoed by {name}: {count}" for name, count in shots["vetoed"].items()]
    rows = {**result["rois"], **result.get("channels", {})}
    if rows:
        width = max(12, *(len(k) for k in rows))
        lines.append(f"{'roi/channel':<{width}} {'count':>8} {'mean':>12} {'norm ± sem_norm':>24} {'nonfinite':>9}")
        for key, r in rows.items():
            lines.append(f"{key:<{width}} {r['count']:>8} {_num(r['mean']):>12} "
                         f"{_pm(r['norm'], r['sem_norm']):>24} {r['nonfinite']:>9}" + _onoff(r))
    else:
        lines.append("no ROI with valid shots")
    scan = result.get("scan")
    if scan:
        lines += _scan_lines(scan)
    return "\n".join(lines) + "\n"


def _scan_lines(scan: dict[str, Any]) -> list[str]:
    unit = f" [{scan['unit']}]" if scan["unit"] else ""
    lines = [f"scan {scan['name']}{unit}: {len(scan['centers'])} bins, {scan['outside']} accepted shots outside"]
    per = {**scan["rois"], **scan.get("channels", {})}
    keys = list(per)
    lines.append(f"{'center':>10} " + " ".join(f"{k + ' n':>8} {k + ' norm±sem_norm':>24}" for k in keys))
    for j, center in enumerate(scan["centers"]):
        cells = [f"{per[k]['count'][j]:>8} {_pm(per[k]['norm'][j], per[k]['sem_norm'][j]):>24}" for k in keys]
        lines.append(f"{_num(center):>10} " + " ".join(cells))
    return lines


def _pm(value: Any, err: Any) -> str:
    return _num(value) + ("" if err is None else "±" + _num(err))


def _onoff(r: dict[str, Any]) -> str:
    if "on" not in r:
        return ""
    return (f"   on {r['on']['count']} {_num(r['on']['norm'])}"
            f"  off {r['off']['count']} {_num(r['off']['norm'])}  diff {_pm(r['diff'], r['diff_sem'])}")


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"


def _cell(v: Any) -> str:
    return "" if v is None else repr(v)


def _flag(x: int) -> str:
    return "" if x < 0 else str(x)


def _blank(n: int) -> list[str]:
    return [""] * n


def _floats(values: F64) -> list[str]:
    # repr of a Python float is the shortest string that reads back to the same float64
    return ["" if v != v else repr(v) for v in values.tolist()]


def _by_name(t: ShotTable, name: str) -> F64:
    out = np.full(len(t), np.nan)
    for key, values in t.values.items():
        if split_roi_key(key)[0] == name:
            valid = t.valid[key]
            out[valid] = values[valid]
    return out
