"""What the simulated beam does, shot by shot: tags, point detectors and intensities.

The simulator imitates SACLA BL3 during a pump-probe delay scan (FACILITY.md):

- the accelerator's tag clock is 60 Hz and BL3 shares the beam, so it gets every other tag:
  tags step by 2 at 30 shots/s (a *slot* is one of BL3's pulses: ``tag = first_tag + 2 slot``),
  and now and then a tag is missing;
- the pulse energy fluctuates like SASE (gamma distributed), and pointing jitter changes how
  much of it reaches the sample, so only the I0 monitor at the sample tracks the signal;
- the beam goes off in bursts (beam status 0, I0 ~ 0) and the shutter closes now and then
  (``shutter = "auto"``; ``"closed"`` keeps it shut for a dark while the beam stays on);
- ``source.events`` scripts beam-off bursts, I0 drops and stalls (no shots) at chosen slots,
  for tests of the recorder's alarms;
- the delay stage steps through the demo's bins, dwelling 3 s per step;
- the laser is on when ``tag % 4 == 0``; after time zero ``t0`` the Bragg spot on laser-on
  shots changes by a factor ``1 + amplitude`` (negative: laser heating lowers it);
- each shot's intensity at the sample scales the photons it scatters onto the sensor: a
  diffuse background and a Bragg spot (``sim_photons``; pixels in ``sim_detector``).

Every value is a pure function of ``(seed, slot)``: slots come in chunks of ``CHUNK`` and each
chunk draws from generators seeded with ``(seed, stream, chunk)``. A burst that starts in one
chunk and runs into the next is found by redrawing the few earlier chunks' burst starts
(bounded work), so a chunk needs nothing but its number: any split of the stream (block sizes,
processes each generating a share of the chunks) gives the same shots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from .sim_detector import HOT_PIXELS, NAN_PATCH, PEDESTAL_ADU

__all__ = [
    "BEAM", "CHUNK", "CLOCK_HZ", "DELAY", "I0", "POINTS", "SHUTTER", "ShotParams",
    "Share", "ShutterMode", "Timeline", "Truth", "chunk_params", "draw_truth",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
ShutterMode = Literal["auto", "open", "closed"]

I0 = "xfel_bl_3_st_5_pd_user_5_fitting_peak/voltage"
BEAM = "xfel_mon_bpm_bl3_0_3_beamstatus/summary"
SHUTTER = "xfel_bl_3_shutter_1_open_valid/status"
DELAY = "xfel_bl_3_st_5_motor_user_1/position"
DIRECT = "xfel_bl_3_st_5_direct_bm_1_pd/charge"
TC_BM = ("xfel_bl_3_tc_bm_1_pd/charge", "xfel_bl_3_tc_bm_2_pd/charge")
SPEC = "xfel_bl_3_tc_spec_1/energy"
STATIC_MOTORS = tuple(
    [f"xfel_bl_3_st_5_motor_user_{k}/position" for k in (2, 3, 4, 5, 15, 18)]
    + [f"xfel_bl_3_st_5_motor_facility_{k}/position" for k in (10, 14)]
)
POINTS: tuple[str, ...] = (DIRECT, *TC_BM, SPEC, BEAM, SHUTTER, DELAY, *STATIC_MOTORS, I0)

HIGHTAG = 201902
CLOCK_HZ = 30.0  # BL3's pulses per second: the 60 Hz tag clock, every other tag
PHOTON_EV = 9000.0
SCAN_STEPS_PS = np.round(np.arange(-0.9, 3.0, 0.2), 3)  # the demo's bin centres
DWELL_SLOTS = 90  # 3 s per step at 30 Hz
MOVE_SLOTS = 3  # the stage is between positions for the first 0.1 s of a step
I0_VOLTS = 0.25  # mean I0 reading with the full beam
SASE_MODES = 10.0  # gamma shape of the pulse energy: ~32 % rms, typical of SASE
TIMING_JITTER_PS = 0.04  # laser-to-X-ray arrival jitter smears the step
CHUNK = 1024  # slots per chunk (34 s at 30 Hz): the unit of generation and of shares
_P_MISSING_TAG = 0.005
_P_NAN = 2e-4  # one point detector fails to read for one shot
_P_NO_FRAME = 2e-3  # the detector delivered no frame for a shot
_P_GLITCH = 0.03  # the sensor's NaN patch is on for a shot
# Bursts: (stream, start probability per slot, shortest and longest length in slots).
_BEAM_OFF = (11, 1 / 2000, 60, 300)  # every ~70 s, 2-10 s
_SHUTTER_SHUT = (12, 1 / 10000, 120, 600)  # every ~6 min, 4-20 s
I0_DROP = 0.1  # a scripted "i0-drop": a tenth of the intensity reaches the sample


class Event(Protocol):
    """A scripted event (``schemas.SimEvent``): ``event`` over slots ``[start, start + slots)``."""

    @property
    def event(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def slots(self) -> int: ...


@dataclass(frozen=True)
class Truth:
    """The hidden parameters of one simulated run, drawn from the seed (the answer key)."""

    seed: int
    t0_ps: float
    amplitude: float
    run: int
    first_tag: int
    motors: dict[str, float] = field(default_factory=dict)

    def attrs(self) -> dict[str, Any]:
        """Ground truth for ``describe().attrs``."""
        return {
            "seed": self.seed, "t0_ps": self.t0_ps, "amplitude": self.amplitude,
            "photon_energy_ev": PHOTON_EV, "delay_steps_ps": SCAN_STEPS_PS.tolist(),
            "dwell_shots": DWELL_SLOTS, "laser_on": "tag % 4 == 0",
            "timing_jitter_ps": TIMING_JITTER_PS, "clock_hz": CLOCK_HZ, "tag_step": 2,
            "first_tag": self.first_tag,
            "sensor": {"pedestal_adu": list(PEDESTAL_ADU), "hot_pixels": [[r, c] for r, c, _ in HOT_PIXELS],
                       "nan_patch": {"y": list(NAN_PATCH[0]), "x": list(NAN_PATCH[1]),
                                     "shots": _P_GLITCH}},
        }


def _nonneg(seed: int) -> int:
    return seed % (1 << 63)  # numpy seeds must be non-negative; keep any int a valid seed


def draw_truth(seed: int) -> Truth:
    """The run's hidden parameters: t0 well inside the scan, a 20-50 % drop, static motors."""
    rng = np.random.default_rng([_nonneg(seed), 0])
    t0 = round(float(rng.uniform(-0.4, 2.4)), 3)
    amplitude = round(float(-rng.uniform(0.2, 0.5)), 3)
    run = 880_000 + _nonneg(seed) % 100_000
    first_tag = 4 * int(rng.integers(50_000_000, 250_000_000))  # laser-on tag first
    motors = {name: float(rng.integers(-20_000, 20_000)) for name in STATIC_MOTORS}
    return Truth(seed, t0, amplitude, run, first_tag, motors)


@dataclass(frozen=True)
class ShotParams:
    """Everything about ``n`` shots but their pixels.

    Attributes:
        tags: int64 tags.
        slots: BL3 pulse slots since the run started (``(tag - first_tag) / 2``): the clock.
        points: every offered point detector -> float64 (NaN where the read failed).
        bg_scale: diffuse-scattering intensity relative to a mean full-beam shot.
        spot_scale: Bragg-spot intensity, the same times ``1 + amplitude`` when pumped.
        frame_ok: the detector delivered a frame for the shot.
        glitch: the sensor's NaN patch is on for the shot.
        chunk, index: the shot's chunk and its position among the chunk's shots (photons are
            drawn per chunk, for all its shots at once).
        chunk_scales: chunk -> ``(bg_scale, spot_scale)`` of all the chunk's shots.
    """

    tags: I64
    slots: I64
    points: dict[str, F64]
    bg_scale: F64
    spot_scale: F64
    frame_ok: BOOL
    glitch: BOOL
    chunk: I64
    index: I64
    chunk_scales: dict[int, tuple[F64, F64]]

    def __len__(self) -> int:
        return int(self.tags.shape[0])

    def select(self, shots: slice | I64) -> ShotParams:
        """The shots ``shots`` (a slice or increasing indices)."""
        return ShotParams(self.tags[shots], self.slots[shots], {k: v[shots] for k, v in self.points.items()},
                          self.bg_scale[shots], self.spot_scale[shots], self.frame_ok[shots], self.glitch[shots],
                          self.chunk[shots], self.index[shots], self.chunk_scales)

    def take(self, start: int, stop: int) -> ShotParams:
        return self.select(slice(start, stop))

    @staticmethod
    def concat(parts: list[ShotParams]) -> ShotParams:
        if len(parts) == 1:
            return parts[0]
        arrays = ("tags", "slots", "bg_scale", "spot_scale", "frame_ok", "glitch", "chunk", "index")
        joined = {name: np.concatenate([getattr(p, name) for p in parts]) for name in arrays}
        points = {k: np.concatenate([p.points[k] for p in parts]) for k in parts[0].points}
        scales = {c: s for p in parts for c, s in p.chunk_scales.items()}
        return ShotParams(points=points, chunk_scales=scales, **joined)


def delay_ps(slots: I64) -> F64:
    """The delay stage's set point (ps) at each pulse slot: a sawtooth of dwelling steps."""
    steps = SCAN_STEPS_PS
    k = (slots // DWELL_SLOTS) % len(steps)
    within = slots % DWELL_SLOTS
    here, before = steps[k], steps[k - 1]  # k - 1 = -1 wraps: the fly-back from the top
    frac = np.minimum((within + 1) / (MOVE_SLOTS + 1), 1.0)
    return np.asarray(before + (here - before) * frac, dtype=np.float64)


def _rng(seed: int, stream: int, chunk: int) -> np.random.Generator:
    return np.random.default_rng([_nonneg(seed), stream, chunk])


def _bursts(seed: int, chunk: int, spec: tuple[int, float, int, int]) -> BOOL:
    """Slots of ``chunk`` inside bursts, including bursts begun in earlier chunks."""
    stream, p, shortest, longest = spec
    mask = np.zeros(CHUNK, dtype=bool)
    lookback = math.ceil(longest / CHUNK)  # a burst never reaches further than this
    for c in range(max(0, chunk - lookback), chunk + 1):
        rng = _rng(seed, stream, c)
        starts = np.flatnonzero(rng.random(CHUNK) < p) + (c - chunk) * CHUNK
        lengths = rng.integers(shortest, longest, len(starts))
        for s, m in zip(starts.tolist(), lengths.tolist(), strict=True):
            if s + m > 0:
                mask[max(s, 0):s + m] = True
    return mask


def _scripted(slots: I64, events: Sequence[Event], kind: str) -> BOOL:
    """Slots inside a scripted event of ``kind`` (``source.events``)."""
    inside = np.zeros(len(slots), dtype=bool)
    for e in events:
        if e.event == kind:
            inside |= (slots >= e.start) & (slots < e.start + e.slots)
    return inside


def chunk_params(truth: Truth, chunk: int, shutter: ShutterMode = "auto", events: Sequence[Event] = ()) -> ShotParams:
    """The shots of slots ``[chunk * CHUNK, (chunk + 1) * CHUNK)``; missing tags left out.

    Pure: the same ``(truth.seed, chunk, shutter, events)`` always gives the same shots.
    Scripted ``events`` change only the slots they cover (the random draws stay as they
    were, so every other shot is what it is without them).
    """
    seed, n = truth.seed, CHUNK
    rng = _rng(seed, 1, chunk)
    slots = chunk * CHUNK + np.arange(n, dtype=np.int64)
    present = (rng.random(n) >= _P_MISSING_TAG) & ~_scripted(slots, events, "stall")
    tags = truth.first_tag + 2 * slots
    beam = ~_bursts(seed, chunk, _BEAM_OFF) & ~_scripted(slots, events, "beam-off")
    is_open = {"auto": ~_bursts(seed, chunk, _SHUTTER_SHUT), "open": np.ones(n, dtype=bool),
               "closed": np.zeros(n, dtype=bool)}[shutter]
    pulse = rng.gamma(SASE_MODES, 1 / SASE_MODES, n) * beam
    pointing = rng.normal(0.0, 0.3, (2, n))
    at_sample = pulse * np.exp(-0.5 * (pointing**2).sum(axis=0)) * is_open
    at_sample[_scripted(slots, events, "i0-drop")] *= I0_DROP
    delay = delay_ps(slots)
    pumped = (tags % 4 == 0) & (delay + rng.normal(0, TIMING_JITTER_PS, n) > truth.t0_ps)
    points = _points(rng, truth, slots, beam, is_open, pulse, at_sample)
    spot = at_sample * np.where(pumped, 1.0 + truth.amplitude, 1.0)
    frame_ok = rng.random(n) >= _P_NO_FRAME
    glitch = rng.random(n) < _P_GLITCH
    keep = np.flatnonzero(present)
    bg, spot = at_sample[keep], spot[keep]
    return ShotParams(tags[keep], slots[keep], {k: v[keep] for k, v in points.items()}, bg, spot,
                      frame_ok[keep], glitch[keep], np.full(len(keep), chunk, dtype=np.int64),
                      np.arange(len(keep), dtype=np.int64), {chunk: (bg, spot)})


def _points(rng: np.random.Generator, truth: Truth, slots: I64, beam: BOOL, is_open: BOOL,
            pulse: F64, at_sample: F64) -> dict[str, F64]:
    n = len(slots)
    noise = rng.normal(0.0, 1.0, (6, n))
    pts: dict[str, F64] = {
        I0: I0_VOLTS * at_sample * (1 + 0.01 * noise[0]) + 0.002 * noise[1],
        DIRECT: 0.3 * at_sample * (1 + 0.02 * noise[2]) + 0.003 * noise[3],
        TC_BM[0]: 0.8 * pulse + 0.01 * noise[4],
        TC_BM[1]: 0.6 * pulse + 0.01 * noise[5],
        SPEC: np.where(beam, PHOTON_EV + rng.normal(0.0, 9.0, n), rng.uniform(8500, 9500, n)),  # no beam: a failed fit
        BEAM: beam.astype(np.float64),
        SHUTTER: is_open.astype(np.float64),
        DELAY: np.round(1000.0 * delay_ps(slots)),  # the stage reads pulses (1 fs each)
    }
    for name, value in truth.motors.items():
        pts[name] = np.full(n, value)
    for values in pts.values():
        values[rng.random(n) < _P_NAN] = np.nan
    return pts


@dataclass(frozen=True)
class Share:
    """The part of the stream one of ``count`` processes delivers (an MPI rank's, say).

    The slots are cut into units of ``unit`` slots (default: a whole chunk of ``CHUNK``);
    share ``index`` takes units ``index``, ``index + count``, ``index + 2 count``, ... The
    shares of ``count`` processes, merged in tag order, are exactly the single-process stream.
    Whole chunks keep the per-chunk costs (seeding, burst look-back, photon draws) to one
    process each; smaller units (a divisor of ``CHUNK``) interleave the shares finely, as a
    live merge of them needs (``record --mpi``), at the price of every share computing the
    per-chunk draws of every chunk (cheap next to rendering pixels).
    """

    index: int = 0
    count: int = 1
    unit: int | None = None
    """Slots per unit, a divisor of ``CHUNK``; None = a whole chunk."""

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"share: expected 0 <= index < count, found index {self.index} of {self.count}")
        if self.unit is not None and not (1 <= self.unit <= CHUNK and CHUNK % self.unit == 0):
            raise ValueError(f"share: expected a unit dividing {CHUNK} slots, found {self.unit}")

    @property
    def slots_per_unit(self) -> int:
        return CHUNK if self.unit is None else self.unit

    def next_chunk(self, chunk: int) -> int:
        """The first chunk >= ``chunk`` holding a unit this share owns."""
        per = CHUNK // self.slots_per_unit
        first = chunk * per
        return (first + (self.index - first) % self.count) // per

    def next_slot(self, slot: int) -> int:
        """The first slot >= ``slot`` this share owns."""
        unit = slot // self.slots_per_unit
        owned = unit + (self.index - unit) % self.count
        return slot if owned == unit else owned * self.slots_per_unit

    def owns(self, slots: I64) -> BOOL:
        """Which of ``slots`` this share owns."""
        return np.asarray((slots // self.slots_per_unit) % self.count == self.index)


class Timeline:
    """Serves the shots of one share, from ``start_slot`` on, in any slicing."""

    def __init__(self, truth: Truth, *, shutter: ShutterMode = "auto", share: Share | None = None,
                 start_slot: int = 0, events: Sequence[Event] = ()) -> None:
        self._truth, self._shutter, self._events = truth, shutter, tuple(events)
        self._share = share or Share()
        self._start_slot = start_slot
        self._next_chunk = self._share.next_chunk(start_slot // CHUNK)
        self._buf: ShotParams | None = None
        self._pos = 0

    def _chunk(self) -> ShotParams:
        chunk = self._next_chunk
        self._next_chunk = self._share.next_chunk(chunk + 1)
        p = chunk_params(self._truth, chunk, self._shutter, self._events)
        first = int(np.searchsorted(p.slots, self._start_slot))
        p = p.take(first, len(p)) if first else p
        if self._share.slots_per_unit < CHUNK and self._share.count > 1:
            p = p.select(np.flatnonzero(self._share.owns(p.slots)))  # keeps index: the same photons
        return p

    def _ensure(self, k: int) -> ShotParams:
        """The buffer, holding at least ``k`` shots from the read position on."""
        if self._buf is None:
            self._buf, self._pos = self._chunk(), 0
        while len(self._buf) - self._pos < k:
            self._buf = ShotParams.concat([self._buf.take(self._pos, len(self._buf)), self._chunk()])
            self._pos = 0
        return self._buf

    def take(self, n: int) -> ShotParams:
        """The next ``n`` shots (consumed)."""
        buf = self._ensure(n)
        out = buf.take(self._pos, self._pos + n)
        self._pos += n
        return out

    def count_until(self, slot: int, limit: int) -> int:
        """How many of the next shots (at most ``limit``) have a slot <= ``slot``."""
        buf = self._ensure(limit)
        return int(np.searchsorted(buf.slots[self._pos:self._pos + limit], slot, side="right"))

    def next_slot(self) -> int:
        """Slot of the next shot."""
        return int(self._ensure(1).slots[self._pos])
