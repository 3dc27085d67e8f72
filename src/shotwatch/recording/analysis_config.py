"""The analysis a replay or reduction uses: from -c or the recording, checked against the recording.

INTERFACE.md: ROIs always come from the recording; the analysis sections all come from ``-c``
where given (a section missing from it is off), else from the recording's newest analysis
version. Everything the analysis names must be in the recording: points (an alias stands for
its point), detectors, and the ROI names channel expressions use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..schemas import (
    ANALYSIS_SECTIONS,
    AnalysisVersion,
    Config,
    ConfigError,
    DarkFrame,
    RecordingError,
    parse_config,
)
from ..schemas.namespace import name_errors
from .darkfile import read_dark_file

if TYPE_CHECKING:
    from .reader import RecordingReader

__all__ = ["analysis_config", "analysis_versions", "recording_analysis", "recording_darks"]


def analysis_config(recorded: Config, override: Config | None, *, points: Sequence[str],
                    where: str, origin: str | None = None, detectors: Iterable[str] | None = None,
                    roi_names: Iterable[str] | None = None) -> Config:
    """``recorded`` with its analysis sections replaced by ``override``'s (when given).

    ``[source]``, ``[record]`` and ``[[roi]]`` always stay the recording's. Every point the
    analysis reads must be in ``points`` (the recording's), every detector it names in
    ``detectors``, and every ROI a channel uses in ``roi_names``; otherwise a ConfigError
    names the key and lists what the recording holds.
    """
    cfg = recorded
    if override is not None:
        cfg = recorded.model_copy(update={k: getattr(override, k) for k in ANALYSIS_SECTIONS})
    src = origin if override is not None and origin else where
    held = set(points)
    for key, name in cfg.analysis_point_keys():
        if name not in held:
            raise ConfigError(f"{src}: {key}: expected a point detector that {where} holds "
                              f"({', '.join(sorted(held))}), found {name!r}")
    if detectors is not None:
        _check_detectors(cfg, sorted(detectors), src, where)
    if roi_names is not None:
        errors = name_errors(aliases=cfg.alias, channels=[(c.name, c.tree()) for c in cfg.channel],
                             roi_names=roi_names, rois_from=where)
        if errors:
            raise ConfigError(f"{src}: {errors[0][0]}: {errors[0][1]}")
    return cfg


def _check_detectors(cfg: Config, known: list[str], src: str, where: str) -> None:
    named = [("calibration.ev_per_adu", det) for det in cfg.calibration.ev_per_adu]
    named += [(f"mask[{i}].detector", m.detector) for i, m in enumerate(cfg.mask)]
    if isinstance(cfg.calibration.dark, dict):
        named += [("calibration.dark", det) for det in cfg.calibration.dark]
    for key, det in named:
        if det not in known:
            raise ConfigError(f"{src}: {key}: expected detectors that {where} holds "
                              f"({', '.join(known) or 'none'}), found {det!r}")


def analysis_versions(reader: RecordingReader) -> list[AnalysisVersion]:
    """The recording's analysis versions, oldest first (FORMAT.md root attribute ``analysis``)."""
    return reader.analysis_versions()


def recording_analysis(reader: RecordingReader, version: int | None = None) -> tuple[int, Config]:
    """(K, configuration) of the recording's analysis version K (default: its newest).

    The configuration is the recording's ``config`` with the version's analysis sections.
    """
    base = reader.config  # its own errors first: version 1 is its analysis sections
    versions = {v.version: v for v in analysis_versions(reader)}
    k = max(versions) if version is None else version
    if k not in versions:
        raise ConfigError(f"{reader.path}: --analysis-version: expected one of the recording's analysis "
                          f"versions ({', '.join(map(str, sorted(versions)))}), found {version}")
    try:
        chosen = parse_config({**versions[k].config, "source": {"kind": "sim"}},
                              origin=f"{reader.path}: attribute analysis[{k}].config")
    except ConfigError as exc:
        raise RecordingError(str(exc)) from None
    return k, base.model_copy(update={s: getattr(chosen, s) for s in ANALYSIS_SECTIONS})


def recording_darks(cfg: Config, reader: RecordingReader, *, origin: str) -> Mapping[str, DarkFrame]:
    """detector -> dark that ``cfg.calibration.dark`` names: the recording's dark versions
    (``{"<det>": k}``, ``dark/<det>/v<k>``) or a dark file (a path, FORMAT.md).

    A dark file is untrusted input like a recording (``read_dark_file`` checks it); each of
    its detectors must be one the recording holds, with the recording's frame shape.
    """
    dark = cfg.calibration.dark
    if not dark:
        return {}
    if isinstance(dark, dict):
        return {det: reader.dark(det, k) for det, k in dark.items()}
    frames = read_dark_file(dark)
    known = reader.detectors
    for det, frame in frames.items():
        info = known.get(det)
        if info is None:
            raise ConfigError(f"{origin}: calibration.dark: expected a dark of detectors that {reader.path} holds "
                              f"({', '.join(sorted(known)) or 'none'}), found {det!r} in {dark}")
        if tuple(frame.mean.shape) != tuple(info.shape):
            raise ConfigError(f"{origin}: calibration.dark: expected a dark of {det}'s {info.shape[0]} x "
                              f"{info.shape[1]} pixels, found {frame.mean.shape[0]} x {frame.mean.shape[1]} in {dark}")
    return frames
