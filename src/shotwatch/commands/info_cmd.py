"""``shotwatch info REC [--json]`` and ``shotwatch repair REC``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["format_info", "register"]


def _info(args: argparse.Namespace) -> int:
    from ..recording import RecordingReader, writer_pid

    info = RecordingReader(args.recording).info()
    if args.json:
        sys.stdout.write(json.dumps(info, indent=1, allow_nan=False) + "\n")
    else:
        sys.stdout.write(format_info(info, writer=None if info["closed"] else writer_pid(args.recording)))
    return 0


def _repair(args: argparse.Namespace) -> int:
    from ..recording import repair

    done = repair(args.recording)
    path, trimmed = done["path"], done["trimmed"]
    if done["was_closed"] and not trimmed and not done["temp_files_removed"]:
        print(f"{path}: closed cleanly, {done['committed']} shots; nothing to repair")
        return 0
    for array, old in sorted(trimmed.items()):
        print(f"{path}: {array}: " + ("removed (started after the last commit)" if old < 0
                                      else f"trimmed from {old} to the committed length"))
    if done["temp_files_removed"]:
        print(f"{path}: removed {done['temp_files_removed']} temporary file(s) left by a crash")
    print(f"{path}: repaired: {done['committed']} committed shots, closed")
    return 0


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def format_info(info: dict[str, Any], *, writer: int | None = None) -> str:
    """The human summary ``shotwatch info`` prints (one fact per line).

    ``writer``: the pid of the process writing the recording (its lock is held), or None.
    """
    tags = info["tags"]
    if info["closed"]:
        state = "closed"
    elif writer is not None:
        state = f"still recording, pid {writer}" if writer > 0 else "still recording"
    else:
        state = "crashed: `shotwatch repair` trims it"
    src = info["source"]
    lines = [
        f"recording  {info['path']} (format {info['format_version']}, {state})",
        f"shots      {info['committed']} committed"
        + (f", tags {tags['first']} .. {tags['last']} ({tags['gaps']} gaps)" if tags["first"] is not None else ""),
        "source     " + " ".join(f"{k} {v}" for k, v in src.items() if v is not None and not isinstance(v, dict | list)),
    ]
    for det, d in info["detectors"].items():
        lines.append(f"detector   {det}: {d['shape'][0]} x {d['shape'][1]} {d['dtype']}, {d['ev_per_adu']} eV/ADU")
    lines.append(f"points     {len(info['points'])}" + (": " + ", ".join(info["points"]) if info["points"] else ""))
    for name, versions in info["rois"].items():
        for v in versions:
            lines.append(f"roi        {name} v{v['version']} on {v['detector']}: x [{v['x'][0]}, {v['x'][1]}) "
                         f"y [{v['y'][0]}, {v['y'][1]}) from shot {v['first_shot']} (tag {v['first_tag']})")
    for v in info.get("analysis", []):
        lines.append(f"analysis   v{v['version']} from shot {v['first_shot']}"
                     + (f" (tag {v['first_tag']})" if v["first_tag"] >= 0 else "")
                     + (" (no committed shot yet)" if v["first_shot"] >= info["committed"] and v["version"] > 1 else "")
                     + f": {_sections(v['config'])}")
    for det, versions in info.get("darks", {}).items():
        for d in versions:
            lines.append(f"dark       {det} v{d['version']}: {d['frames']} frames, tags {d['first_tag']} .. "
                         f"{d['last_tag']}")
    for det, count in info["frames"].items():
        lines.append(f"frames     {det}: {count}")
    for m in info["marks"]:
        lines.append(f"mark       shot {m['shot']} tag {m['tag']}: {m['text']}")
    lines.append(f"size       {_mb(info['bytes'])}")
    return "\n".join(lines) + "\n"


def _sections(config: dict[str, Any]) -> str:
    """The analysis sections a version sets, briefly (``i0, veto (2), scan``).

    A section left at its defaults (``[alarm]`` has some) is not listed.
    """
    from ..schemas import Config

    defaults = Config().model_dump(mode="json")
    out = [f"{key} ({len(value)})" if isinstance(value, list) else key
           for key, value in config.items() if _is_set(value) and value != defaults.get(key)]
    return ", ".join(out) or "none"


def _is_set(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_is_set(v) for v in value.values())
    return value not in (None, [], "")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("info", help="what a recording holds")
    p.add_argument("recording", help="the .zarr directory")
    p.add_argument("--json", action="store_true", help="the JSON layout of INTERFACE.md")
    p.set_defaults(func=_info)
    r = sub.add_parser("repair", help="trim a crashed recording to its committed shots and close it")
    r.add_argument("recording", help="the .zarr directory (refused while a recorder is writing it)")
    r.set_defaults(func=_repair)
