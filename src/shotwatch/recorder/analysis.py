"""Checking an analysis a console sends (``set_analysis``) the way a configuration file is checked.

The sections are validated with the configuration's own models, then against what the
recording holds with the checks ``reduce -c`` makes (``recording.analysis_config``): every
point the analysis reads must be recorded, every detector it names known, every ROI a channel
uses one of the recorder's; a mask must fit its detector (``Analysis.from_config``). Any
failure is one line, ``<key>: expected …, found …``, and nothing is changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..recording.analysis_config import analysis_config
from ..reducers import Analysis
from ..schemas import ANALYSIS_SECTIONS, Config, ConfigError, DetectorInfo, parse_config

__all__ = ["ORIGIN", "check_analysis", "sections_json"]

ORIGIN = "analysis"
"""What the errors of a checked analysis start with (stripped: the reply names only the key)."""


def check_analysis(current: Config, sections: Mapping[str, Any], *, points: Sequence[str],
                   detectors: Mapping[str, DetectorInfo], roi_names: Iterable[str],
                   darks: Mapping[str, Sequence[int]]) -> Config:
    """``current`` with its analysis sections replaced by ``sections`` (a section missing is off).

    Args:
        current: the configuration in force.
        sections: the analysis sections as JSON (every section but source, record and roi).
        points: the point detectors the recording holds.
        detectors: the source's array detectors.
        roi_names: the ROI names a channel may use.
        darks: detector -> its dark versions in the recording (``calibration.dark`` may name
            only those; a dark file is taken with ``shotwatch dark`` and given at start).

    Raises:
        ConfigError: one line, ``<key>: expected …, found …``.
    """
    try:
        return _check(current, sections, points=points, detectors=detectors, roi_names=list(roi_names), darks=darks)
    except ConfigError as exc:
        raise ConfigError(str(exc).removeprefix(f"{ORIGIN}: ")) from None


def _check(current: Config, sections: Mapping[str, Any], *, points: Sequence[str],
           detectors: Mapping[str, DetectorInfo], roi_names: list[str], darks: Mapping[str, Sequence[int]]) -> Config:
    extra = [k for k in sections if k not in ANALYSIS_SECTIONS]
    if extra:
        raise ConfigError(f"{extra[0]}: expected an analysis section ({', '.join(ANALYSIS_SECTIONS)}), "
                          f"found {extra[0]!r}")
    override = parse_config(dict(sections), origin=ORIGIN)
    dark = override.calibration.dark
    if isinstance(dark, str):
        raise ConfigError(f"calibration.dark: expected dark versions the recording holds ({{\"<det>\": k}}, as D "
                          f"takes them), found a file {dark!r}")
    for det, k in (dark or {}).items():
        if k not in darks.get(det, ()):
            held = ", ".join(f"{d} v{v}" for d, vs in darks.items() for v in vs) or "none"
            raise ConfigError(f"calibration.dark.{det}: expected a dark version the recording holds ({held}), "
                              f"found {k}")
    cfg = analysis_config(current, override, points=points, where="the recording", origin=ORIGIN,
                          detectors=detectors, roi_names=roi_names)
    Analysis.from_config(cfg, detectors=detectors, roi_names=roi_names, origin=ORIGIN)  # masks fit their detectors
    return cfg


def sections_json(config: Config) -> dict[str, Any]:
    """The analysis sections of ``config`` as JSON (what an analysis version records)."""
    dumped = config.model_dump(mode="json")
    return {k: dumped[k] for k in ANALYSIS_SECTIONS}
