"""The root ``shotwatch`` attributes: building them, and checking a recording to append to."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..schemas import Config, SourceInfo
from ..schemas.errors import RecordingError
from ._format import FORMAT, VERSION, json_object, jsonable
from ._versions import NOT_ANALYSIS, first_analysis

__all__ = ["check_compatible", "det_dtype", "detectors_attr", "new_attrs"]


def new_attrs(config: Config, source: SourceInfo) -> dict[str, Any]:
    """The root attributes of a new recording (``committed`` 0, not closed, no marks).

    ``source`` holds ``kind``, ``run``, ``hightag`` and whatever else the source knows
    (``SourceInfo.attrs``); its detectors go to ``detectors``, its points to the arrays.
    """
    src = {"kind": source.kind, "run": source.run, "hightag": source.hightag,
           **{k: v for k, v in source.attrs.items() if k not in ("kind", "run", "hightag")}}
    config_json = jsonable(config.model_dump(mode="json"))
    return json_object({
        "format": FORMAT, "version": VERSION, "committed": 0, "closed": False,
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "software": f"shotwatch {__version__}",
        "source": src, "config": config_json, "detectors": detectors_attr(source), "marks": [],
        "analysis": [first_analysis(config_json)],
    })


def detectors_attr(source: SourceInfo) -> dict[str, Any]:
    """``detectors``: id -> ``{"shape", "dtype", "ev_per_adu"}``."""
    return {d: info.model_dump(mode="json") for d, info in source.detectors.items()}


def det_dtype(attrs: dict[str, Any], det: str) -> str | None:
    """The recorded pixel dtype of ``det``, or None if the recording does not know it."""
    info = attrs.get("detectors", {}).get(det)
    return str(info["dtype"]) if isinstance(info, dict) and "dtype" in info else None


def check_compatible(path: Path, attrs: dict[str, Any], config: Config, source: SourceInfo,
                     analysis: Mapping[str, Any]) -> None:
    """RecordingError naming every dotted config key (ROIs aside) and detector that differ.

    ``source`` and ``record`` are compared with the recording's ``config``, the analysis
    sections with ``analysis`` (the newest analysis version's: what was in force at its end).
    """
    old = {k: v for k, v in attrs.get("config", {}).items() if k in NOT_ANALYSIS and k != "roi"}
    old.update(analysis)
    new = {k: v for k, v in jsonable(config.model_dump(mode="json")).items() if k != "roi"}
    _dark_file_as_recorded(old, new)
    diff = _diff(old, new, "")
    for det, info in detectors_attr(source).items():
        had = attrs.get("detectors", {}).get(det)
        if had is not None and (list(had["shape"]), had["dtype"]) != (list(info["shape"]), info["dtype"]):
            diff.append(f"detector {det} ({had['dtype']}{list(had['shape'])} -> {info['dtype']}{list(info['shape'])})")
    if diff:
        raise RecordingError(f"{path}: expected the recording's configuration (ROIs aside) to append, "
                             f"found differences in {', '.join(diff)}")


def _dark_file_as_recorded(old: dict[str, Any], new: dict[str, Any]) -> None:
    """A dark file in the configuration is no difference from the dark versions recorded.

    A recording's analysis names dark versions (``calibration.dark = {"<det>": k}``), never
    the file they were copied from (INTERFACE.md): the recorder compares the file's frames
    with those versions itself and records them anew where they differ.
    """
    old_cal, new_cal = old.get("calibration"), new.get("calibration")
    if isinstance(old_cal, dict) and isinstance(new_cal, dict) and isinstance(old_cal.get("dark"), dict) \
            and isinstance(new_cal.get("dark"), str):
        new["calibration"] = {**new_cal, "dark": old_cal["dark"]}


def _diff(old: Any, new: Any, where: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in dict.fromkeys([*old, *new]):
            out += _diff(old.get(key), new.get(key), f"{where}.{key}" if where else str(key))
        return out
    return [] if old == new else [where or "(top level)"]
