"""The built-in simulator: a SACLA BL3 pump-probe delay scan, the default source.

At ``rate > 0`` it paces itself in real time (sleeping, never spinning) and delivers a full
MPCCD frame for every shot, as SACLA's image buffer would. At ``rate = 0`` it runs as fast as
it can and synthesises only the ROI regions given to :meth:`Simulator.set_rois` (plus a full
frame every ``frames_every`` shots), which is how recorder benchmarks reach thousands of shots
per second. The physics lives in ``sim_physics`` (per-shot scalars) and ``sim_detector``
(pixels); ``describe().attrs["truth"]`` holds the hidden answer (t0, amplitude, seed).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import numpy as np

from ..schemas import Cutout, Frames, Roi, ShotBlock, SimSource, SourceError
from ..schemas.source_info import DetectorInfo, SourceInfo
from .base import NOMINAL_RATE, Source, SourceStatus
from .sim_detector import DETECTOR, EV_PER_ADU, SHAPE, PixelSynth
from .sim_physics import HIGHTAG, POINTS, ShotParams, Timeline, Truth, draw_truth

__all__ = ["DETECTOR", "POINTS", "Simulator"]

FAST_BLOCK = 1200  # shots per block at rate = 0
BLOCK_SECONDS = 0.1  # longest block at rate > 0
PACED_MAX_SHOTS = 30  # ... and at most this many full frames (60 MB), whatever the rate
CLOCK_RATE = NOMINAL_RATE  # shots per second of the simulated clock at rate = 0
LATE_SECONDS = 2.0  # a reader this far behind loses shots, as SACLA's image buffer would


class Simulator(Source):
    """A seeded, physically plausible stream of SACLA-like shots (see module docstring).

    Args:
        cfg: the ``[source]`` section (seed, rate, points).
        frames_every: at ``rate = 0``, a full frame for every shot whose index since the
            start is a multiple of this (0 = none). Ignored at ``rate > 0`` (every shot has one).
        rois: initial active ROI versions, keyed ``"name/vK"``.
    """

    def __init__(self, cfg: SimSource, *, frames_every: int, rois: Mapping[str, Roi] | None = None) -> None:
        self._cfg = cfg
        self._frames_every = frames_every
        self._rois: dict[str, Roi] = dict(rois or {})
        self._truth: Truth = draw_truth(cfg.seed)
        self._points = list(POINTS) if cfg.points is None else list(dict.fromkeys(cfg.points))
        self._timeline: Timeline | None = None
        self._synth: PixelSynth | None = None
        self._t_start = 0.0
        self._shot = 0  # shots delivered (or dropped) so far
        self._state = "waiting"
        self._missing: dict[str, int] = {}
        self._counters: dict[str, int] = {}
        self._notices: list[str] = []

    def start_after(self, tag: int) -> None:
        """Continue a recording: the first tag will follow ``tag`` (same pump-probe phase).

        Optional capability the recorder uses with ``--append``, before the first read. Real
        facilities' tags always grow; the simulator's would restart from the seed's.
        """
        first = self._truth.first_tag
        if self._shot == 0 and tag >= first:
            shift = ((tag - first) // 4 + 1) * 4
            self._truth = dataclasses.replace(self._truth, first_tag=first + shift)
            if self._timeline is not None:
                self._timeline = Timeline(self._truth)

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
        self._timeline = Timeline(self._truth)
        self._synth = PixelSynth(self._truth.seed % (1 << 63))
        self._t_start = time.time()
        self._state = "running"

    def describe(self) -> SourceInfo:
        """Run, the MPCCD sensor, every point detector offered, and the ground truth."""
        return SourceInfo(
            kind="sim", run=self._truth.run, hightag=HIGHTAG,
            detectors={DETECTOR: DetectorInfo(shape=SHAPE, dtype="float32", ev_per_adu=EV_PER_ADU)},
            points=list(POINTS),
            attrs={"truth": self._truth.attrs(), "rate": self._cfg.rate, "beamline": 3,
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
        # Keep blocks with full frames to tens of MB: 16 frames (32 MB) at most.
        every = self._frames_every
        return self._block(FAST_BLOCK if not every else min(FAST_BLOCK, 16 * every))

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

    # --- internals ----------------------------------------------------------------------

    @property
    def truth(self) -> Truth:
        """The hidden parameters of this run."""
        return self._truth

    def _slot_time(self, slot: int) -> float:
        return self._t_start + slot / (self._cfg.rate or CLOCK_RATE)

    def _read_paced(self, timeout: float) -> ShotBlock | None:
        """Sleep until a whole 0.1 s block is due (or the timeout), then deliver what is due."""
        assert self._timeline is not None
        rate = self._cfg.rate
        self._drop_if_late(rate)
        first = self._timeline.next_slot()
        limit = max(1, min(PACED_MAX_SHOTS, int(BLOCK_SECONDS * rate)))
        wake = min(self._slot_time(first + limit - 1), time.time() + max(0.0, timeout))
        while (left := wake - time.time()) > 0:
            time.sleep(left)
        now_slot = int((time.time() - self._t_start) * rate)
        if now_slot < first:
            return None
        return self._block(self._timeline.count_until(min(now_slot, first + limit - 1), limit))

    def _drop_if_late(self, rate: float) -> None:
        assert self._timeline is not None
        behind = time.time() - self._slot_time(self._timeline.next_slot())
        if behind <= LATE_SECONDS:
            return
        # Keep the newest quarter: older shots are gone, like images leaving SACLA's buffer.
        keep_from = int((time.time() - LATE_SECONDS / 4 - self._t_start) * rate)
        n = self._timeline.count_until(keep_from - 1, int(behind * rate) + 1)
        self._timeline.take(n)
        self._shot += n
        self._counters["shots lost (reader late)"] = self._counters.get("shots lost (reader late)", 0) + n
        self._notices.append(f"sim: reader {behind:.1f} s behind, {n} shots lost")

    def _block(self, n: int) -> ShotBlock:
        assert self._timeline is not None and self._synth is not None
        p = self._timeline.take(n)
        points = {name: p.points[name] for name in self._points}
        for name, values in points.items():
            bad = int(np.count_nonzero(np.isnan(values)))
            if bad:
                self._missing[name] = self._missing.get(name, 0) + bad
        lost = int(np.count_nonzero(~p.frame_ok))
        if lost:
            self._missing[DETECTOR] = self._missing.get(DETECTOR, 0) + lost
        times = self._t_start + p.slots / (self._cfg.rate or CLOCK_RATE)
        cutouts: dict[str, Cutout]
        frames: dict[str, Frames]
        if self._cfg.rate > 0:
            cutouts, frames = {}, {DETECTOR: self._all_frames(p)}
        else:
            cutouts, frames = self._cutouts(p)
        self._shot += n
        return ShotBlock(p.tags, times.astype(np.float64), points, cutouts, frames,
                         run=self._truth.run, hightag=HIGHTAG)

    def _all_frames(self, p: ShotParams) -> Frames:
        assert self._synth is not None
        ok = np.flatnonzero(p.frame_ok)
        return Frames(self._synth.frames(p.bg_scale[ok], p.spot_scale[ok]), ok.astype(np.int64))

    def _cutouts(self, p: ShotParams) -> tuple[dict[str, Cutout], dict[str, Frames]]:
        """ROI cutouts for every shot, and full frames every ``frames_every`` shots."""
        assert self._synth is not None
        cutouts: dict[str, Cutout] = {}
        for key, roi in self._rois.items():
            pix = self._synth.render(roi.y, roi.x, p.bg_scale, p.spot_scale)
            pix[~p.frame_ok] = 0.0
            cutouts[key] = Cutout(pix, p.frame_ok.copy(), roi.detector)
        if not self._frames_every:
            return cutouts, {}
        index = np.arange(self._shot, self._shot + len(p))
        shots = np.flatnonzero((index % self._frames_every == 0) & p.frame_ok).astype(np.int64)
        if not len(shots):
            return cutouts, {}
        full = self._synth.frames(p.bg_scale[shots], p.spot_scale[shots])
        # A kept frame and the cutouts of its shot must agree: cut them from the frame.
        for key, roi in self._rois.items():
            cutouts[key].pixels[shots] = full[:, roi.y[0]:roi.y[1], roi.x[0]:roi.x[1]]
        return cutouts, {DETECTOR: Frames(full, shots)}


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
