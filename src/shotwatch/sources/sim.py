"""The built-in simulator: a SACLA BL3 pump-probe delay scan, the default source.

SACLA's tag clock is 60 Hz; BL3 on a shared beam gets every other tag, so tags step by 2 at 30
shots/s (the demo's ``rate``), with an occasional tag missing. At ``rate > 0`` the simulator
paces itself in real time (sleeping, never spinning) and delivers a full MPCCD frame for every
shot, as SACLA's image buffer would. At ``rate = 0`` it runs as fast as it can and synthesises
only the ROI regions given to :meth:`Simulator.set_rois` (plus a full frame for every shot whose
slot is a multiple of ``frames_every``), which is how recorder benchmarks reach thousands of
shots per second; ``source.full_frames`` makes it deliver a full frame for every shot instead
(the CPU-heavy case: the recorder cuts the ROIs, subtracts the dark, applies the mask).

Frames are raw, as real ones: a structured pedestal of hundreds of ADU, dark noise, hot pixels
and a patch of pixels that reads NaN on a few shots in a hundred (``sim_detector``). A dark is
taken with ``source.shutter = "closed"``: the shutter point reads 0 and no photon reaches the
sensor while the beam status still says beam on, so every frame is pedestal and noise.

A shot is a pure function of ``(seed, tag)``: points, flags and pixels do not depend on block
sizes, on ``frames_every`` or on what was read before. ``share = Share(k, n)`` makes a
simulator deliver only chunks ``k, k + n, ...`` of the stream (an MPI rank's share); the
shares of ``n`` simulators with the same ``epoch``, merged in tag order, are the whole stream.
The physics lives in ``sim_physics`` (per-shot scalars), ``sim_photons`` (where photons land)
and ``sim_detector`` (pixels); ``describe().attrs["truth"]`` holds the hidden answer (t0, amplitude, seed, sensor).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from ..schemas import Cutout, Frames, Roi, ShotBlock, SimSource, SourceError
from ..schemas.source_info import DetectorInfo, SourceInfo
from .base import Source, SourceStatus
from .sim_detector import DETECTOR, EV_PER_ADU, SHAPE, PixelSynth
from .sim_photons import PhotonField
from .sim_physics import CLOCK_HZ, HIGHTAG, POINTS, Share, ShotParams, Timeline, Truth, draw_truth

__all__ = ["DETECTOR", "POINTS", "Share", "Simulator"]

FAST_BLOCK = 1200  # shots per block at rate = 0
FRAMES_PER_BLOCK = 16  # full frames per block at rate = 0 (32 MB)
BLOCK_SECONDS = 0.1  # longest block at rate > 0
PACED_MAX_SHOTS = 30  # ... and at most this many full frames (60 MB), whatever the rate
LATE_SECONDS = 2.0  # a reader this far behind loses shots, as SACLA's image buffer would


class Simulator(Source):
    """A seeded, physically plausible stream of SACLA-like shots (see module docstring).

    Args:
        cfg: the ``[source]`` section (seed, rate, points, shutter, full_frames).
        frames_every: at ``rate = 0`` without ``full_frames``, a full frame for every shot
            whose slot (``(tag - first tag) / 2``) is a multiple of this (0 = none): chosen by
            tag, so every split of the stream keeps the same frames. Ignored otherwise (every
            shot has one).
        rois: initial active ROI versions, keyed ``"name/vK"``.
        share: deliver only this share of the stream (default: all of it).
        epoch: unix time of the first slot; ``None`` = when opened. Processes that share a
            stream pass the same epoch so that their shots' times agree.
        block_shots: most shots per block at ``rate = 0``.
    """

    def __init__(self, cfg: SimSource, *, frames_every: int, rois: Mapping[str, Roi] | None = None,
                 share: Share | None = None, epoch: float | None = None, block_shots: int = FAST_BLOCK) -> None:
        self._cfg = cfg
        self._frames_every = frames_every
        self._rois: dict[str, Roi] = dict(rois or {})
        self._truth: Truth = draw_truth(cfg.seed)
        self._points = list(POINTS) if cfg.points is None else list(dict.fromkeys(cfg.points))
        self._share = share or Share()
        self._epoch = epoch
        self._block_shots = max(1, block_shots)
        self._start_slot = 0
        self._timeline: Timeline | None = None
        self._synth: PixelSynth | None = None
        self._photons: PhotonField | None = None
        self._shot = 0  # shots delivered (or dropped) so far
        self._state = "waiting"
        self._missing: dict[str, int] = {}
        self._counters: dict[str, int] = {}
        self._notices: list[str] = []

    def start_after(self, tag: int) -> None:
        """Continue a recording: the first shot will be the stream's first after ``tag``.

        Optional capability the recorder uses with ``--append``, before the first read. The
        stream goes on where it would be (the same shots, pump-probe phase and scan step as
        if it had never stopped), as a real facility's tags keep growing.
        """
        if self._shot == 0:
            self._start_slot = max(0, (tag - self._truth.first_tag) // 2 + 1)
            if self._timeline is not None:
                self._timeline = self._new_timeline()

    # --- Source protocol ----------------------------------------------------------------

    def open(self) -> None:
        """Check the configured points and ROIs; start the clock. Idempotent; no-op after close."""
        if self._timeline is not None or self._state == "stopped":
            return
        unknown = [p for p in self._points if p not in POINTS]
        if unknown:
            raise SourceError(
                f"source.points: expected point detectors the simulator offers "
                f"({', '.join(POINTS)}), found {', '.join(map(repr, unknown))}"
            )
        _check_rois(self._rois)
        self._timeline = self._new_timeline()
        self._synth = PixelSynth(self._truth.seed)
        self._photons = PhotonField(self._truth.seed)
        if self._epoch is None:
            self._epoch = time.time()
        self._state = "running"

    def describe(self) -> SourceInfo:
        """Run, the MPCCD sensor, every point detector offered, and the ground truth."""
        return SourceInfo(
            kind="sim", run=self._truth.run, hightag=HIGHTAG,
            detectors={DETECTOR: DetectorInfo(shape=SHAPE, dtype="float32", ev_per_adu=EV_PER_ADU)},
            points=list(POINTS),
            attrs={"truth": self._truth.attrs(), "rate": self._cfg.rate, "beamline": 3,
                   "shutter": self._cfg.shutter, "full_frames": self._cfg.full_frames,
                   "delivered_points": list(self._points)},
        )

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        """Active ROI versions from the next block on; SourceError for an unknown detector."""
        _check_rois(rois)
        self._rois = dict(rois)

    def read(self, *, timeout: float) -> ShotBlock | None:
        """The next block; at ``rate > 0`` waits (sleeping) at most ``timeout`` for it."""
        self.open()
        if self._state == "stopped":
            return None
        if self._cfg.rate > 0:
            return self._read_paced(timeout)
        if self._cfg.full_frames:
            return self._block(min(self._block_shots, FRAMES_PER_BLOCK))
        every = self._frames_every  # keep blocks with full frames to tens of MB
        return self._block(self._block_shots if not every else min(self._block_shots, FRAMES_PER_BLOCK * every))

    def status(self) -> SourceStatus:
        return SourceStatus(state=self._state, missing=dict(self._missing),
                            counters=dict(self._counters))

    def notices(self) -> list[str]:
        out, self._notices = self._notices, []
        return out

    def close(self) -> None:
        """Stop; idempotent. Later reads return None."""
        self._state = "stopped"
        self._timeline = None
        self._synth = None
        self._photons = None

    # --- internals ----------------------------------------------------------------------

    @property
    def truth(self) -> Truth:
        """The hidden parameters of this run."""
        return self._truth

    def _new_timeline(self) -> Timeline:
        return Timeline(self._truth, shutter=self._cfg.shutter, share=self._share, start_slot=self._start_slot,
                        events=self._cfg.events)

    def _slot_time(self, slot: int | np.ndarray) -> float | np.ndarray:
        assert self._epoch is not None
        return self._epoch + (slot - self._start_slot) / (self._cfg.rate or CLOCK_HZ)

    def _read_paced(self, timeout: float) -> ShotBlock | None:
        """Sleep until a whole 0.1 s block is due (or the timeout), then deliver what is due."""
        assert self._timeline is not None
        rate = self._cfg.rate
        self._drop_if_late(rate)
        first = self._timeline.next_slot()
        limit = max(1, min(PACED_MAX_SHOTS, int(BLOCK_SECONDS * rate)))
        wake = min(float(self._slot_time(first + limit - 1)), time.time() + max(0.0, timeout))
        while (left := wake - time.time()) > 0:
            time.sleep(left)
        now_slot = self._due_slot(time.time())
        if now_slot < first:
            return None
        return self._block(self._timeline.count_until(min(now_slot, first + limit - 1), limit))

    def _due_slot(self, now: float) -> int:
        """The newest slot whose time has come."""
        assert self._epoch is not None
        return self._start_slot + int((now - self._epoch) * self._cfg.rate)

    def _drop_if_late(self, rate: float) -> None:
        assert self._timeline is not None
        behind = time.time() - float(self._slot_time(self._timeline.next_slot()))
        if behind <= LATE_SECONDS:
            return
        # Keep the newest quarter: older shots are gone, like images leaving SACLA's buffer.
        keep_from = self._due_slot(time.time() - LATE_SECONDS / 4)
        n = self._timeline.count_until(keep_from - 1, int(behind * rate) + 1)
        self._timeline.take(n)
        self._shot += n
        self._counters["shots lost (reader late)"] = self._counters.get("shots lost (reader late)", 0) + n
        self._notices.append(f"sim: reader {behind:.1f} s behind, {n} shots lost")

    def _block(self, n: int) -> ShotBlock:
        assert self._timeline is not None
        p = self._timeline.take(n)
        points = {name: p.points[name] for name in self._points}
        for name, values in points.items():
            bad = int(np.count_nonzero(np.isnan(values)))
            if bad:
                self._missing[name] = self._missing.get(name, 0) + bad
        lost = int(np.count_nonzero(~p.frame_ok))
        if lost:
            self._missing[DETECTOR] = self._missing.get(DETECTOR, 0) + lost
        times = np.asarray(self._slot_time(p.slots), dtype=np.float64)
        cutouts: dict[str, Cutout]
        frames: dict[str, Frames]
        if self._cfg.rate > 0 or self._cfg.full_frames:
            cutouts, frames = {}, {DETECTOR: self._frames(p, np.flatnonzero(p.frame_ok))}
        else:
            cutouts, frames = self._cutouts(p)
        self._shot += n
        return ShotBlock(p.tags, times, points, cutouts, frames, run=self._truth.run, hightag=HIGHTAG)

    def _render(self, y: tuple[int, int], x: tuple[int, int], p: ShotParams) -> np.ndarray:
        assert self._synth is not None and self._photons is not None
        return self._synth.render(y, x, p.tags, p.glitch, self._photons.deposit(y, x, p))

    def _frames(self, p: ShotParams, shots: np.ndarray) -> Frames:
        """Full frames of the block's shots ``shots`` (indices, increasing)."""
        sub = p if len(shots) == len(p) else p.select(shots)
        return Frames(self._render((0, SHAPE[0]), (0, SHAPE[1]), sub), shots.astype(np.int64))

    def _cutouts(self, p: ShotParams) -> tuple[dict[str, Cutout], dict[str, Frames]]:
        """ROI cutouts for every shot, and full frames of the shots ``frames_every`` picks."""
        cutouts: dict[str, Cutout] = {}
        for key, roi in self._rois.items():
            pix = self._render(roi.y, roi.x, p)
            pix[~p.frame_ok] = 0.0
            cutouts[key] = Cutout(pix, p.frame_ok.copy(), roi.detector)
        if not self._frames_every:
            return cutouts, {}
        # By slot, not by position in the block: any split of the stream keeps the same frames.
        shots = np.flatnonzero((p.slots % self._frames_every == 0) & p.frame_ok)
        if not len(shots):
            return cutouts, {}
        return cutouts, {DETECTOR: self._frames(p, shots)}


def _check_rois(rois: Mapping[str, Roi]) -> None:
    for key, roi in rois.items():
        if roi.detector != DETECTOR:
            raise SourceError(
                f"roi {roi.name!r} ({key}): expected a detector the simulator offers "
                f"({DETECTOR}), found {roi.detector!r}"
            )
        try:
            roi.check_shape(SHAPE)
        except ValueError as exc:
            raise SourceError(str(exc)) from None
