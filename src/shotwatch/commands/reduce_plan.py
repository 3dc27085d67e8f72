"""What ``reduce REC [REC …]`` reduces: the recordings, their analysis and one set of ROI keys.

INTERFACE.md (``reduce REC [REC …]``): several recordings reduce as one stream concatenated
in argument order. ROI versions with equal name, detector and rectangle in two or more
recordings merge into one key; every other version stays apart and is shown as
``<name>@<i>`` (i = the recording's position, from 1). The analysis is ``-c``'s, or else the
recordings' newest analysis versions, which must agree apart from their darks (each
recording keeps its own dark versions).

Inside the reduction every ROI version gets a key ``<name>/v<G>`` (G numbers the distinct
versions of that name over all recordings), so the reducers and channel expressions still
see the ROI's own name; :func:`shown` gives the result its keys. One recording keeps its own
keys, so its result is exactly what it always was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..schemas import ANALYSIS_SECTIONS, Config, RoiVersion, UsageError, load_config, roi_key

if TYPE_CHECKING:
    from ..recording import RecordingReader
    from ..reducers import Analysis

__all__ = ["Part", "Plan", "differing_keys", "make_plan", "merge_roi_keys", "part_analysis", "shown"]


@dataclass(frozen=True)
class Part:
    """One recording of a reduction: what any process needs to reduce its shots.

    Attributes:
        index: the recording's position on the command line, from 1.
        path: the recording (absolute, so a worker elsewhere on a shared file system finds it).
        config: the analysis it is reduced under (its own darks).
        version: that analysis's version in the recording (None: from ``-c``).
        origin: the file or recording the analysis comes from, for error messages.
        keys: the recording's roi key -> the key inside the reduction.
        versions: key inside the reduction -> its version (rectangle, detector) here.
        columns: ROI names of ``--per-shot`` (every recording's, sorted).
    """

    index: int
    path: str
    config: Config
    version: int | None
    origin: str
    keys: Mapping[str, str]
    versions: Mapping[str, RoiVersion]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """A reduction of one or more recordings, checked before anything is reduced.

    Attributes:
        parts: one per recording, in argument order.
        views: each recording's reader over the shots reduced (``--tags`` applied).
        analyses: each recording's analysis (built here, so every error comes first).
        labels: key inside the reduction -> (shown name, recording position or 0 when
            merged, version number shown); None for one recording (its own keys).
        version: the result's ``analysis_version``.
    """

    parts: tuple[Part, ...]
    views: tuple[RecordingReader, ...]
    analyses: tuple[Analysis, ...]
    labels: Mapping[str, tuple[str, int, int]] | None
    version: int | None

    @property
    def shots(self) -> int:
        """Shots reduced over every recording."""
        return sum(len(v) for v in self.views)


def make_plan(paths: Sequence[str], config_path: str | None, *, version: int | None = None,
              tags: tuple[int | None, int | None] = (None, None)) -> Plan:
    """The plan of ``reduce paths…`` (INTERFACE.md); every usage error is raised here.

    Raises:
        UsageError: ``-c`` with ``--analysis-version``, ``--analysis-version`` with several
            recordings, recordings whose analyses differ (without ``-c``), or anything the
            analysis names that a recording does not hold.
    """
    from ..recording import RecordingReader
    from ..recording.analysis_config import analysis_config, recording_analysis

    if config_path is not None and version is not None:
        raise UsageError(f"reduce: expected -c or --analysis-version, found both (-c {config_path}, "
                         f"--analysis-version {version})")
    if version is not None and len(paths) > 1:
        raise UsageError(f"reduce: --analysis-version: expected one recording (the version numbers are each "
                         f"recording's own), found {len(paths)}")
    readers = [RecordingReader(p) for p in paths]
    override = load_config(config_path) if config_path else None
    chosen = [recording_analysis(r, version) for r in readers]
    if override is None:
        _check_agreement(paths, chosen)
    rois = merge_roi_keys([r.rois.all() for r in readers])
    columns = tuple(sorted({name for r in readers for name in r.rois.versions}))
    parts, analyses = [], []
    for i, (path, reader, (number, recorded)) in enumerate(zip(paths, readers, chosen, strict=True)):
        cfg = analysis_config(recorded, override, points=reader.points, where=str(path), origin=config_path,
                              detectors=reader.detectors, roi_names=reader.rois.versions)
        part = Part(index=i + 1, path=str(Path(path).resolve()), config=cfg,
                    version=None if override is not None else number,
                    origin=config_path if override is not None and config_path else str(path),
                    keys=rois.keys[i], versions=rois.versions[i], columns=columns)
        parts.append(part)
        analyses.append(part_analysis(part, reader))
    numbers = {p.version for p in parts}
    views = tuple(r.select(tags=tags) if tags != (None, None) else r for r in readers)
    return Plan(tuple(parts), views, tuple(analyses), rois.labels,
                version=numbers.pop() if len(numbers) == 1 else None)


def part_analysis(part: Part, reader: RecordingReader) -> Analysis:
    """The Analysis of ``part`` over its recording: its detectors' gains, its own darks."""
    from ..recording.analysis_config import recording_darks
    from ..reducers import Analysis

    darks = recording_darks(part.config, reader, origin=part.origin)
    return Analysis.from_config(part.config, detectors=reader.detectors, darks=darks, version=part.version,
                                origin=part.origin)


# --- the analysis of several recordings ------------------------------------------------------


def _check_agreement(paths: Sequence[str], chosen: Sequence[tuple[int, Config]]) -> None:
    first_number, first = chosen[0]
    for path, (number, cfg) in zip(paths[1:], chosen[1:], strict=True):
        keys = differing_keys(first, cfg)
        if keys:
            raise UsageError(
                f"{path}: analysis version {number}: expected the analysis of {paths[0]} (version "
                f"{first_number}) apart from darks, or -c CONFIG, found differing {', '.join(keys)}")


def differing_keys(a: Config, b: Config) -> list[str]:
    """Dotted keys of the analysis sections where ``a`` and ``b`` differ, ``calibration.dark``
    aside (darks stay per recording)."""
    flat_a, flat_b = (_flat(_analysis_dict(c)) for c in (a, b))
    return sorted(k for k in flat_a.keys() | flat_b.keys() if flat_a.get(k, _MISSING) != flat_b.get(k, _MISSING))


_MISSING = object()


def _analysis_dict(cfg: Config) -> dict[str, Any]:
    d = cfg.model_dump(mode="json", include=set(ANALYSIS_SECTIONS))
    if isinstance(d.get("calibration"), dict):
        d["calibration"].pop("dark", None)
    return d


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flat(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


# --- ROI keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoiKeys:
    """Keys inside a reduction of several recordings (see :func:`merge_roi_keys`)."""

    keys: list[dict[str, str]]
    versions: list[dict[str, RoiVersion]]
    labels: dict[str, tuple[str, int, int]] | None


def merge_roi_keys(tables: Sequence[Sequence[RoiVersion]]) -> RoiKeys:
    """One set of keys over the recordings' ROI versions (``tables[i]``: recording i+1's).

    A version whose (name, detector, rectangle) occurs in two or more recordings merges with
    its equals into one key, shown ``<name>`` (``<name>/vJ`` when the name has several
    merged rectangles, numbered in order of appearance); any other is shown ``<name>@<i>``
    (``<name>@<i>/vK`` with the recording's own version number K when that recording has
    several such versions). One recording keeps its keys and needs no labels.
    """
    if len(tables) == 1:
        return RoiKeys([{v.key: v.key for v in tables[0]}], [{v.key: v for v in tables[0]}], None)
    seen: dict[tuple[object, ...], set[int]] = {}
    for i, table in enumerate(tables):
        for v in table:
            seen.setdefault(_identity(v), set()).add(i)
    counter: dict[str, int] = {}
    merged: dict[tuple[object, ...], str] = {}
    labels: dict[str, tuple[str, int, int]] = {}
    keys: list[dict[str, str]] = []
    versions: list[dict[str, RoiVersion]] = []
    for i, table in enumerate(tables):
        keys.append({})
        versions.append({})
        for v in sorted(table, key=lambda v: (v.name, v.version)):
            ident = _identity(v)
            key = merged.get(ident) if len(seen[ident]) > 1 else None
            if key is None:
                counter[v.name] = counter.get(v.name, 0) + 1
                key = roi_key(v.name, counter[v.name])
                if len(seen[ident]) > 1:
                    merged[ident] = key
                    labels[key] = (v.name, 0, sum(1 for k in merged if k[0] == v.name))
                else:
                    labels[key] = (f"{v.name}@{i + 1}", i + 1, v.version)
            keys[i][v.key] = key
            versions[i][key] = dataclasses.replace(v, version=int(key.rpartition("/v")[2]))
    return RoiKeys(keys, versions, labels)


def _identity(v: RoiVersion) -> tuple[object, ...]:
    return (v.name, v.detector, tuple(v.x), tuple(v.y))


def shown(result: dict[str, Any], result_keys: Mapping[str, str], labels: Mapping[str, tuple[str, int, int]],
          ) -> dict[str, Any]:
    """``result`` (a SummaryReducer result over a plan of several recordings) with the ROI
    keys INTERFACE.md shows: ``<name>`` or ``<name>@<i>``, with ``/vK`` only where that
    shown name has several keys among the shots reduced.

    Args:
        result: ``SummaryReducer.result(state)``.
        result_keys: ``SummaryReducer.result_keys(state)`` (key inside -> key in ``result``).
        labels: :attr:`Plan.labels`.
    """
    per_base: dict[str, int] = {}
    for key in result_keys:
        per_base[labels[key][0]] = per_base.get(labels[key][0], 0) + 1
    order = sorted(result_keys, key=lambda k: (labels[k][0].partition("@")[0], labels[k][1], labels[k][2]))
    final = {result_keys[k]: (labels[k][0] if per_base[labels[k][0]] == 1 else f"{labels[k][0]}/v{labels[k][2]}")
             for k in order}
    out = dict(result)
    out["rois"] = {final[k]: result["rois"][k] for k in final}
    if result.get("scan"):
        out["scan"] = {**result["scan"], "rois": {final[k]: result["scan"]["rois"][k] for k in final}}
    return out
