"""The configuration: one TOML file validated by pydantic models (INTERFACE.md).

Every model forbids unknown keys, is frozen and documents each field; the JSON schema that
``shotwatch config schema`` prints is generated from these models.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Calibration", "Config", "EdgesRange", "I0", "KaraboSource", "PointPumpProbe", "PumpProbe",
    "Record", "ReplaySource", "Roi", "SaclaSource", "Scan", "SimSource", "Source",
    "TagModuloPumpProbe", "Veto", "ROI_NAME",
]

ROI_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_PULSES = re.compile(r"^(train|-?\d*:-?\d*(:-?\d*)?)$")


class _Model(BaseModel):
    # strict: a TOML string "4" is not a number; no NaN/inf: a NaN bound would veto nothing.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, strict=True,
                              allow_inf_nan=False)


# --- sources -----------------------------------------------------------------------------


class SimSource(_Model):
    """The built-in physics-based simulator (the default source)."""

    kind: Literal["sim"] = "sim"
    """Source kind."""
    seed: int = 0
    """Random seed; the same seed gives the same shots."""
    rate: float = Field(60.0, ge=0)
    """Shots per second; 0 = as fast as possible."""
    points: list[str] | None = None
    """Point detectors to record (default: all the simulator offers)."""


class ReplaySource(_Model):
    """A recording played back as a source."""

    kind: Literal["replay"] = "replay"
    """Source kind."""
    path: str
    """The recording (a ``.zarr`` directory)."""
    speed: float = Field(1.0, ge=0)
    """1.0 = recorded pace, 0 = as fast as possible."""


class SaclaSource(_Model):
    """SACLA's synchronised database (dbpy) and online image buffer (olpy)."""

    kind: Literal["sacla"] = "sacla"
    """Source kind."""
    beamline: Literal[1, 2, 3] = 3
    """Beamline number."""
    reference: str = "xfel_bl_3_tc_bm_1_pd/charge"
    """Point detector whose newest tag is followed."""
    ngrab: int = Field(120, ge=1)
    """Most shots per block."""
    points: list[str] | None = None
    """Point detectors to record (besides those the analysis sections name)."""
    api_path: str | None = None
    """Directory holding the dbpy/olpy modules, if they are not on PYTHONPATH."""


class KaraboSource(_Model):
    """European XFEL karabo-bridge."""

    kind: Literal["karabo"] = "karabo"
    """Source kind."""
    endpoint: str = Field(pattern=r"^tcp://[^:]+:\d+$")
    """The bridge's address, ``tcp://host:port``."""
    socket: Literal["REQ", "SUB"] = "REQ"
    """ZeroMQ pattern the bridge serves."""
    detector: str
    """The detector's karabo source name, e.g. ``SPB_DET_AGIPD1M-1/DET/0CH0:xtdf``."""
    pulses: str = "train"
    """``"train"`` (one shot per train, mean over pulses) or ``"START:STOP:STEP"``."""
    points: dict[str, str] = {}
    """``"source/key"`` -> point name."""

    @field_validator("pulses")
    @classmethod
    def _pulses(cls, v: str) -> str:
        if not _PULSES.match(v):
            raise ValueError(f"expected \"train\" or \"START:STOP:STEP\", found {v!r}")
        return v


Source = Annotated[SimSource | ReplaySource | SaclaSource | KaraboSource, Field(discriminator="kind")]


# --- analysis ----------------------------------------------------------------------------


class Calibration(_Model):
    """Pixel calibration applied by the reducers (never to stored pixels)."""

    threshold_ev: float | None = Field(None, ge=0)
    """Pixels whose energy (ADU x ev_per_adu) is below this are zeroed; absent = none."""
    photon_energy_ev: float | None = Field(None, gt=0)
    """If set, ROI values are photons (energy / photon energy), else eV."""
    ev_per_adu: dict[str, Annotated[float, Field(gt=0)]] = {}
    """Detector -> eV per ADU, overriding the recording's/source's value."""


class I0(_Model):
    """The incident-intensity monitor and its accepted window."""

    name: str
    """Point detector used as I0."""
    min: float = Field(gt=0)
    """Smallest accepted I0 (> 0, so ratios are finite)."""
    max: float | None = None
    """Largest accepted I0 (absent = no bound)."""

    @model_validator(mode="after")
    def _order(self) -> I0:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"expected max >= min ({self.min}), found max = {self.max}")
        return self


class Veto(_Model):
    """A shot is vetoed when this point detector is NaN or outside [min, max]."""

    name: str
    """Point detector (facility name)."""
    min: float | None = None
    """Lower bound (absent = none)."""
    max: float | None = None
    """Upper bound (absent = none)."""

    @model_validator(mode="after")
    def _order(self) -> Veto:
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError(f"expected max >= min ({self.min}), found max = {self.max}")
        return self


class Roi(_Model):
    """A named rectangle on one array detector: columns [x0, x1), rows [y0, y1), 0-based."""

    name: str = Field(pattern=ROI_NAME)
    """Unique name."""
    detector: str
    """Array detector id."""
    x: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] = Field(strict=False)
    """Columns [x0, x1), end-exclusive."""
    y: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] = Field(strict=False)
    """Rows [y0, y1), end-exclusive."""

    @model_validator(mode="after")
    def _order(self) -> Roi:
        if self.x[0] >= self.x[1]:
            raise ValueError(f"expected x0 < x1, found x = {list(self.x)}")
        if self.y[0] >= self.y[1]:
            raise ValueError(f"expected y0 < y1, found y = {list(self.y)}")
        return self

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise ValueError unless the rectangle lies inside a detector of ``shape`` (H, W)."""
        h, w = shape[-2], shape[-1]
        if self.x[1] > w or self.y[1] > h:
            raise ValueError(
                f"ROI {self.name!r} on {self.detector}: expected x <= {w} and y <= {h} "
                f"(detector is {h} rows x {w} columns), found x = {list(self.x)}, y = {list(self.y)}"
            )


MAX_BINS = 100_000
"""Most scan bins (``scan.edges.count``; an edges list has at most one more entry)."""


class EdgesRange(_Model):
    """``count`` bins between ``start`` and ``stop`` (count + 1 evenly spaced edges)."""

    start: float
    """First edge."""
    stop: float
    """Last edge."""
    count: int = Field(ge=1, le=MAX_BINS)
    """Number of bins (at most 100,000: a config from elsewhere must not allocate without bound)."""

    @model_validator(mode="after")
    def _order(self) -> EdgesRange:
        if not self.stop > self.start:
            raise ValueError(f"expected stop > start ({self.start}), found stop = {self.stop}")
        return self


class Scan(_Model):
    """The scanned variable and its bins: value = raw x scale + offset."""

    name: str
    """Point detector of the scanned variable (e.g. the delay stage)."""
    scale: float = 1.0
    """Multiplier applied to the raw value."""
    offset: float = 0.0
    """Added after scaling."""
    unit: str = ""
    """Unit of the scaled value, for display."""
    edges: EdgesRange | list[float]
    """``{start, stop, count}`` or a list of >= 2 strictly increasing edges."""

    @field_validator("edges")
    @classmethod
    def _edges(cls, v: EdgesRange | list[float]) -> EdgesRange | list[float]:
        if isinstance(v, list):
            if len(v) < 2:
                raise ValueError(f"expected at least 2 edges, found {len(v)}")
            if len(v) > MAX_BINS + 1:
                raise ValueError(f"expected at most {MAX_BINS + 1} edges, found {len(v)}")
            if any(b <= a for a, b in zip(v, v[1:], strict=False)):
                raise ValueError(f"expected strictly increasing edges, found {v}")
        return v

    def edges_array(self) -> np.ndarray:
        """The bin edges as float64."""
        if isinstance(self.edges, EdgesRange):
            return np.linspace(self.edges.start, self.edges.stop, self.edges.count + 1)
        return np.asarray(self.edges, dtype=np.float64)


class TagModuloPumpProbe(_Model):
    """Laser on when ``tag % cycle`` is in ``on``."""

    mode: Literal["tag-modulo"] = "tag-modulo"
    """Decision mode."""
    cycle: int = Field(ge=1)
    """Cycle length in tags."""
    on: list[Annotated[int, Field(ge=0)]]
    """Residues (tag % cycle) with the laser on."""

    @model_validator(mode="after")
    def _residues(self) -> TagModuloPumpProbe:
        bad = [r for r in self.on if r >= self.cycle]
        if bad:
            raise ValueError(f"expected residues below cycle ({self.cycle}), found {bad}")
        return self


class PointPumpProbe(_Model):
    """Laser on when a point detector exceeds a threshold (NaN = undecided)."""

    mode: Literal["point"] = "point"
    """Decision mode."""
    name: str
    """Point detector (a shutter status or a laser photodiode)."""
    threshold: float
    """On when value > threshold."""


PumpProbe = Annotated[TagModuloPumpProbe | PointPumpProbe, Field(discriminator="mode")]


class Record(_Model):
    """Where and what the recorder writes."""

    out: str = "recordings/{run}-{time}.zarr"
    """Path template; ``{run}`` and ``{time}`` (UTC, YYYYmmdd-HHMMSS) are filled in."""
    frames_every: int = Field(60, ge=0)
    """Keep one full frame every N shots (0 = none)."""
    fsync: bool = False
    """fsync every commit (data files and directories before the root attributes, then those),
    so that a power cut loses nothing committed; costs throughput (BENCHMARKS.md). A clean
    close always fsyncs."""


class Config(_Model):
    """A whole shotwatch configuration; every section is optional."""

    source: Source = Field(default_factory=SimSource)
    """Where shots come from."""
    calibration: Calibration = Field(default_factory=Calibration)
    """Pixel calibration."""
    i0: I0 | None = None
    """Incident-intensity normalisation and window."""
    veto: list[Veto] = []
    """Point-detector vetoes."""
    roi: list[Roi] = []
    """Regions of interest."""
    scan: Scan | None = None
    """Scan binning."""
    pump_probe: PumpProbe | None = None
    """Laser on/off split."""
    record: Record = Field(default_factory=Record)
    """Recording settings."""

    @model_validator(mode="before")
    @classmethod
    def _default_kind(cls, data: Any) -> Any:
        # A [source] table without `kind` means the simulator, as INTERFACE.md says.
        if isinstance(data, dict) and isinstance(data.get("source"), dict) and "kind" not in data["source"]:
            data = {**data, "source": {"kind": "sim", **data["source"]}}
        return data

    @field_validator("veto", "roi")
    @classmethod
    def _unique(cls, items: list[Any]) -> list[Any]:
        names = [item.name for item in items]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"expected unique names, found {', '.join(map(repr, dup))} more than once")
        return items

    def analysis_points(self) -> list[str]:
        """Point detectors named by the analysis sections (i0, veto, scan, pump_probe)."""
        names: list[str] = []
        if self.i0:
            names.append(self.i0.name)
        names += [v.name for v in self.veto]
        if self.scan:
            names.append(self.scan.name)
        if isinstance(self.pump_probe, PointPumpProbe):
            names.append(self.pump_probe.name)
        return list(dict.fromkeys(names))
