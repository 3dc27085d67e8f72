"""What the simulated beam does, shot by shot: tags, point detectors and intensities.

The simulator imitates SACLA BL3 during a pump-probe delay scan (FACILITY.md):

- tags step by 2 (the beamline shares the accelerator), with an occasional missing tag;
- the pulse energy fluctuates like SASE (gamma distributed), and pointing jitter changes how
  much of it reaches the sample, so only the I0 monitor at the sample tracks the signal;
- the beam goes off in bursts (beam status 0, I0 ~ 0), the shutter closes now and then;
- the delay stage steps through the demo's bins, dwelling a few seconds per step;
- the laser is on when ``tag % 4 == 0``; after time zero ``t0`` the Bragg spot on laser-on
  shots changes by a factor ``1 + amplitude`` (negative: laser heating lowers it).

Everything here is per-shot scalars, generated in fixed chunks from one seeded generator so
the same seed gives the same shots whatever the block sizes. Pixels live in ``sim_detector``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BEAM", "DELAY", "I0", "POINTS", "SHUTTER", "ShotParams", "Timeline", "Truth", "draw_truth",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]

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
PHOTON_EV = 9000.0
SCAN_STEPS_PS = np.round(np.arange(-0.9, 3.0, 0.2), 3)  # the demo's bin centres
DWELL_SLOTS = 180  # 3 s per step at 60 Hz
MOVE_SLOTS = 6  # the stage is between positions for the first 0.1 s of a step
I0_VOLTS = 0.25  # mean I0 reading with the full beam
SASE_MODES = 10.0  # gamma shape of the pulse energy: ~32 % rms, typical of SASE
TIMING_JITTER_PS = 0.04  # laser-to-X-ray arrival jitter smears the step
_CHUNK = 4096
_P_MISSING_TAG = 0.005
_P_BEAM_OFF = 1 / 4000  # a beam-off burst starts, per shot
_P_SHUTTER = 1 / 20000
_P_NAN = 2e-4  # one point detector fails to read for one shot
_P_NO_FRAME = 2e-3  # the detector delivered no frame for a shot


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
            "timing_jitter_ps": TIMING_JITTER_PS,
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
    """Per-shot scalars for ``n`` consecutive shots.

    Attributes:
        tags: int64 tags.
        slots: pulse slots since the run started (tag steps / 2); they set the clock.
        points: every offered point detector -> float64 (NaN where the read failed).
        bg_scale: diffuse-scattering intensity relative to a mean full-beam shot.
        spot_scale: Bragg-spot intensity, the same times ``1 + amplitude`` when pumped.
        frame_ok: the detector delivered a frame for the shot.
    """

    tags: I64
    slots: I64
    points: dict[str, F64]
    bg_scale: F64
    spot_scale: F64
    frame_ok: BOOL

    def __len__(self) -> int:
        return int(self.tags.shape[0])

    def take(self, start: int, stop: int) -> ShotParams:
        s = slice(start, stop)
        return ShotParams(self.tags[s], self.slots[s], {k: v[s] for k, v in self.points.items()},
                          self.bg_scale[s], self.spot_scale[s], self.frame_ok[s])


def _concat(parts: list[ShotParams]) -> ShotParams:
    if len(parts) == 1:
        return parts[0]
    return ShotParams(
        np.concatenate([p.tags for p in parts]), np.concatenate([p.slots for p in parts]),
        {k: np.concatenate([p.points[k] for p in parts]) for k in parts[0].points},
        np.concatenate([p.bg_scale for p in parts]), np.concatenate([p.spot_scale for p in parts]),
        np.concatenate([p.frame_ok for p in parts]),
    )


def delay_ps(slots: I64) -> F64:
    """The delay stage's set point (ps) at each pulse slot: a sawtooth of dwelling steps."""
    steps = SCAN_STEPS_PS
    k = (slots // DWELL_SLOTS) % len(steps)
    within = slots % DWELL_SLOTS
    here, before = steps[k], steps[k - 1]  # k - 1 = -1 wraps: the fly-back from the top
    frac = np.minimum((within + 1) / (MOVE_SLOTS + 1), 1.0)
    return np.asarray(before + (here - before) * frac, dtype=np.float64)


class Timeline:
    """Generates :class:`ShotParams` in fixed chunks and serves them in any slicing."""

    def __init__(self, truth: Truth) -> None:
        self._truth = truth
        self._rng = np.random.default_rng([_nonneg(truth.seed), 1])
        self._next_slot = 0
        self._beam_off_left = 0  # shots left in a burst that crosses a chunk boundary
        self._shutter_left = 0
        self._buf: ShotParams | None = None
        self._pos = 0

    def _chunk(self) -> ShotParams:
        rng, n = self._rng, _CHUNK
        steps = np.where(rng.random(n) < _P_MISSING_TAG, 2, 1)
        slots = self._next_slot + np.cumsum(steps) - steps[0]
        self._next_slot = int(slots[-1]) + 1
        tags = (self._truth.first_tag + 2 * slots).astype(np.int64)
        beam = ~self._bursts(rng, n, _P_BEAM_OFF, (60, 300), "_beam_off_left")
        shutter = ~self._bursts(rng, n, _P_SHUTTER, (120, 600), "_shutter_left")
        pulse = rng.gamma(SASE_MODES, 1 / SASE_MODES, n) * beam
        pointing = rng.normal(0.0, 0.3, (2, n))
        at_sample = pulse * np.exp(-0.5 * (pointing**2).sum(axis=0)) * shutter
        delay = delay_ps(slots)
        pumped = (tags % 4 == 0) & (delay + rng.normal(0, TIMING_JITTER_PS, n) > self._truth.t0_ps)
        points = self._points(rng, tags, slots, beam, shutter, pulse, at_sample)
        spot = at_sample * np.where(pumped, 1.0 + self._truth.amplitude, 1.0)
        frame_ok = rng.random(n) >= _P_NO_FRAME
        return ShotParams(tags, slots.astype(np.int64), points, at_sample, spot, frame_ok)

    def _bursts(self, rng: np.random.Generator, n: int, p: float, length: tuple[int, int],
                carry: str) -> BOOL:
        """Boolean mask of shots inside bursts that start with probability ``p`` per shot."""
        mask = np.zeros(n, dtype=bool)
        end = int(getattr(self, carry))  # a burst carried over from the previous chunk
        mask[:end] = True
        starts = np.flatnonzero(rng.random(n) < p)
        lengths = rng.integers(length[0], length[1], len(starts))
        for s, m in zip(starts.tolist(), lengths.tolist(), strict=True):
            mask[s:s + m] = True
            end = max(end, s + m)
        setattr(self, carry, max(0, end - n))
        return mask

    def _points(self, rng: np.random.Generator, tags: I64, slots: npt.NDArray[np.int_],
                beam: BOOL, shutter: BOOL, pulse: F64, at_sample: F64) -> dict[str, F64]:
        n = len(tags)
        noise = rng.normal(0.0, 1.0, (6, n))
        pts: dict[str, F64] = {
            I0: I0_VOLTS * at_sample * (1 + 0.01 * noise[0]) + 0.002 * noise[1],
            DIRECT: 0.3 * at_sample * (1 + 0.02 * noise[2]) + 0.003 * noise[3],
            TC_BM[0]: 0.8 * pulse + 0.01 * noise[4],
            TC_BM[1]: 0.6 * pulse + 0.01 * noise[5],
            SPEC: np.where(beam, PHOTON_EV + rng.normal(0.0, 9.0, n), rng.uniform(8500, 9500, n)),  # no beam: a failed fit
            BEAM: beam.astype(np.float64),
            SHUTTER: shutter.astype(np.float64),
            DELAY: np.round(1000.0 * delay_ps(slots)),  # the stage reads pulses (1 fs each)
        }
        for name, value in self._truth.motors.items():
            pts[name] = np.full(n, value)
        for values in pts.values():
            values[rng.random(n) < _P_NAN] = np.nan
        return pts

    def _ensure(self, k: int) -> ShotParams:
        """The buffer, holding at least ``k`` shots from the read position on."""
        if self._buf is None:
            self._buf, self._pos = self._chunk(), 0
        while len(self._buf) - self._pos < k:
            self._buf = _concat([self._buf.take(self._pos, len(self._buf)), self._chunk()])
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
