"""The configuration: one TOML file validated by pydantic models (INTERFACE.md).

Every model forbids unknown keys, is frozen and documents each field; the JSON schema that
``shotwatch config schema`` prints is generated from these models.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from ._model import _Model
from .analysis_sections import Alarm, Channel, Mask
from .expr import RESERVED
from .namespace import check_name, name_errors

__all__ = [
    "ANALYSIS_SECTIONS", "Alarm", "Calibration", "Channel", "Config", "EdgesRange", "I0", "KaraboSource",
    "Mask", "PointPumpProbe", "PumpProbe", "Record", "ReplaySource", "Roi", "SaclaSource", "Scan", "SimSource",
    "Source", "TagModuloPumpProbe", "Veto", "ROI_NAME",
]

ANALYSIS_SECTIONS = ("calibration", "mask", "alias", "channel", "alarm", "i0", "veto", "scan", "pump_probe")
"""The analysis: every section but ``source``, ``record`` and ``roi`` (INTERFACE.md)."""

ROI_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_PULSES = re.compile(r"^(train|-?\d*:-?\d*(:-?\d*)?)$")


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
    dark: str | dict[str, Annotated[int, Field(ge=1)]] | None = None
    """A dark file (``shotwatch dark``; relative to the config file) whose mean is subtracted from
    every pixel before gain and threshold; in a recording's analysis version, detector -> the
    recording's dark version."""
    dark_noise_max_adu: float | None = Field(None, gt=0)
    """Pixels whose dark standard deviation (ADU) exceeds this are masked (noisy or hot)."""


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


class EdgesRange(_Model):
    """``count`` bins between ``start`` and ``stop`` (count + 1 evenly spaced edges)."""

    start: float
    """First edge."""
    stop: float
    """Last edge."""
    count: int = Field(ge=1)
    """Number of bins."""

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
    mask: list[Mask] = []
    """Detector rectangles whose pixels never count."""
    alias: dict[Annotated[str, AfterValidator(check_name)], Annotated[str, Field(min_length=1)]] = {}
    """Short name -> point detector; usable wherever a point name is; aliased points are recorded."""
    channel: list[Channel] = []
    """Derived per-shot values."""
    alarm: Alarm = Field(default_factory=Alarm)
    """Alarms."""
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
    def _unique(cls, items: list[Any]) -> list[Any]:  # also for channel, see below
        names = [item.name for item in items]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"expected unique names, found {', '.join(map(repr, dup))} more than once")
        return items

    @field_validator("channel")
    @classmethod
    def _unique_channels(cls, items: list[Channel]) -> list[Channel]:
        return cls._unique(items)

    @model_validator(mode="after")
    def _names(self) -> Config:
        """One namespace (INTERFACE.md): checked here against this file's own ROIs, if it has any
        (an analysis file for ``reduce -c`` may have none: the recording's are checked later)."""
        errors = [(f"roi[{i}].name", f"expected a name other than {', '.join(sorted(RESERVED))}, found {r.name!r}")
                  for i, r in enumerate(self.roi) if r.name in RESERVED]
        errors += name_errors(aliases=self.alias, channels=[(c.name, c.tree()) for c in self.channel],
                              roi_names=[r.name for r in self.roi] if self.roi else None, rois_from="this file")
        vetoes = [v.name for v in self.veto]
        if self.alarm.beam is not None and self.alarm.beam not in vetoes:
            errors.append(("alarm.beam", f"expected the name of a [[veto]] ({', '.join(vetoes) or 'none'}), "
                                         f"found {self.alarm.beam!r}"))
        if errors:
            raise _located(*errors[0])
        return self

    def analysis_point_keys(self) -> list[tuple[str, str]]:
        """(dotted key, point detector) of every point the analysis sections read.

        The names ``i0``, ``veto``, ``scan`` and ``pump_probe`` use, except aliases and channels
        (a channel reads no point of its own), then every alias's point (aliased points are
        recorded, INTERFACE.md), keyed ``alias.<name>``.
        """
        derived = set(self.alias) | {c.name for c in self.channel}
        named: list[tuple[str, str]] = [("i0.name", self.i0.name)] if self.i0 else []
        named += [(f"veto[{i}].name", v.name) for i, v in enumerate(self.veto)]
        named += [("scan.name", self.scan.name)] if self.scan else []
        if isinstance(self.pump_probe, PointPumpProbe):
            named.append(("pump_probe.name", self.pump_probe.name))
        return [(k, n) for k, n in named if n not in derived] + [(f"alias.{a}", p) for a, p in self.alias.items()]

    def analysis_points(self) -> list[str]:
        """Point detectors the analysis sections read (:meth:`analysis_point_keys`), each once."""
        return list(dict.fromkeys(name for _, name in self.analysis_point_keys()))

    def recorded_points(self, offered: Sequence[str] = ()) -> list[str]:
        """The point detectors a recording of this configuration holds (INTERFACE.md).

        ``source.points`` (karabo: the point names its table maps to; absent: every point in
        ``offered`` for the simulator and replay, none for a facility) plus
        :meth:`analysis_points`.
        """
        src = self.source
        chosen: Sequence[str] | None = None
        if isinstance(src, KaraboSource):
            chosen = list(src.points.values())
        elif isinstance(src, SimSource | SaclaSource):
            chosen = src.points
        if chosen is None:
            chosen = offered if src.kind in ("sim", "replay") else []
        return list(dict.fromkeys([*chosen, *self.analysis_points()]))


def _located(where: str, message: str) -> ValidationError:
    """A validation error at the dotted key ``where`` (pydantic prefixes it with the path so far)."""
    loc: list[str | int] = []
    for part in where.split("."):
        name, _, index = part.partition("[")
        loc.append(name)
        if index:
            loc.append(int(index.rstrip("]")))
    detail = InitErrorDetails(type=PydanticCustomError("shotwatch_names", message), loc=tuple(loc), input=None)
    return ValidationError.from_exception_data("Config", [detail])
