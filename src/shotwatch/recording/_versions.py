"""Analysis versions: the root attribute ``analysis`` (FORMAT.md, INTERFACE.md "analysis versions").

The analysis is every configuration section but ``source``, ``record`` and ``roi``. Version 1
is written when the recording is created (its ``first_tag`` is -1 until the first commit,
which fills it in); later versions are appended by ``RecordingWriter.add_analysis`` at a
block boundary and never rewritten.

**A crash between recording a version and committing its first shot.** A version is
recorded at once (the root attributes are rewritten, as for a mark), before any shot under
it is committed, so a crash can leave a version whose ``first_shot`` is at or past
``committed``. Readers keep such a version and list it: an analysis version is a choice of
analysis for the whole recording (the recorder recomputes everything so far under it), and
``first_shot`` only says from which shot the live numbers used it. A version whose
``first_shot`` is *past* ``committed`` after a crash belongs to the lost tail, like an ROI
version that started there: ``record --append`` and ``repair`` drop it (the numbering then
continues after the versions kept), a version starting exactly at ``committed`` stays (it
applies from the next shot).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ..schemas import AnalysisVersion
from ..schemas.errors import RecordingError
from ._format import json_object

__all__ = ["NOT_ANALYSIS", "analysis_sections", "check_dark_refs", "dark_refs", "first_analysis",
           "parse_analysis", "without_tail"]

NOT_ANALYSIS = ("source", "record", "roi")
_ENTRY = '{"version": int, "first_shot": int, "first_tag": int, "time": float, "by": str, "config": {...}}'


def analysis_sections(config: Mapping[str, Any]) -> dict[str, Any]:
    """The analysis sections of a configuration (as JSON): everything but source, record, roi."""
    return {k: v for k, v in config.items() if k not in NOT_ANALYSIS}


def first_analysis(config: Mapping[str, Any], *, first_tag: int = -1, at: float | None = None) -> dict[str, Any]:
    """Version 1 as a JSON entry of ``analysis``."""
    return json_object({"version": 1, "first_shot": 0, "first_tag": first_tag,
                     "time": time.time() if at is None else at, "by": "", "config": analysis_sections(config)})


def parse_analysis(attrs: Mapping[str, Any], where: str, *, first_tag: int = -1) -> list[AnalysisVersion]:
    """The ``analysis`` attribute as validated AnalysisVersions; RecordingError naming the entry.

    A recording written before analysis versions existed has no such attribute: its version 1
    is then the analysis sections of ``config`` (``first_tag`` as given).
    """
    raw = attrs.get("analysis")
    if raw is None:
        config = attrs.get("config", {})
        sections = analysis_sections(config) if isinstance(config, Mapping) else {}
        return [AnalysisVersion(version=1, first_shot=0, first_tag=first_tag, config=sections)]
    if not isinstance(raw, list) or not raw:
        raise RecordingError(f"{where}: attribute analysis: expected a non-empty list of {_ENTRY}, "
                             f"found {_short(raw)}")
    out: list[AnalysisVersion] = []
    for i, entry in enumerate(raw):
        try:
            v = AnalysisVersion.model_validate(entry, strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = "".join(f".{p}" for p in first["loc"])
            raise RecordingError(f"{where}: attribute analysis[{i}]{loc}: expected {_ENTRY}, found "
                                 f"{_short(entry)} ({first['msg']})") from None
        if v.version != i + 1:
            raise RecordingError(f"{where}: attribute analysis[{i}].version: expected {i + 1} (versions are "
                                 f"numbered from 1, in order), found {v.version}")
        if out and v.first_shot < out[-1].first_shot:
            raise RecordingError(f"{where}: attribute analysis[{i}].first_shot: expected >= {out[-1].first_shot} "
                                 f"(that of version {i}), found {v.first_shot}")
        bad = sorted(set(v.config) & set(NOT_ANALYSIS))
        if bad:
            raise RecordingError(f"{where}: attribute analysis[{i}].config: expected the analysis sections "
                                 f"only, found {', '.join(bad)}")
        out.append(v)
    return out


def without_tail(entries: Sequence[Mapping[str, Any]], committed: int) -> list[dict[str, Any]]:
    """The entries of ``analysis`` to keep after a crash: those starting by ``committed``."""
    return [dict(e) for e in entries if int(e["first_shot"]) <= committed]


def dark_refs(config: Mapping[str, Any]) -> dict[str, Any]:
    """``calibration.dark`` when it names dark versions (``{"<det>": k}``), else ``{}``."""
    cal = config.get("calibration")
    dark = cal.get("dark") if isinstance(cal, Mapping) else None
    return dict(dark) if isinstance(dark, Mapping) else {}


def check_dark_refs(config: Mapping[str, Any], darks: Mapping[str, Sequence[int]], where: str) -> None:
    """RecordingError (naming ``where``) unless every dark version ``config`` names is recorded."""
    for det, k in dark_refs(config).items():
        held = list(darks.get(det, ()))
        if not (isinstance(k, int) and not isinstance(k, bool) and k in held):
            raise RecordingError(f"{where}.calibration.dark.{det}: expected a recorded dark version of {det} "
                                 f"({', '.join(map(str, held)) or 'none'}), found {k!r}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
