"""Analysis.from_config: a configuration, the detectors and their darks -> an Analysis.

Everything that can be decided once per analysis is decided here, not per block: the gains,
the full-frame mask of each detector (``[[mask]]`` rectangles and pixels whose dark is too
noisy), the darks' shapes, the parsed channel expressions and the names they use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from ..schemas import Config, ConfigError, DarkFrame, DetectorInfo
from ..schemas.namespace import name_errors

if TYPE_CHECKING:
    from .analysis import Analysis

__all__ = ["build_analysis"]

A = TypeVar("A", bound="Analysis")
Bool = npt.NDArray[np.bool_]


def build_analysis(cls: type[A], config: Config, *, detectors: Mapping[str, DetectorInfo],
                   gains: Mapping[str, float], darks: Mapping[str, DarkFrame], roi_names: Iterable[str] | None,
                   version: int | None, origin: str) -> A:
    """See :meth:`Analysis.from_config`."""
    cal = config.calibration
    known = {**{d: float(g) for d, g in gains.items()}, **{d: float(i.ev_per_adu) for d, i in detectors.items()}}
    gains = {**known, **cal.ev_per_adu}
    _check_darks(darks, detectors, origin)
    channels = tuple((c.name, c.tree()) for c in config.channel)
    if roi_names is not None:
        errors = name_errors(aliases=config.alias, channels=channels, roi_names=roi_names, rois_from=origin)
        if errors:
            raise ConfigError(f"{origin}: {errors[0][0]}: {errors[0][1]}")
    scan = config.scan
    return cls(
        ev_per_adu=MappingProxyType(gains),
        threshold_ev=cal.threshold_ev,
        photon_energy_ev=cal.photon_energy_ev,
        i0=config.i0,
        vetoes=tuple(config.veto),
        scan_name=scan.name if scan else None,
        scan_scale=scan.scale if scan else 1.0,
        scan_offset=scan.offset if scan else 0.0,
        scan_unit=scan.unit if scan else "",
        edges=tuple(float(e) for e in scan.edges_array()) if scan else (),
        pump_probe=config.pump_probe,
        darks=MappingProxyType(dict(darks)),
        masks=MappingProxyType(_masks(config, detectors, darks, origin)),
        aliases=MappingProxyType(dict(config.alias)),
        channels=channels,
        version=version,
    )


def _check_darks(darks: Mapping[str, DarkFrame], detectors: Mapping[str, DetectorInfo], origin: str) -> None:
    for det, dark in darks.items():
        info = detectors.get(det)
        shape = tuple(int(x) for x in dark.mean.shape)
        if dark.std.shape != dark.mean.shape:
            raise ConfigError(f"{origin}: calibration.dark: expected mean and std of one shape for {det}, "
                              f"found {list(dark.mean.shape)} and {list(dark.std.shape)}")
        if info is not None and shape != tuple(info.shape):
            raise ConfigError(f"{origin}: calibration.dark: expected a dark of {det}'s shape "
                              f"{info.shape[0]} x {info.shape[1]}, found {' x '.join(map(str, shape))}")


def _masks(config: Config, detectors: Mapping[str, DetectorInfo], darks: Mapping[str, DarkFrame],
           origin: str) -> dict[str, Bool]:
    """detector -> full-frame mask; a detector not known yet (it may appear mid-run) gets none."""
    out: dict[str, Bool] = {}
    for i, m in enumerate(config.mask):
        info = detectors.get(m.detector)
        if info is None:
            continue
        try:
            m.check_shape(info.shape, where=f"mask[{i}]")
        except ValueError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        frame = out.setdefault(m.detector, np.zeros(info.shape, bool))
        frame[m.y[0]:m.y[1], m.x[0]:m.x[1]] = True
    limit = config.calibration.dark_noise_max_adu
    if limit is not None:
        for det, dark in darks.items():
            with np.errstate(invalid="ignore"):
                noisy: Any = np.asarray(dark.std) > limit
            out[det] = out[det] | noisy if det in out else noisy
    return {det: frame for det, frame in out.items() if frame.any()}
