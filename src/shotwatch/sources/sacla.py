"""The SACLA source: follows the newest tag through ``dbpy`` and reads images through ``olpy``.

A poller thread asks for the reference point detector's newest tag every ``poll_interval``
(≤ 0.25 s, sleeping between polls), takes exactly the run's tags that exist since the last
block (``dbpy.read_taglist_byrun``), at most ``ngrab`` per block, and reads every point
detector and every ROI detector's full frames for them. Blocks wait in a short queue;
``read(timeout=...)`` never waits longer than ``timeout``. dbpy/olpy are imported in
:meth:`SaclaStream.open`, never at package import (FACILITY.md, "SACLA").
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..schemas import Config, Roi, SaclaSource, ShotBlock, SourceError
from ..schemas.source_info import DetectorInfo, SourceInfo
from ._sacla_api import DbDown, Notices, equipment_list, import_api, point_origins, unknown_points_error
from ._sacla_read import (
    EV_PER_ADU_UNIT,
    DetectorHandle,
    TailHold,
    Tally,
    detector_info,
    first_shots,
    open_handle,
    probe,
    read_frames,
    read_points,
)
from .base import SourceStatus

__all__ = ["EV_PER_ADU_UNIT", "SaclaStream", "make"]

log = logging.getLogger(__name__)

_RUN_STATE = {-1: "waiting", 0: "stopped", 1: "paused", 2: "running"}
_MAX_BACKOFF = 2.0
_HOLD_MAX = 1.0  # seconds the newest shots may wait for their images to reach the buffer
_BLOCK_FRAME_BYTES = 128 << 20  # full frames per block: 8 MPCCD sensors -> 8 shots, 1 -> 64


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


class SaclaStream:
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
        self._config_dets = {r.detector for r in rois}
        self._extra_dets: set[str] = set()
        self._queue: queue.Queue[ShotBlock] = queue.Queue(maxsize=max(1, queue_blocks))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db: ModuleType | None = None
        self._ol: ModuleType | None = None
        self._tally = Tally()
        self._notes = Notices()
        self._handles: dict[str, DetectorHandle] = {}
        self._info: dict[str, DetectorInfo] = {}
        self._equip: tuple[str, ...] = ()
        self._stream: tuple[str, ...] = ()
        self._not_in_stream: list[str] = []
        self._run: int | None = None
        self._hightag: int | None = None
        self._last: int | None = None
        self._run_state = ""  # "" until the first answer of read_runstatus
        self._down_since: float | None = None
        self._delivered = 0
        self._next_det_check = 0.0
        self._hold = TailHold(_HOLD_MAX)
        self._probed = False  # every detector of this run looked at once (for describe)

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
            self._probe_all()
        except DbDown as exc:  # start anyway; the poller retries
            self._went_down(exc)
        self._thread = threading.Thread(target=self._loop, name="shotwatch-sacla", daemon=True)
        self._thread.start()

    def describe(self) -> SourceInfo:
        """Run, array detectors of this run (shape, dtype, eV/ADU) and every point detector."""
        if self._thread is None and not self._stop.is_set():
            self.open()
        with self._lock:
            unprobed = [d for d in self._stream if d not in self._info]
            return SourceInfo(
                kind="sacla", run=self._run, hightag=self._hightag,
                detectors={d: self._info[d] for d in self._stream if d in self._info},
                points=list(self._equip),
                attrs={"beamline": self.cfg.beamline, "reference": self.cfg.reference,
                       "ngrab": self.cfg.ngrab, "frames_every": self.frames_every,
                       "recorded_points": list(self.points), "run_state": self._run_state,
                       "detectors_unprobed": unprobed},
            )

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        """Deliver frames of these ROIs' detectors too (besides the configuration's)."""
        with self._lock:
            self._extra_dets = {r.detector for r in rois.values()}
            self._next_det_check = 0.0

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
                                not_in_stream=list(self._not_in_stream))

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
        if not self._probed:
            self._check_stream(force=True)
            self._probe_all()
            return
        if newest_run != self._run:
            self._deliver(self._new_tags(None), hightag, live=False)  # the old run's last shots
            self._switch_run(newest_run, hightag)
        self._set_run_state(int(self._ask("read_runstatus", bl, self._run)))
        self._check_stream()
        self._deliver(self._new_tags(newest), hightag)

    def _deliver(self, tags: list[int], hightag: int, *, live: bool = True) -> None:
        """Read and queue ``tags`` in blocks of at most ngrab (the newest tail may wait)."""
        size = self._block_size()
        for lo in range(0, len(tags), size):
            if self._stop.is_set():
                return
            chunk = tags[lo:lo + size]
            block = self._read_block(chunk, hightag, may_hold=live and lo + len(chunk) == len(tags))
            if block is None:
                return
            self._last = int(block.tags[-1])
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
        with self._lock:
            dets = [self._info.get(d) for d in self._handles if d in self._wanted()]
        per_shot = sum(int(np.prod(i.shape)) * np.dtype(i.dtype).itemsize if i else 2 << 20 for i in dets)
        return max(1, min(self.cfg.ngrab, _BLOCK_FRAME_BYTES // max(per_shot, 1)))

    def _read_block(self, tags: list[int], hightag: int, *, may_hold: bool) -> ShotBlock | None:
        """One block: every point detector and the ROI detectors' frames (None: all held)."""
        with self._lock:
            handles = [h for d, h in self._handles.items() if d in self._wanted()]
        got = [(h, *read_frames(h, tags)) for h in handles]
        live = [ok for h, _, ok in got if h.live]  # a detector sending nothing is not waited for
        n = len(tags) - (self._hold.tail(tags, live) if may_hold and live else 0)
        if n == 0:
            return None
        for h, _, ok in got:
            h.live = bool(ok[:n].any())
        tags = tags[:n]
        points = read_points(self._api()[0], self.points, hightag, tags, self._tally, self._notes)
        frames = {}
        for handle, fr, ok in got:
            self._tally.count("image gone", n - int(ok[:n].sum()), name=handle.det)
            kept = first_shots(fr, n)
            if kept is not None:
                frames[handle.det] = kept
                self._note_info(handle)
        return ShotBlock(np.asarray(tags, dtype=np.int64), np.full(n, time.time()), points, {},
                         frames, run=self._run, hightag=hightag)

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
        self._set_run_state(int(self._ask("read_runstatus", bl, run)))

    def _start_at(self, run: int, hightag: int, newest: int) -> None:
        # Live monitoring starts with the next shot, not at the beginning of the run.
        with self._lock:
            self._run, self._hightag, self._last = run, hightag, newest

    def _new_tags(self, newest: int | None) -> list[int]:
        """The run's tags after the last delivered one, up to ``newest`` (None = all)."""
        taglist = self._ask("read_taglist_byrun", self.cfg.beamline, self._run)
        lo = bisect_right(taglist, self._last) if self._last is not None else 0
        hi = len(taglist) if newest is None else bisect_right(taglist, newest)
        return [int(t) for t in taglist[lo:hi]]

    def _switch_run(self, run: int, hightag: int) -> None:
        with self._lock:
            # No notice: the recorder announces the new run when its first block arrives.
            self._run, self._hightag, self._last, self._probed = run, hightag, -1, False
            self._info.clear()
            for handle in self._handles.values():
                handle.info = None
        self._check_stream(force=True)
        self._probe_all()

    def _set_run_state(self, code: int) -> None:
        state = _RUN_STATE.get(code, "waiting")
        with self._lock:
            if self._run_state and state != self._run_state:
                self._notes.add(f"run {self._run}: {state}")
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

    def _wanted(self) -> set[str]:
        return self._config_dets | self._extra_dets

    def _check_stream(self, *, force: bool = False) -> None:
        """Open readers for wanted detectors; list those this run does not have."""
        with self._lock:
            wanted = self._wanted()
            if not force and (time.monotonic() < self._next_det_check or wanted <= set(self._handles)):
                return
            self._next_det_check = time.monotonic() + 1.0
        stream = tuple(str(d) for d in self._ask("read_detidlist", self.cfg.beamline, self._run))
        missing = []
        for det in sorted(wanted):
            handle = self._handles.get(det) or (open_handle(self._api()[1], det) if det in stream else None)
            if handle is None or det not in stream:
                self._handles.pop(det, None)
                missing.append(det)
            else:
                self._handles[det] = handle
        self._update_missing(missing, stream)

    def _update_missing(self, missing: list[str], stream: tuple[str, ...]) -> None:
        with self._lock:
            self._stream = stream
            for det in missing:
                if det not in self._not_in_stream:
                    hint = ""
                    if any(s.startswith(det + "-") for s in stream):
                        hint = "; an octal MPCCD is 8 sensors: name one, e.g. " + det + "-1"
                    self._notes.add(f"{det}: not in stream (available: {', '.join(stream) or 'none'}){hint}")
            for det in self._not_in_stream:
                if det not in missing and det in self._handles:
                    self._notes.add(f"{det}: now in stream")
            self._not_in_stream = missing

    def _probe_all(self) -> None:
        """Read one recent frame of every detector in the stream, for describe()."""
        recent = self._ask("read_taglist_byrun", self.cfg.beamline, self._run)[-5:]
        for det in self._stream:
            handle = self._handles.get(det) or open_handle(self._api()[1], det)
            if handle is not None and probe(handle, recent):
                self._note_info(handle)
        self._probed = True

    def _note_info(self, handle: DetectorHandle) -> None:
        info = detector_info(handle) if handle.det not in self._info else None
        if info is not None:
            with self._lock:
                self._info[handle.det] = info
