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
    "ANALYSIS_SECTIONS", "Alarm", "Calibration", "Channel", "Config", "EdgesRange", "EuxfelRunSource", "I0",
    "KaraboSource", "Mask", "PULSE_POINT", "PointPumpProbe", "PulseModuloPumpProbe", "PumpProbe", "Record",
    "ReplaySource", "Roi", "SaclaSource", "Scan", "SimEvent", "SimSource", "Source", "TagModuloPumpProbe",
    "TrainModuloPumpProbe", "Veto", "ROI_NAME",
]

ANALYSIS_SECTIONS = ("calibration", "mask", "alias", "channel", "alarm", "i0", "veto", "scan", "pump_probe")
"""The analysis: every section but ``source``, ``record`` and ``roi`` (INTERFACE.md)."""

ROI_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_PULSES = re.compile(r"^(train|-?\d*:-?\d*(:-?\d*)?)$")


# --- sources -----------------------------------------------------------------------------


class SimEvent(_Model):
    """A scripted event of the simulator (``[[source.events]]``): alarms and faults on cue.

    A pure function of the tag, like every simulated shot: slot ``s`` is the shot with tag
    ``first tag + 2 s`` (30 slots per second of the stream at the demo's rate), so every
    share of the stream and every block size sees the same event.
    """

    event: Literal["beam-off", "i0-drop", "stall"]
    """``"beam-off"``: beam status 0 and no X-rays; ``"i0-drop"``: a tenth of the intensity
    reaches the sample (I0 and photons); ``"stall"``: the source delivers no shot at all."""
    start: int = Field(ge=0)
    """First slot of the event."""
    slots: int = Field(ge=1, le=10_000_000)
    """How many slots it lasts."""


class SimSource(_Model):
    """The built-in physics-based simulator (the default source)."""

    kind: Literal["sim"] = "sim"
    """Source kind."""
    seed: int = 0
    """Random seed; a shot is a function of the seed and its tag alone."""
    rate: float = Field(30.0, ge=0)
    """Shots per second: 30 = SACLA BL3 on a shared beam (tags step by 2 whatever the rate); 0 =
    as fast as possible, synthesising only the ROI regions (see ``full_frames``)."""
    points: list[str] | None = None
    """Point detectors to record (default: all the simulator offers)."""
    shutter: Literal["auto", "open", "closed"] = "auto"
    """The X-ray shutter: ``"auto"`` closes now and then for a few seconds, ``"open"`` never
    closes, ``"closed"`` stays closed while the beam status still says beam on, so every frame
    is a dark (pedestal and noise, no photons): how to take a dark with the simulator."""
    full_frames: bool = False
    """At ``rate = 0``, deliver a full 1024 x 512 frame for every shot (the recorder cuts the
    ROIs) instead of synthesising only the ROI regions: the CPU-heavy workload. At ``rate > 0``
    every shot has a full frame anyway."""
    events: list[SimEvent] = Field([], max_length=1000)
    """Scripted beam-off bursts, I0 drops and stalls at chosen slots (tests of alarms)."""


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
    reference: str = ""
    """Point detector whose newest tag is followed (default: the beamline's beam monitor
    ``xfel_bl_<beamline>_tc_bm_1_pd/charge``)."""
    ngrab: int = Field(120, ge=1)
    """Most shots per block."""
    points: list[str] | None = None
    """Point detectors to record (besides those the analysis sections name)."""
    api_path: str | None = None
    """Directory holding the dbpy/olpy modules, if they are not on PYTHONPATH."""
    latency: float = Field(1.0, ge=0, le=30)
    """Seconds the newest shots wait for point values that reach the database late."""

    @model_validator(mode="after")
    def _reference(self) -> SaclaSource:
        if not self.reference:  # frozen: the default follows the beamline, set once here
            object.__setattr__(self, "reference", f"xfel_bl_{self.beamline}_tc_bm_1_pd/charge")
        return self


class _EuxfelSource(_Model):
    """Keys shared by the European XFEL sources (FACILITY.md)."""

    detectors: list[str] = []
    """The detectors: karabo source names, ``<source>[k]`` for module k of a multi-module source."""
    detector: str | None = None
    """One detector (the same as ``detectors = [it]``; kept for older configurations)."""
    pulses: str = "train"
    """``"train"`` (one shot per train, mean over pulses) or ``"START:STOP:STEP"``."""
    points: dict[str, str] = {}
    """``"source/key"`` -> point name."""
    xgm_pulses: int | None = Field(None, ge=1)
    """FEL pulses per train: per-pulse values of other sources (the XGM) past it are filler."""
    layout: Literal["file", "online"] | None = None
    """Pixel axes: "file" (pulses first) or "online" (pulses last); default: from the shapes."""

    @field_validator("pulses")
    @classmethod
    def _pulses(cls, v: str) -> str:
        if not _PULSES.match(v):
            raise ValueError(f"expected \"train\" or \"START:STOP:STEP\", found {v!r}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _one_list(cls, data: Any) -> Any:
        # `detector` (one name) stays accepted; the model keeps the list only.
        if isinstance(data, dict) and data.get("detector") is not None:
            if data.get("detectors"):
                raise ValueError("expected source.detector or source.detectors, found both")
            data = {**data, "detectors": [data["detector"]], "detector": None}
        return data

    @model_validator(mode="after")
    def _detectors(self) -> _EuxfelSource:
        v = self.detectors
        if not v:
            raise ValueError("expected at least one detector in source.detectors (or source.detector), found none")
        dup = sorted({d for d in v if v.count(d) > 1})
        if dup:
            raise ValueError(f"expected each of source.detectors once, found {', '.join(map(repr, dup))} more than once")
        return self


class KaraboSource(_EuxfelSource):
    """European XFEL karabo-bridge."""

    kind: Literal["karabo"] = "karabo"
    """Source kind."""
    endpoint: str = Field(pattern=r"^tcp://[^:]+:\d+$")
    """The bridge's address, ``tcp://host:port``."""
    socket: Literal["REQ", "SUB", "PULL"] = "REQ"
    """ZeroMQ pattern: REQ for a REP bridge, SUB for PUB, PULL for PUSH."""


class EuxfelRunSource(_EuxfelSource):
    """A European XFEL run directory read with extra-data, as if it came from the bridge."""

    kind: Literal["euxfel-run"] = "euxfel-run"
    """Source kind."""
    path: str
    """The run directory (relative to the configuration file)."""
    speed: float = Field(1.0, ge=0)
    """1 = 10 trains/s (European XFEL's rate), 0 = as fast as possible."""


Source = Annotated[SimSource | ReplaySource | SaclaSource | KaraboSource | EuxfelRunSource,
                   Field(discriminator="kind")]


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


class _ModuloPumpProbe(_Model):
    """Laser on when a number of the shot ``% cycle`` is in ``on``."""

    cycle: int = Field(ge=1)
    """Cycle length."""
    on: list[Annotated[int, Field(ge=0)]]
    """Residues (% cycle) with the laser on."""

    @model_validator(mode="after")
    def _residues(self) -> _ModuloPumpProbe:
        bad = [r for r in self.on if r >= self.cycle]
        if bad:
            raise ValueError(f"expected residues below cycle ({self.cycle}), found {bad}")
        return self


class TagModuloPumpProbe(_ModuloPumpProbe):
    """Laser on when ``tag % cycle`` is in ``on``."""

    mode: Literal["tag-modulo"] = "tag-modulo"
    """Decision mode."""


class PulseModuloPumpProbe(_ModuloPumpProbe):
    """European XFEL, one shot per pulse: laser on when the pulse's original index within its
    train ``% cycle`` is in ``on`` (the same pattern in every train)."""

    mode: Literal["pulse-modulo"] = "pulse-modulo"
    """Decision mode."""


class TrainModuloPumpProbe(_ModuloPumpProbe):
    """European XFEL: laser on when ``trainId % cycle`` is in ``on`` (every pulse of a train alike)."""

    mode: Literal["train-modulo"] = "train-modulo"
    """Decision mode."""


class PointPumpProbe(_Model):
    """Laser on when a point detector exceeds a threshold (NaN = undecided)."""

    mode: Literal["point"] = "point"
    """Decision mode."""
    name: str
    """Point detector (a shutter status or a laser photodiode)."""
    threshold: float
    """On when value > threshold."""


PumpProbe = Annotated[TagModuloPumpProbe | PointPumpProbe | PulseModuloPumpProbe | TrainModuloPumpProbe,
                      Field(discriminator="mode")]

PULSE_POINT = {"pulse-modulo": "pulse_index", "train-modulo": "train_id"}
"""The per-shot point each European XFEL pump-probe mode decides on (the sources deliver it)."""


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
        if isinstance(self.pump_probe, PulseModuloPumpProbe | TrainModuloPumpProbe):
            # the reserved point the European XFEL sources deliver per shot (FACILITY.md)
            named.append(("pump_probe.mode", PULSE_POINT[self.pump_probe.mode]))
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
        if isinstance(src, KaraboSource | EuxfelRunSource):
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
