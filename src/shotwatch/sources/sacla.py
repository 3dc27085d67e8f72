"""The SACLA source: follows the newest tag through ``dbpy`` and reads images through ``olpy``.

A poller thread asks for the reference point detector's newest tag every ``poll_interval``
(≤ 0.25 s, sleeping between polls), whatever the run state (between runs the beam and the
detectors still deliver), and asks the reference's values for the tags since the last
delivered one: those with a value are the shots (:mod:`._sacla_tags`). It reads every point
detector for them, holds the newest back while a value may still be on its way
(``source.latency``), and reads every ROI detector's full frames, at most ``ngrab`` shots per
block. A poll costs the number of new tags, never the run's length. A new run number splits
the stream at the new run's first tag: every tag is delivered once, labelled with one run.
Blocks wait in a short queue; ``read(timeout=...)`` never waits longer than ``timeout``.
dbpy/olpy are imported in :meth:`SaclaStream.open`, never at package import (FACILITY.md).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..schemas import Config, Roi, SaclaSource, ShotBlock, SourceError
from ..schemas.source_info import SourceInfo
from ._sacla_api import DbDown, Notices, equipment_list, import_api, point_origins, unknown_points_error
from ._sacla_dets import Detectors
from ._sacla_read import (
    EV_PER_ADU_UNIT,
    TailHold,
    Tally,
    first_shots,
    read_frames,
    read_points,
    span,
    tally_points,
)
from ._sacla_tags import candidates, ready_count, shot_times, split_at
from .base import Source, SourceStatus

__all__ = ["EV_PER_ADU_UNIT", "SaclaStream", "make"]

log = logging.getLogger(__name__)

# Stopped (between runs) and not yet started are "no run": shots are still followed.
_RUN_STATE = {-1: "no run", 0: "no run", 1: "paused", 2: "running"}
_MAX_BACKOFF = 2.0
_HOLD_MAX = 1.0  # seconds the newest shots may wait for their images to reach the buffer
_BLOCK_FRAME_BYTES = 128 << 20  # full frames per block: 8 MPCCD sensors -> 8 shots, 1 -> 64
MAX_TAG_JUMP = 60 * 3600  # the newest tag going back by more than an hour: a counter reset


def make(config: Config, *, frames_every: int | None = None) -> SaclaStream:
    """The SACLA source for a whole configuration (called by ``sources.open_source``).

    Points read = ``source.points`` + the analysis sections' points; ROI detectors = those of
    ``config.roi`` (plus any later given to :meth:`SaclaStream.set_rois`).
    """
    src = config.source
    if not isinstance(src, SaclaSource):
        raise SourceError(f"source.kind: expected \"sacla\", found {src.kind!r}")
    points = config.recorded_points()
    every = config.record.frames_every if frames_every is None else frames_every
    return SaclaStream(src, points=points, rois=config.roi, frames_every=every,
                       origins=point_origins(config))


class SaclaStream(Source):
    """A :class:`~shotwatch.sources.Source` over SACLA's dbpy/olpy (or their emulator).

    Args:
        cfg: the ``[source]`` section.
        points: point detectors to read for every shot (facility names).
        rois: ROIs whose detectors' full frames are delivered in ``block.frames``.
        frames_every: the recorder's frame decimation (recorded in ``describe().attrs``).
        origins: point name -> configuration key, for error messages.
        poll_interval: seconds between newest-tag polls (at most 0.25).
        queue_blocks: blocks held for a slow reader before the poller waits.
    """

    def __init__(self, cfg: SaclaSource, *, points: Sequence[str], rois: Iterable[Roi] = (),
                 frames_every: int = 0, origins: Mapping[str, str] | None = None,
                 poll_interval: float = 0.2, queue_blocks: int = 2) -> None:
        self.cfg = cfg
        self.points = list(dict.fromkeys(points))
        self.frames_every = frames_every
        self.poll_interval = min(max(poll_interval, 0.01), 0.25)
        self._origins = dict(origins or {})
        self._queue: queue.Queue[ShotBlock] = queue.Queue(maxsize=max(1, queue_blocks))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db: ModuleType | None = None
        self._ol: ModuleType | None = None
        self._tally = Tally()
        self._notes = Notices()
        self._dets = Detectors((r.detector for r in rois), self._notes)
        self._equip: tuple[str, ...] = ()
        self._run: int | None = None
        self._next_run: tuple[int, int] | None = None  # (the newer run, its first tag)
        self._hightag: int | None = None
        self._last = 0  # the last tag delivered, or where delivery starts
        self._run_state = ""  # "" until the first answer of read_runstatus
        self._down_since: float | None = None
        self._delivered = 0
        self._hold = TailHold(_HOLD_MAX)

    # --- Source protocol -----------------------------------------------------------------

    def open(self) -> None:
        """Import dbpy/olpy, check every name, find the run and detectors, start polling.

        Raises:
            SourceError: dbpy/olpy not importable, or a point detector unknown to dbpy.
            ShotwatchRuntimeError: the database does not answer at all.
        """
        if self._thread is not None:
            return
        self._db, self._ol = import_api(self.cfg.api_path)
        self._equip = equipment_list(self._db)
        known = set(self._equip)
        unknown = [n for n in [*self.points, self.cfg.reference] if n not in known]
        if unknown:
            origins = {**self._origins, self.cfg.reference: "source.reference"}
            raise unknown_points_error(dict.fromkeys(unknown), self._equip, origins)
        try:
            self._poll_position()
            self._check_stream(force=True)
            self._probe_all(self._hightag or 0, self._last)
        except DbDown as exc:  # start anyway; the poller retries
            self._went_down(exc)
        self._thread = threading.Thread(target=self._loop, name="shotwatch-sacla", daemon=True)
        self._thread.start()

    def describe(self) -> SourceInfo:
        """Run, array detectors of this run (shape, dtype, eV/ADU) and every point detector."""
        if self._thread is None and not self._stop.is_set():
            self.open()
        detectors, unprobed = self._dets.described()
        with self._lock:
            return SourceInfo(
                kind="sacla", run=self._run, hightag=self._hightag, detectors=detectors,
                points=list(self._equip),
                attrs={"beamline": self.cfg.beamline, "reference": self.cfg.reference,
                       "ngrab": self.cfg.ngrab, "latency": self.cfg.latency,
                       "frames_every": self.frames_every,
                       "recorded_points": list(self.points), "run_state": self._run_state,
                       "detectors_unprobed": unprobed},
            )

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        """Deliver frames of these ROIs' detectors too (besides the configuration's)."""
        self._dets.want_also(r.detector for r in rois.values())

    def read(self, *, timeout: float) -> ShotBlock | None:
        """The next block, or None within ``timeout`` seconds."""
        if self._thread is None and not self._stop.is_set():
            self.open()
        try:
            return self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def status(self) -> SourceStatus:
        """State (running/paused/stopped/waiting/disconnected) and fault counters."""
        with self._lock:
            state = self._run_state or "waiting"
            if self._down_since is not None:
                state = "disconnected"
            elif state == "running" and not self._delivered:
                state = "waiting"
            return SourceStatus(state=state, missing=dict(self._tally.missing),
                                counters=dict(self._tally.counters),
                                not_in_stream=list(self._dets.not_in_stream))

    def notices(self) -> list[str]:
        """One-line notices since the last call."""
        with self._lock:
            return self._notes.drain()

    def close(self) -> None:
        """Stop the poller and drop queued blocks; idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=3.0)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    # --- poller thread -------------------------------------------------------------------

    def _loop(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._poll()
            except Exception as exc:  # never a dead thread: say what failed, back off, retry
                if isinstance(exc, DbDown):
                    self._went_down(exc)
                else:
                    self._internal_error(exc)
                backoff = min(_MAX_BACKOFF, max(self.poll_interval, 2 * backoff))
                self._stop.wait(backoff)
                continue
            backoff = 0.0
            self._stop.wait(max(0.0, self.poll_interval - (time.monotonic() - started)))

    def _poll(self) -> None:
        bl = self.cfg.beamline
        newest_run = int(self._ask("read_runnumber_newest", bl))
        hightag, newest = (int(v) for v in self._ask("read_tagnumber_newest", self.cfg.reference))
        self._came_back()
        if self._run is None:  # the database was down at open()
            self._start_at(newest_run, hightag, newest)
        if not self._dets.probed:
            self._check_stream(force=True)
            self._probe_all(hightag, newest)
            return
        self._follow_run(newest_run)
        self._set_run_state(newest_run, int(self._ask("read_runstatus", bl, newest_run)))
        self._check_stream()
        if newest < self._last - MAX_TAG_JUMP:  # the tag counter went back: start again there
            self._restart_at(newest)
        while not self._stop.is_set() and self._deliver(hightag, newest):
            pass  # a backlog longer than one poll's candidates: keep reading

    def _follow_run(self, newest_run: int) -> None:
        """Learn where a newer run begins: its first tag splits the stream."""
        if newest_run == self._run or (self._next_run is not None and self._next_run[0] == newest_run):
            return
        try:  # no tag yet in the new run: the old label goes on until it has one
            _, first = self._api()[0].read_start_tagnumber(self.cfg.beamline, newest_run)
        except Exception:
            return
        self._next_run = (newest_run, int(first))

    def _deliver(self, hightag: int, newest: int) -> bool:
        """Read the shots after the last delivered tag; queue those ready. True: more to read."""
        cands = candidates(self._last, newest)
        if not cands:
            return False
        db = self._api()[0]
        ref, failed = read_points(db, [self.cfg.reference], hightag, cands)
        if failed:  # which tags are shots is unknown: count it, try again next poll
            with self._lock:
                self._tally.count("read errors")
                self._notes.add(f"{self.cfg.reference}: read failed ({span(cands)}): "
                                f"{failed[self.cfg.reference]}; retrying", key="read:reference")
            return False
        shots = tuple(t for t, v in zip(cands, ref[self.cfg.reference].tolist(), strict=True) if v == v)
        points, failed = read_points(db, self.points, hightag, shots)
        n = ready_count(shots, points, newest=newest, latency=self.cfg.latency)
        done = self._queue_shots(shots[:n], points, failed, hightag, newest, may_hold=n == len(shots))
        if done < len(shots):
            return False
        self._last = max(self._last, cands[-1])  # tags that are not shots are never asked for again
        return cands[-1] < newest  # a backlog longer than one poll's candidates: read on

    def _queue_shots(self, shots: tuple[int, ...], points: dict[str, np.ndarray], failed: dict[str, str],
                     hightag: int, newest: int, *, may_hold: bool) -> int:
        """Queue ``shots`` in blocks (one run each, at most ngrab); how many were queued."""
        done = 0
        while done < len(shots) and not self._stop.is_set():
            boundary = self._next_run[1] if self._next_run is not None else None
            cut = split_at(shots[done:], boundary)
            if cut == 0 and self._next_run is not None:  # every shot of the old run delivered
                self._switch_run(*self._next_run, hightag=hightag, newest=newest)
                continue
            stop = done + min(cut, self._block_size())
            block = self._read_block(shots[done:stop], {k: v[done:stop] for k, v in points.items()}, failed,
                                     hightag, newest, may_hold=may_hold and stop == len(shots))
            if block is None:
                break
            self._put(block)
            self._last = int(block.tags[-1])
            done += len(block)
            if done < stop:  # the image hold kept the newest back
                break
        return done

    def _put(self, block: ShotBlock) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(block, timeout=0.1)
                break
            except queue.Full:
                continue
        with self._lock:
            self._delivered += len(block)

    def _block_size(self) -> int:
        """ngrab, or fewer shots where full frames would make a block larger than 128 MB."""
        return max(1, min(self.cfg.ngrab, _BLOCK_FRAME_BYTES // max(self._dets.bytes_per_shot(), 1)))

    def _read_block(self, tags: tuple[int, ...], points: dict[str, np.ndarray], failed: dict[str, str],
                    hightag: int, newest: int, *, may_hold: bool) -> ShotBlock | None:
        """One block: the points read and the ROI detectors' frames (None: all held for images)."""
        got = [(h, *read_frames(h, tags)) for h in self._dets.reading()]
        live = [ok for h, _, ok in got if h.live]  # a detector sending nothing is not waited for
        n = len(tags) - (self._hold.tail(tags, live) if may_hold and live else 0)
        if n == 0:
            return None
        for h, _, ok in got:
            h.live = bool(ok[:n].any())
        tags, points = tags[:n], {k: v[:n] for k, v in points.items()}
        frames = {}
        with self._lock:
            tally_points(points, failed, tags, self._tally, self._notes)
        for handle, fr, ok in got:
            self._tally.count("image gone", n - int(ok[:n].sum()), name=handle.det)
            kept = first_shots(fr, n)
            if kept is not None:
                self._dets.note_info(handle)  # before the block: describe() knows it first
                frames[handle.det] = kept
        arr = np.asarray(tags, dtype=np.int64)
        return ShotBlock(arr, shot_times(arr, newest=newest, now=time.time()), points, {}, frames,
                         run=self._run, hightag=hightag)

    # --- run, tags, state ----------------------------------------------------------------

    def _api(self) -> tuple[ModuleType, ModuleType]:
        assert self._db is not None and self._ol is not None, "open() first"
        return self._db, self._ol

    def _ask(self, call: str, *args: object) -> Any:
        """``dbpy.<call>(*args)``; any failure of it is the database's (:class:`DbDown`)."""
        try:
            return getattr(self._api()[0], call)(*args)
        except Exception as exc:
            raise DbDown(f"dbpy.{call}: {type(exc).__name__}: {exc}") from exc

    def _internal_error(self, exc: Exception) -> None:
        log.error("sacla source: unexpected error, retrying", exc_info=exc)
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
        with self._lock:
            self._tally.count("errors")
            self._notes.add(f"sacla source: unexpected {type(exc).__name__}: {exc}{at}; retrying",
                            key="internal")

    def _poll_position(self) -> None:
        bl = self.cfg.beamline
        run = int(self._ask("read_runnumber_newest", bl))
        hightag, newest = (int(v) for v in self._ask("read_tagnumber_newest", self.cfg.reference))
        self._start_at(run, hightag, newest)
        self._set_run_state(run, int(self._ask("read_runstatus", bl, run)))

    def _start_at(self, run: int, hightag: int, newest: int) -> None:
        # Live monitoring starts with the next shot, not at the beginning of the run.
        with self._lock:
            self._run, self._hightag, self._last = run, hightag, newest

    def _restart_at(self, newest: int) -> None:
        with self._lock:
            self._notes.add(f"sacla: the newest tag went back from {self._last} to {newest}; following it from there")
            self._last = newest

    def _switch_run(self, run: int, first: int, *, hightag: int, newest: int) -> None:
        """Every shot before ``first`` is delivered: from here on, shots are ``run``'s."""
        with self._lock:
            # No notice: the recorder announces the new run when its first block arrives.
            self._run, self._next_run = run, None
            self._last = max(self._last, first - 1)
        self._dets.new_run()
        self._check_stream(force=True)
        self._probe_all(hightag, newest)

    def _set_run_state(self, run: int, code: int) -> None:
        state = _RUN_STATE.get(code, "no run")
        with self._lock:
            if self._run_state and state != self._run_state:
                self._notes.add(f"run {run} stopped: no run, shots still followed" if state == "no run"
                                else f"run {run}: {state}")
            self._run_state = state

    def _went_down(self, exc: Exception) -> None:
        with self._lock:
            self._tally.count("disconnects")
            if self._down_since is None:
                self._down_since = time.monotonic()
                self._notes.add(f"{exc}; retrying every <= {_MAX_BACKOFF:g} s")

    def _came_back(self) -> None:
        with self._lock:
            if self._down_since is not None:
                self._notes.add(f"dbpy: answering again after {time.monotonic() - self._down_since:.1f} s")
                self._down_since = None

    # --- detectors -----------------------------------------------------------------------

    def _check_stream(self, *, force: bool = False) -> None:
        """Open readers for wanted detectors; list those this run does not have."""
        if self._dets.due(force=force):
            stream = tuple(str(d) for d in self._ask("read_detidlist", self.cfg.beamline, self._run))
            self._dets.update(stream, self._api()[1])

    def _probe_all(self, hightag: int, newest: int) -> None:
        """Read one recent frame of every detector in the stream, for describe()."""
        recent = candidates(newest - 12, newest)
        ref, _ = read_points(self._api()[0], [self.cfg.reference], hightag, recent)
        shots = tuple(t for t, v in zip(recent, ref[self.cfg.reference].tolist(), strict=True) if v == v)
        self._dets.probe_all(self._api()[1], shots[-5:])
