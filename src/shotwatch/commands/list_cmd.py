"""``shotwatch list [-c CONFIG] [FILTER]``: what the configured source offers.

Prints the run, the array detectors (shape, dtype, eV per ADU) and the point detectors,
keeping only names that contain FILTER (case-insensitive). The names printed are the ones to
use in ``[[roi]] detector``, ``[i0] name``, ``[[veto]] name``, ``[scan] name`` and
``source.points``.
"""

from __future__ import annotations

import argparse
import re
import sys

from ..schemas import SourceError, SourceInfo, load_config

__all__ = ["format_listing", "register"]


def _natural(name: str) -> list[str | int]:
    # motor_user_2 before motor_user_15, as people count
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def format_listing(info: SourceInfo, pattern: str = "") -> str:
    """The listing as text: run line, array detectors, point detectors, filtered by ``pattern``."""
    needle = pattern.lower()
    dets = {d: i for d, i in info.detectors.items() if needle in d.lower()}
    points = [p for p in info.points if needle in p.lower()]
    run = "unknown" if info.run is None else str(info.run)
    head = f"source {info.kind}, run {run}"
    if info.hightag is not None:
        head += f", hightag {info.hightag}"
    lines = [head, f"array detectors ({len(dets)} of {len(info.detectors)}):"]
    width = max((len(d) for d in dets), default=0)
    for det, d in sorted(dets.items(), key=lambda item: _natural(item[0])):
        lines.append(f"  {det:<{width}}  {d.shape[0]} x {d.shape[1]}  {d.dtype}  {d.ev_per_adu:g} eV/ADU")
    lines.append(f"point detectors ({len(points)} of {len(info.points)}):")
    lines += [f"  {p}" for p in sorted(points, key=_natural)]
    return "\n".join(lines) + "\n"


def _list(args: argparse.Namespace) -> int:
    from ..sources import open_source  # heavy: keep `shotwatch --help` fast

    config = load_config(args.config)
    try:  # a source refusing the configuration names the file, as open() does
        source = open_source(config, frames_every=0)
    except SourceError as exc:
        raise SourceError(f"{args.config or '<demo>'}: {exc}") from None
    try:
        source.open()
        info = source.describe()
    except SourceError as exc:
        raise SourceError(f"{args.config or '<demo>'}: {exc}") from None
    finally:
        source.close()
    for notice in source.notices():
        sys.stderr.write(f"{notice}\n")
    sys.stdout.write(format_listing(info, args.filter))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("list", help="run, array detectors and point detectors the source offers")
    p.add_argument("-c", "--config", metavar="CONFIG", help="configuration file (default: the built-in demo)")
    p.add_argument("filter", nargs="?", default="", metavar="FILTER",
                   help="show only names containing this (case-insensitive)")
    p.set_defaults(func=_list)
