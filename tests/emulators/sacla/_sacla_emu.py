"""Shared state of the SACLA ``dbpy``/``olpy`` emulator: a wall clock, runs, tags, data, faults.

Both emulated modules use the one :data:`EMU` instance (``dbpy._emu`` is ``olpy._emu``). Time
is emulated: ``E = (wall - wall0) * speed``; shot slot ``k`` happens at ``E = k / rate`` and has
tag ``tag0 + step * k``: the tag clock is the accelerator's 60 Hz and a shared beamline gets
every other tag, so by default ``rate`` = 30 shots/s and ``step`` = 2 (FACILITY.md). A slot may
be skipped (no tag at all); a point detector may lack a tag (NaN); the image buffer keeps
``buffer_seconds`` of emulated time. Values are pure functions of (seed, name, tag), so a test
can recompute what the emulator served.

Like the facility: a run's recording intervals are half-open ``[start, end)`` (a tag belongs
to exactly one run), point detectors deliver whatever the run state (between runs too), point
values other than the reference's reach the database ``point_latency`` s after their tag,
every dbpy call costs ``call_cost`` s of wall time (plus ``item_cost`` per tag it returns), and
arguments are type-checked as strictly as the C extension does (tuples of ints, not lists).
Tag lists are generated from the clock when asked, so a run that began an hour ago
(``history = 3600``: 108,000 tags) costs nothing until someone asks for its whole list.

Configure with ``EMU.configure(...)`` or, at import, the ``SACLA_EMU`` environment variable
(JSON object of the same keywords), e.g. ``SACLA_EMU='{"speed": 2, "missing_det": ["X"]}'``.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HIGHTAG = 201902
TAG_HZ = 60  # the accelerator's tag clock
REF = "xfel_bl_3_tc_bm_1_pd/charge"
I0 = "xfel_bl_3_st_5_pd_user_5_fitting_peak/voltage"
BEAM = "xfel_mon_bpm_bl3_0_3_beamstatus/summary"
SHUTTER = "xfel_bl_3_shutter_1_open_valid/status"
DELAY = "xfel_bl_3_st_5_motor_user_1/position"
LASER_PD = "xfel_bl_3_st_5_pd_laser_fitting_peak/voltage"
DIRECT = "xfel_bl_3_st_5_direct_bm_1_pd/charge"
MAIN_POINTS = (REF, I0, BEAM, SHUTTER, DELAY, LASER_PD, DIRECT)
SINGLE = "MPCCD-1N0-M06-004"
OCTAL = tuple(f"MPCCD-8N0-3-002-{k}" for k in range(1, 9))
SPOT_DETECTORS = (SINGLE, OCTAL[0])
SPOT_YX = (300, 200)  # the demo configuration's "bragg" ROI is y = [284, 316], x = [184, 216]
GAIN = 3.0  # mp_absgain: 3.0 x 3.65 = 10.95 eV/ADU
ADU_PER_PHOTON = 9000.0 / (GAIN * 3.65)
SCAN_PULSES = tuple(range(-1000, 3001, 250))
T0_PS, TAU_PS, DEPTH = 0.5, 0.7, 0.3


class APIError(RuntimeError):
    """What the emulated facility calls raise (the real modules raise their own error type)."""


def _filler_names() -> tuple[str, ...]:
    # The real equipment list is thousands of names long; mostly motors and diodes.
    names: list[str] = [f"xfel_bl_{bl}_tc_bm_1_pd/charge" for bl in (1, 2)]
    for bl in (1, 2, 3):
        for st in range(1, 6):
            names += [f"xfel_bl_{bl}_st_{st}_motor_user_{k}/position" for k in range(2, 61)]
            names += [f"xfel_bl_{bl}_st_{st}_pd_user_{k}_fitting_peak/voltage" for k in range(6, 46)]
            names += [f"xfel_bl_{bl}_st_{st}_bm_{k}_pd/charge" for k in range(1, 31)]
    return tuple(names)


EQUIPMENT: tuple[str, ...] = tuple(dict.fromkeys(MAIN_POINTS + _filler_names()))
_EQUIP_SET = frozenset(EQUIPMENT)


def u01(keys: np.ndarray, salt: int) -> np.ndarray:
    """Uniform [0, 1) per key (splitmix64 of key and salt): deterministic, vectorised."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt & 0xFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def salt_of(name: str, seed: int) -> int:
    """A stable salt for one named quantity."""
    return zlib.crc32(name.encode()) * 7919 + seed * 104729 + 1


@dataclass
class Run:
    """One run: numbered, with the emulated-time intervals during which it recorded."""

    number: int
    intervals: list[list[float | None]] = field(default_factory=list)
    status: int = 2


DEFAULTS: dict[str, Any] = {
    "seed": 2019, "speed": 1.0, "rate": 30.0, "step": 2, "tag0": 500_000_000, "run0": 1000,
    "history": 5.0, "run_seconds": None, "buffer_seconds": 3.0, "image_latency": 0.0,
    "skip": 0.0, "point_missing": 0.0, "drop_images": 0.0, "detectors": (SINGLE, *OCTAL),
    "missing_det": (), "fail_equip": {}, "fail_newest": 0, "outage": 0.0, "frame_shape": (1024, 512),
    "point_latency": 0.0, "call_cost": 0.0005, "item_cost": 1e-7, "late_det": {},
    "run_gap": 0.0, "run_count": None,
}


class Emulator:
    """The facility: configure it, then let the emulated ``dbpy``/``olpy`` read from it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calls: dict[str, int] = {}
        self.reset(**json.loads(os.environ.get("SACLA_EMU", "{}") or "{}"))

    # --- control API ---------------------------------------------------------------------

    def reset(self, **options: Any) -> None:
        """Back to defaults plus ``options``; a fresh run that began ``history`` s ago."""
        with self.lock:
            self.opts = dict(DEFAULTS)
            self.wall0 = time.monotonic()
            self.frozen_at: float | None = None
            self._outage_until = 0.0
            self._noise: np.ndarray | None = None
            self.calls = {}
            self.items = 0  # tags and values returned by dbpy calls so far (what a call costs)
            self.configure(**options)
            e0 = -float(self.opts["history"])
            self.runs = [Run(int(self.opts["run0"]), [[e0, None]])]

    def configure(self, **options: Any) -> None:
        """Change settings or inject faults (see :data:`DEFAULTS` for the keywords).

        ``fail_equip``: names (raise forever) or name -> count of reads that raise.
        ``fail_newest``: the next N ``read_tagnumber_newest`` calls raise.
        ``outage``: every dbpy call raises for this many wall seconds from now.
        ``missing_det``: detector ids absent from ``read_detidlist`` and the image stream.
        ``late_det``: detector id -> emulated second (of the current run) at which it joins.
        ``point_latency``: emulated seconds after its tag before a point value (other than a
        reference ``…_tc_bm_1_pd/charge``) is in the database; NaN before.
        ``call_cost``/``item_cost``: wall seconds each dbpy call takes, plus per tag returned.
        ``run_seconds``: runs end on their own after this long; ``run_gap``: emulated seconds
        of no run (stopped, shots still coming) before the next begins; ``run_count``: at
        most this many runs in all, the last going on.
        """
        with self.lock:
            unknown = set(options) - set(DEFAULTS)
            if unknown:
                raise TypeError(f"unknown emulator options: {sorted(unknown)}")
            if "speed" in options and hasattr(self, "runs"):
                now = self.now()  # keep emulated time continuous across a speed change
                self.wall0 = time.monotonic() - now / float(options["speed"])
            fail = options.pop("fail_equip", None)
            if fail is not None:
                self.opts["fail_equip"] = dict(fail) if isinstance(fail, Mapping) else dict.fromkeys(fail, -1)
            if "outage" in options:
                self._outage_until = time.monotonic() + float(options["outage"])
            if "frame_shape" in options:
                self._noise = None
            self.opts.update(options)

    def now(self) -> float:
        """Emulated seconds since the start of the first run's history (t = 0 at reset)."""
        wall = self.frozen_at if self.frozen_at is not None else time.monotonic()
        return (wall - self.wall0) * float(self.opts["speed"])

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or restart) the emulated clock, for exact assertions."""
        with self.lock:
            if frozen and self.frozen_at is None:
                self.frozen_at = time.monotonic()
            elif not frozen and self.frozen_at is not None:
                self.wall0 += time.monotonic() - self.frozen_at
                self.frozen_at = None

    def set_status(self, status: int) -> None:
        """Run control: 2 running (resume), 1 paused, 0 stopped (ends the run)."""
        with self.lock:
            self._advance()
            run, now = self.runs[-1], self.now()
            if run.status == 2 and status != 2:
                run.intervals[-1][1] = now
            elif run.status == 1 and status == 2:
                run.intervals.append([now, None])
            run.status = status if run.status != 0 else 0

    def new_run(self) -> int:
        """End the current run (if it is not already) and start the next one now; its number."""
        with self.lock:
            self._advance()
            self.set_status(0)
            number = self.runs[-1].number + 1
            self.runs.append(Run(number, [[self.now(), None]]))
            return number

    def run_start_seconds(self) -> float:
        """Emulated time at which the newest run began."""
        return float(self.runs[-1].intervals[0][0])  # type: ignore[arg-type]

    # --- model ---------------------------------------------------------------------------

    def _advance(self) -> None:
        # With run_seconds, runs end and the next begins on their own (after run_gap).
        length = self.opts["run_seconds"]
        if not length:
            return
        limit = self.opts["run_count"]
        gap = float(self.opts["run_gap"])
        while limit is None or len(self.runs) < int(limit):
            run = self.runs[-1]
            start = float(run.intervals[0][0])  # type: ignore[arg-type]
            end = max(start, 0.0) + float(length)
            if run.status == 2 and self.now() >= end:
                run.intervals[-1][1] = end
                run.status = 0
            if run.status != 0 or self.now() < end + gap:
                return
            self.runs.append(Run(run.number + 1, [[end + gap, None]]))

    def check_db(self, call: str) -> None:
        """Count a dbpy call; raise during an injected outage."""
        with self.lock:
            self.calls[call] = self.calls.get(call, 0) + 1
            self._advance()
            cost = float(self.opts["call_cost"])
            down = time.monotonic() < self._outage_until
        if cost > 0:
            time.sleep(cost)  # a network round trip to the database server
        if down:
            raise APIError(f"{call}: database connection refused")

    def pay_items(self, n: int) -> None:
        """The extra time of a call that returns ``n`` tags or values."""
        with self.lock:
            self.items += n
        cost = float(self.opts["item_cost"]) * n
        if cost > 0:
            time.sleep(cost)

    def run(self, number: int) -> Run:
        """A run by number (APIError if unknown)."""
        for run in self.runs:
            if run.number == number:
                return run
        raise APIError(f"run {number} not found")

    def slots(self, lo: float, hi: float) -> np.ndarray:
        """Shot slots k with lo <= k/rate < hi that really produced a tag (not skipped)."""
        rate = float(self.opts["rate"])
        k = np.arange(math.ceil(lo * rate), math.ceil(hi * rate), dtype=np.int64)
        if self.opts["skip"] > 0:
            k = k[u01(k, salt_of("skip", self.opts["seed"])) >= self.opts["skip"]]
        return k

    def run_slots(self, run: Run) -> np.ndarray:
        """Every slot recorded by ``run`` so far: intervals are [start, end), end exclusive."""
        now = self.now()
        parts = [self.slots(float(a), now + 1e-12 if b is None else min(float(b), now + 1e-12))  # type: ignore[arg-type]
                 for a, b in run.intervals]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def newest_slot(self) -> int:
        """The newest slot that produced a tag (any run: point detectors record regardless)."""
        now = self.now()
        ks = self.slots(now - 2.0, now + 1e-12)
        return int(ks[-1]) if len(ks) else int(math.floor(now * float(self.opts["rate"])))

    def tag(self, k: np.ndarray | int) -> Any:
        return self.opts["tag0"] + self.opts["step"] * np.asarray(k, dtype=np.int64)

    def slot_of(self, tags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot, ok): ok where the tag is a real, already produced, not skipped shot."""
        rel = tags.astype(np.int64) - int(self.opts["tag0"])
        k = rel // int(self.opts["step"])
        ok = (rel % int(self.opts["step"]) == 0) & (k <= self.newest_slot())
        if self.opts["skip"] > 0:
            ok &= u01(k, salt_of("skip", self.opts["seed"])) >= self.opts["skip"]
        return k, ok

    # --- data ----------------------------------------------------------------------------

    def values(self, name: str, tags: np.ndarray, *, final: bool = False) -> np.ndarray:
        """The float value of point detector ``name`` at each tag (NaN where absent).

        ``final``: as the database will hold it once late values arrived (for assertions).
        """
        k, ok = self.slot_of(tags)
        seed = int(self.opts["seed"])
        if self.opts["point_missing"] > 0 and not is_reference(name):
            ok &= u01(k, salt_of("miss:" + name, seed)) >= self.opts["point_missing"]
        latency = float(self.opts["point_latency"])
        if latency > 0 and not final and not is_reference(name):
            ok &= k / float(self.opts["rate"]) <= self.now() - latency
        out = _physics(name, k, tags, seed, float(self.opts["rate"]))
        out[~ok] = np.nan
        return out

    def photons(self, tags: np.ndarray) -> np.ndarray:
        """Mean photons in the Bragg spot per tag (the ground truth for the image)."""
        seed, rate = int(self.opts["seed"]), float(self.opts["rate"])
        k, _ = self.slot_of(tags)
        i0 = _physics(I0, k, tags, seed, rate)
        delay_ps = _physics(DELAY, k, tags, seed, rate) * 1e-3
        laser = (tags % 4 == 0).astype(np.float64)
        resp = np.where(delay_ps > T0_PS, 1.0 - np.exp(-(delay_ps - T0_PS) / TAU_PS), 0.0)
        return 40.0 * i0 / 0.35 * (1.0 - DEPTH * laser * resp)

    def frame(self, det: str, tag: int) -> np.ndarray:
        """One sensor image in raw ADU: precomputed noise plus the Bragg spot."""
        noise = self._noise_frames()
        k = (tag - int(self.opts["tag0"])) // int(self.opts["step"])
        img = noise[k % len(noise)].copy()
        if det in SPOT_DETECTORS:
            y, x = SPOT_YX
            h, w = img.shape
            if y + 16 <= h and x + 16 <= w:
                amp = float(self.photons(np.array([tag]))[0]) * ADU_PER_PHOTON
                img[y - 16:y + 16, x - 16:x + 16] += np.float32(amp) * _SPOT
        return img

    def _noise_frames(self) -> np.ndarray:
        with self.lock:
            if self._noise is None:
                rng = np.random.default_rng(int(self.opts["seed"]))
                shape = tuple(self.opts["frame_shape"])
                self._noise = rng.normal(0.0, 8.0, (4, *shape)).astype(np.float32)
            return self._noise

    def detectors(self) -> tuple[str, ...]:
        missing = set(self.opts["missing_det"])
        since = self.now() - self.run_start_seconds()
        late = {d for d, at in dict(self.opts["late_det"]).items() if since < float(at)}
        return tuple(d for d in self.opts["detectors"] if d not in missing and d not in late)

    def known(self, equip: str) -> bool:
        return equip in _EQUIP_SET

    def take_failure(self, equip: str) -> bool:
        """True if this read of ``equip`` is to fail (consumes one of a counted failure)."""
        with self.lock:
            left = self.opts["fail_equip"].get(equip, 0)
            if left == 0:
                return False
            if left > 0:
                self.opts["fail_equip"][equip] = left - 1
            return True

    def truth(self) -> dict[str, Any]:
        return {"t0_ps": T0_PS, "tau_ps": TAU_PS, "depth": DEPTH, "gain": GAIN, "spot_yx": SPOT_YX,
                "hightag": HIGHTAG, **{k: self.opts[k] for k in ("seed", "rate", "step", "tag0")}}


_yy, _xx = np.mgrid[-16:16, -16:16] + 0.5
_SPOT = np.exp(-(_yy**2 + _xx**2) / (2 * 2.5**2)).astype(np.float32)
_SPOT /= _SPOT.sum()


def _physics(name: str, k: np.ndarray, tags: np.ndarray, seed: int, rate: float) -> np.ndarray:
    """Values of one point detector at slots ``k``: beam on ~97 %, I0 gamma, a delay scan."""
    beam = u01(k, salt_of(BEAM, seed)) >= 0.03
    u = u01(k, salt_of(name, seed))
    if name == BEAM:
        return beam.astype(np.float64)
    if name == SHUTTER:
        return np.ones(len(k))
    if name == I0:
        g = -(np.log1p(-u) + np.log1p(-u01(k, salt_of(name + "#2", seed)))) / 2.0
        return np.where(beam, 0.05 + 0.3 * g, 0.005 * u)
    if name in (REF, DIRECT):
        return np.where(beam, 0.3 + 0.01 * (u - 0.5), 0.0)
    if name == DELAY:
        step = np.floor(k / rate / 2.0).astype(np.int64) % len(SCAN_PULSES)
        return np.asarray(SCAN_PULSES, dtype=np.float64)[step]
    if name == LASER_PD:
        return np.where(tags % 4 == 0, 1.2 + 0.05 * u, 0.02 * u)
    return np.round(100.0 * u, 3)


EMU = Emulator()


def is_reference(name: str) -> bool:
    """A beam monitor that records every shot the instant it happens (a newest-tag reference)."""
    return "_tc_bm_1_pd/" in name


def strict(call: str, **args: tuple[Any, type | tuple[type, ...]]) -> None:
    """Refuse what the C extension refuses: exact types (a list for a tuple, a numpy int64 for an int)."""
    for name, (value, kind) in args.items():
        if type(value) is bool or not isinstance(value, kind) or (kind is int and type(value) is not int):
            raise TypeError(f"{call}() argument {name!r} must be {getattr(kind, '__name__', kind)}, "
                            f"not {type(value).__name__}")


def tag_tuple(call: str, tags: Any) -> tuple[int, ...]:
    """``tags`` as dbpy takes it: a tuple of Python ints, nothing else."""
    if type(tags) is not tuple:
        raise TypeError(f"{call}() argument 'taglist' must be tuple, not {type(tags).__name__}")
    for t in tags:
        if type(t) is not int:
            raise TypeError(f"{call}() taglist items must be int, not {type(t).__name__}")
    return tags


def tuple_of_ints(values: Iterable[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)
