"""What to compute (Analysis) and the per-shot table every reducer starts from.

INTERFACE.md "Reduction semantics": accepted, value(roi key, shot), channel values, scan
value and bin, laser.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from ..schemas import (
    I0,
    PULSE_POINT,
    Config,
    DarkFrame,
    DetectorInfo,
    PointPumpProbe,
    PulseModuloPumpProbe,
    RoiVersion,
    ShotBlock,
    TagModuloPumpProbe,
    TrainModuloPumpProbe,
    Veto,
    split_roi_key,
)
from ..schemas.expr import Node
from ._build import build_analysis
from .channels import evaluate_channels, named_points
from .values import calibrate

__all__ = ["Analysis", "ShotTable", "display_keys", "roi_versions", "shot_table", "shot_table_with"]

F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
PumpProbeMode = TagModuloPumpProbe | PointPumpProbe | PulseModuloPumpProbe | TrainModuloPumpProbe


@dataclass(frozen=True)
class Analysis:
    """Everything the reducers need to know about the analysis sections of a configuration.

    Build it with :meth:`from_config` (the one place that turns a configuration, the
    detectors and their darks into an Analysis); tests may construct it field by field.

    Attributes:
        ev_per_adu: detector id -> eV per ADU (``calibration.ev_per_adu`` already applied).
        threshold_ev: pixels whose energy is below this are zeroed (None = no threshold).
        photon_energy_ev: if set, ROI values are photons, else eV.
        i0: the I0 monitor and window, or None (its name may be an alias or a channel).
        vetoes: vetoes, in configuration order (names may be aliases or channels).
        scan_name: the scanned variable (a point, alias or channel), or None without ``[scan]``.
        scan_scale: multiplier of the raw scan value.
        scan_offset: added after scaling.
        scan_unit: unit of the scaled value.
        edges: bin edges (float64, strictly increasing); empty without ``[scan]``.
        pump_probe: the laser on/off rule, or None.
        darks: detector -> dark (mean subtracted before gain and threshold).
        masks: detector -> bool [H, W], true where a pixel never counts (``[[mask]]``
            rectangles and pixels whose dark std exceeds ``dark_noise_max_adu``).
        aliases: short name -> point detector.
        channels: (name, parsed expression) in configuration order.
        version: the analysis version reduced under (None: not one of the recording's).
    """

    ev_per_adu: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    threshold_ev: float | None = None
    photon_energy_ev: float | None = None
    i0: I0 | None = None
    vetoes: tuple[Veto, ...] = ()
    scan_name: str | None = None
    scan_scale: float = 1.0
    scan_offset: float = 0.0
    scan_unit: str = ""
    edges: tuple[float, ...] = ()
    pump_probe: PumpProbeMode | None = None
    darks: Mapping[str, DarkFrame] = field(default_factory=lambda: MappingProxyType({}))
    masks: Mapping[str, Bool] = field(default_factory=lambda: MappingProxyType({}))
    aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    channels: tuple[tuple[str, Node], ...] = ()
    version: int | None = 1

    @classmethod
    def from_config(cls, config: Config, *, detectors: Mapping[str, DetectorInfo] | None = None,
                    ev_per_adu: Mapping[str, float] | None = None, darks: Mapping[str, DarkFrame] | None = None,
                    roi_names: Iterable[str] | None = None, version: int | None = 1,
                    origin: str = "configuration") -> Analysis:
        """The analysis of ``config`` over these detectors: the one place every caller builds it.

        Args:
            config: the configuration (only its analysis sections are read).
            detectors: the source's or recording's array detectors (gain and shape);
                ``calibration.ev_per_adu`` overrides their gain detector by detector.
            ev_per_adu: gains of detectors whose shape is not known (tests, older callers):
                no mask applies to those.
            darks: detector -> dark to subtract (already loaded: from a dark file, or the
                recording's dark version that the analysis names).
            roi_names: the ROI names channel expressions may use (the recording's or the
                recorder's); None skips that check (the configuration checked its own ROIs).
            version: the analysis version this is (None: from ``-c``, not the recording's).
            origin: the file or recording the analysis comes from, for error messages.

        Raises:
            ConfigError: a mask outside its detector, a dark of another shape than its
                detector, or a channel naming something that is not there.
        """
        return build_analysis(cls, config, detectors=detectors or {}, gains=ev_per_adu or {}, darks=darks or {},
                              roi_names=roi_names, version=version, origin=origin)

    @property
    def n_bins(self) -> int:
        """Number of scan bins (0 without ``[scan]``)."""
        return max(0, len(self.edges) - 1)

    @property
    def veto_keys(self) -> tuple[str, ...]:
        """Keys of ``vetoed``: ``"i0"`` (with ``[i0]``) then each veto's name."""
        return (("i0",) if self.i0 else ()) + tuple(v.name for v in self.vetoes)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Channel names in configuration order."""
        return tuple(name for name, _ in self.channels)


@dataclass(frozen=True)
class ShotTable:
    """Per-shot quantities of one block (INTERFACE.md "Reduction semantics").

    Attributes:
        tags: int64[n].
        time: float64[n] unix seconds (NaN if unknown).
        i0: float64[n] raw I0 (NaN without ``[i0]`` or where missing).
        accepted: bool[n]: I0 in its window and every veto passes.
        vetoed: criterion (``"i0"``, veto names) -> bool[n], true where that criterion fails.
        scan: float64[n] scaled scan value (NaN without ``[scan]`` or where missing).
        bin: int64[n] scan bin, -1 outside the edges, NaN or without ``[scan]``.
        laser: int8[n] 1 on, 0 off, -1 undecided or without ``[pump_probe]``.
        values: roi key (``name/vK``) -> float64[n] calibrated value, NaN where invalid.
        valid: roi key -> bool[n], the cutout's ``valid``.
        nonfinite: roi key -> int64[n] pixels non-finite after dark subtraction, not masked.
        channels: channel name -> float64[n] value (NaN where undefined).
    """

    tags: npt.NDArray[np.int64]
    time: F64
    i0: F64
    accepted: Bool
    vetoed: Mapping[str, Bool]
    scan: F64
    bin: npt.NDArray[np.int64]
    laser: npt.NDArray[np.int8]
    values: Mapping[str, F64]
    valid: Mapping[str, Bool]
    nonfinite: Mapping[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    channels: Mapping[str, F64] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.tags.shape[0])


def shot_table(block: ShotBlock, analysis: Analysis, versions: Mapping[str, RoiVersion]) -> ShotTable:
    """The per-shot table of ``block``; points missing from the block are NaN for every shot.

    Args:
        block: the shots.
        analysis: what to compute.
        versions: roi key -> its version (the rectangle), for every cutout of ``block`` that a
            dark, a mask or ``pixels()`` applies to (``roi_versions(table.all())`` gives it).
    """
    values, nonfinite = {}, {}
    for key, cut in block.cutouts.items():
        values[key], nonfinite[key] = calibrate(analysis, key, cut, versions.get(key))
    return shot_table_with(block, analysis, values, nonfinite)


def shot_table_with(block: ShotBlock, analysis: Analysis, values: Mapping[str, F64],
                    nonfinite: Mapping[str, npt.NDArray[np.int64]]) -> ShotTable:
    """The per-shot table of ``block`` with its ROI values already known (``values`` and
    ``nonfinite`` per roi key of ``block.cutouts``, as :func:`shot_table` computes them).

    Only the cutouts' ``valid`` and shapes are read, never their pixels: the recorder's
    recomputation keeps every shot's values and reads the pixels of each shot once.
    """
    n = len(block)
    valid = {key: np.asarray(c.valid, bool) for key, c in block.cutouts.items()}
    channels = evaluate_channels(analysis, block, values, valid) if analysis.channels else {}
    # aliases and channels stand wherever a point name may: i0, vetoes, scan, pump-probe
    named = block.with_(points=named_points(analysis, block, channels)) if analysis.aliases or channels else block
    i0 = _point(named, analysis.i0.name, n) if analysis.i0 else np.full(n, np.nan)
    vetoed = _vetoes(named, analysis, i0)
    accepted = np.ones(n, bool)
    for bad in vetoed.values():
        accepted &= ~bad
    scan = np.full(n, np.nan)
    if analysis.scan_name is not None:
        scan = _point(named, analysis.scan_name, n) * analysis.scan_scale + analysis.scan_offset
    return ShotTable(
        tags=np.asarray(block.tags, np.int64), time=np.asarray(block.time, np.float64), i0=i0,
        accepted=accepted, vetoed=vetoed, scan=scan, bin=scan_bins(scan, analysis.edges),
        laser=_laser(named, analysis, n), values=values, valid=valid, nonfinite=nonfinite, channels=channels,
    )


def roi_versions(versions: Iterable[RoiVersion]) -> dict[str, RoiVersion]:
    """roi key -> version, the ``versions`` argument of :func:`shot_table`."""
    return {v.key: v for v in versions}


def scan_bins(values: F64, edges: tuple[float, ...] | F64) -> npt.NDArray[np.int64]:
    """Bin j holds edges[j] <= v < edges[j+1]; the last bin also v == edges[-1]; else -1."""
    e = np.asarray(edges, np.float64)
    nb = e.size - 1
    if nb < 1:
        return np.full(values.shape, -1, np.int64)
    j = np.searchsorted(e, values, side="right").astype(np.int64) - 1
    j[values == e[-1]] = nb - 1
    j[(j < 0) | (j >= nb) | np.isnan(values)] = -1
    return j


def display_keys(keys: Iterable[str]) -> dict[str, str]:
    """roi key -> result key: ``name`` when it is the only key of that name, else ``name/vK``.

    ``keys`` are the versions with at least one valid shot among the shots reduced; the
    mapping is sorted by (name, version) so results do not depend on arrival order.
    """
    parsed = sorted((split_roi_key(k), k) for k in set(keys))
    per_name: dict[str, int] = {}
    for (name, _), _key in parsed:
        per_name[name] = per_name.get(name, 0) + 1
    return {key: (name if per_name[name] == 1 else key) for (name, _), key in parsed}


def _point(block: ShotBlock, name: str, n: int) -> F64:
    values = block.points.get(name)
    return np.full(n, np.nan) if values is None else np.asarray(values, np.float64)


def _outside(values: F64, lo: float | None, hi: float | None, *, finite: bool) -> Bool:
    # I0 must be finite; a veto fails on NaN or out of bounds (absent bound = none, so +inf
    # passes a veto that has only a minimum)
    bad = ~np.isfinite(values) if finite else np.isnan(values)
    with np.errstate(invalid="ignore"):
        if lo is not None:
            bad |= values < lo
        if hi is not None:
            bad |= values > hi
    return bad


def _vetoes(block: ShotBlock, analysis: Analysis, i0: F64) -> dict[str, Bool]:
    vetoed: dict[str, Bool] = {}
    if analysis.i0 is not None:
        vetoed["i0"] = _outside(i0, analysis.i0.min, analysis.i0.max, finite=True)
    for veto in analysis.vetoes:
        bad = _outside(_point(block, veto.name, len(block)), veto.min, veto.max, finite=False)
        vetoed[veto.name] = vetoed[veto.name] | bad if veto.name in vetoed else bad
    return vetoed


def _laser(block: ShotBlock, analysis: Analysis, n: int) -> npt.NDArray[np.int8]:
    pp: Any = analysis.pump_probe
    if isinstance(pp, TagModuloPumpProbe):
        on = np.zeros(pp.cycle, np.int8)
        on[list(pp.on)] = 1
        return np.asarray(on[np.asarray(block.tags) % pp.cycle], np.int8)
    if isinstance(pp, PulseModuloPumpProbe | TrainModuloPumpProbe):
        # European XFEL: the pulse's index within its train, or the train id, as delivered
        # per shot by the source (tag = trainId x pulses_per_train + pulse would not do).
        v = _point(block, PULSE_POINT[pp.mode], n)
        known = np.isfinite(v)
        out = np.full(n, -1, np.int8)
        on = np.zeros(pp.cycle, np.int8)
        on[list(pp.on)] = 1
        out[known] = on[v[known].astype(np.int64) % pp.cycle]
        return out
    if isinstance(pp, PointPumpProbe):
        v = _point(block, pp.name, n)
        out = np.where(v > pp.threshold, 1, 0).astype(np.int8)
        out[np.isnan(v)] = -1
        return out
    return np.full(n, -1, np.int8)
