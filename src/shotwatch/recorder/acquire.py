"""The acquire loop: source → cut ROIs → recording, images, health → listeners.

One thread runs :meth:`Recorder.run`. Other threads (the control service, a console in the
same process) talk to it only through the request methods of the
:class:`~shotwatch.link.protocols.Control` protocol, which queue work for the next block
boundary and return futures; listeners are called from the acquire thread.

Over a replay source the same loop runs with the recording off (``shotwatch replay``) or on
(``record`` with ``[source] kind = "replay"``); the source's :class:`Playback` makes pause,
seek and speed requests of this recorder, and its recorded ROI table is this recorder's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Literal

from .. import __version__
from ..link.messages import BlockMsg, Hello, ImageMsg, NoticeMsg, Reply, ResetMsg, RoisMsg, Status, StatusMsg
from ..link.protocols import Listener
from ..reducers import Analysis, SummaryReducer
from ..reducers.summary import SummaryState
from ..schemas import Config, Roi, RoiTable, RoiVersion, ShotBlock, SourceError
from ..schemas.source_info import SourceInfo
from ..sources import Source, open_source
from ..sources.base import Playback
from .cut import cut_block, decimate_frames
from .health import Health
from .images import Grab, ImageWindow
from .requests import RequestQueue
from .sink import RecordingSink
from .tuning import (
    COMMIT_SECONDS,
    IMAGE_EVERY,
    MAX_GRAB_FRAMES,
    MAX_PUBLISH_SHOTS,
    PUBLISH_EVERY,
    READ_TIMEOUT,
    ROTATE_EVERY,
    STATUS_EVERY,
)

__all__ = ["Recorder", "recorded_points"]

log = logging.getLogger("shotwatch.recorder")


def recorded_points(config: Config, info: SourceInfo) -> list[str]:
    """``source.points`` (default: all the source offers) plus every analysis point."""
    chosen = getattr(config.source, "points", None)
    if isinstance(chosen, dict):  # karabo: "source/key" -> point name
        chosen = list(chosen.values())
    if chosen is None:
        chosen = info.points if config.source.kind in ("sim", "replay") else []
    return list(dict.fromkeys([*chosen, *config.analysis_points()]))


class Recorder:
    """Owns the source and the recording; serves any number of listeners.

    Args:
        config: the configuration in force.
        out: recording path template (default ``record.out``).
        append: continue an existing recording (``record --append``).
        commit_seconds: commit at least this often while shots come.
        record: False: live only (``shotwatch replay``, tests), no recording.
        summary: keep the live ``reduce --json`` reduction (``record --summary-json``); off,
            the acquire thread does not reduce at all.
        source: the source to read (default: the one ``config.source`` names).
    """

    def __init__(self, config: Config, *, out: str | None = None, append: bool = False,
                 commit_seconds: float = COMMIT_SECONDS, record: bool = True, summary: bool = False,
                 source: Source | None = None) -> None:
        self.config = config
        self.rois = RoiTable()
        self.health = Health()
        self.sink = RecordingSink(config, template=out or config.record.out, append=append,
                                  commit_seconds=commit_seconds) if record else None
        self._listeners: list[Listener] = []
        self._counters: list[Callable[[], Mapping[str, int]]] = []
        self._requests = RequestQueue()
        self._given_source = source
        self._source: Source | None = None
        self._playback: Playback | None = None
        self._info: SourceInfo | None = None
        self._asked: set[str] = set()  # detectors already looked up again after they appeared
        self._want_summary = summary
        self._summary: tuple[SummaryReducer, SummaryState] | None = None
        self._stopping = False
        self._grabs: list[Grab] = []
        self._images = ImageWindow()
        self._pending: list[ShotBlock] = []
        self._seq = -1
        self._shot = 0  # shot index in the current recording
        self._next_frame = 0
        self._timers = {"publish": 0.0, "status": 0.0, "image": 0.0, "rotate": 0.0, "commit": time.monotonic()}
        self._last_tag = -1
        self._old_tags = 0
        self._rois_snapshot: tuple[RoiVersion, ...] = ()

    # --- start and stop ----------------------------------------------------------------

    def open(self) -> None:
        """Open the source, check ROIs against it, check the first recording's path."""
        if self._source is not None:
            return
        source = self._given_source or open_source(self.config)
        source.open()
        self._source, self._playback = source, source.playback()
        info = self._info = source.describe()
        for roi in self.config.roi:
            det = info.detectors.get(roi.detector)
            if det is not None:
                try:
                    roi.check_shape(det.shape)
                except ValueError as exc:
                    raise SourceError(str(exc)) from None
        if self.sink is not None:
            self.sink.check_target(run=info.run)
            last = self.sink.last_tag()
            if last is not None:
                self._last_tag = last
                source.start_after(last)
        if self._playback is not None:
            self.rois = RoiTable.from_versions(self._playback.rois())
        else:
            self.rois.apply({r.name: r for r in self.config.roi}, shot=0, tag=-1)
            source.set_rois(rois={k: v.roi for k, v in self.rois.active().items()})
        self._rois_snapshot = tuple(self.rois.all())
        self._new_summary()

    def _new_summary(self) -> None:
        """The live summary under the detectors known now (its states carry no calibration)."""
        if self._want_summary and self._info is not None:
            ev = {d: i.ev_per_adu for d, i in self._info.detectors.items()}
            reducer = SummaryReducer(Analysis.from_config(self.config, ev_per_adu=ev))
            self._summary = (reducer, self._summary[1] if self._summary else reducer.init())

    def _start_recording(self, block: ShotBlock) -> None:
        """Open this run's recording at its first block, so ROI versions start at its first tag."""
        assert self._source is not None and self._info is not None and self.sink is not None
        if self._playback is None:
            active = list(self.rois.active().values())
            # --append continues the recording's ROI history and shot count.
            self.rois, self._shot = self.sink.resume()
            self._next_frame = self._shot
            self.rois.apply({v.name: v.roi for v in active}, shot=self._shot, tag=int(block.tags[0]))
            self._source.set_rois(rois={k: v.roi for k, v in self.rois.active().items()})
        failed = self.sink.open(info=self._info, rois=self.rois, points=recorded_points(self.config, self._info))
        path = self.sink.path
        if failed is not None or path is None:
            self._notice(failed, level="error")
            return
        if self.sink.renamed_from is not None:
            self._notice(f"{self.sink.renamed_from} exists already: recording run {self._info.run} to {path}",
                         level="info")
        self._emit(lambda listener: listener.on_recording(path))
        log.info("recording to %s", path)
        self._announce_rois()

    def close(self) -> None:
        if self.sink is not None:
            self._notice(self.sink.close(), level="error")
        if self._source is not None:
            self._source.close()
        self._emit_status()

    # --- listeners and counters ------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Hear everything the recorder emits, from the acquire thread, until removed."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop hearing; a listener not added is ignored."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def add_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        """Counted faults of another part (the network service) to show in the status."""
        self._counters.append(counters)

    def remove_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        if counters in self._counters:
            self._counters.remove(counters)

    # --- requests (any thread; the Control protocol) -------------------------------------

    def set_roi(self, roi: Roi) -> Future[Reply]:
        return self._requests.submit(lambda: self._do_set_roi(roi))

    def delete_roi(self, name: str) -> Future[Reply]:
        return self._requests.submit(lambda: self._do_delete_roi(name))

    def mark(self, text: str) -> Future[Reply]:
        return self._requests.submit(lambda: self._do_mark(text))

    def stop(self) -> Future[Reply]:
        self._stopping = True
        fut: Future[Reply] = Future()
        fut.set_result(Reply(True))
        return fut

    def grab(self, detector: str, n: int) -> Future[Reply]:
        fut: Future[Reply] = Future()
        return self._requests.submit(lambda: self._do_grab(detector, n, fut), fut)

    def pause(self, paused: bool) -> Future[Reply]:
        return self._requests.submit(lambda: self._do_pause(paused))

    def seek(self, *, seconds: float = 0.0, start: bool = False) -> Future[Reply]:
        return self._requests.submit(lambda: self._do_seek(seconds, start))

    def set_speed(self, speed: float) -> Future[Reply]:
        return self._requests.submit(lambda: self._do_speed(speed))

    def hello(self, *, publish: str, control: str) -> Hello | None:
        """For any thread: built from snapshots the acquire thread keeps, never the live table."""
        info = self._info
        if info is None:
            return None
        return Hello(publish=publish, control=control, config=self.config, source=info,
                     rois=list(self._rois_snapshot), version=__version__, playback=self._playback is not None)

    def summary(self) -> dict[str, Any]:
        """The live reduction of every shot of this run so far (``--summary-json``)."""
        if self._summary is None:
            raise RuntimeError("summary: this recorder was made without summary=True")
        reducer, state = self._summary
        return reducer.result(state)

    # --- request handlers (acquire thread) ------------------------------------------

    def _tag_now(self) -> int:
        return self.health.last_tag if self.health.last_tag is not None else -1

    def _from_recording(self, op: str) -> Reply | None:
        """ROIs of a replay are the recording's: a refusal for an edit, None otherwise."""
        if self._playback is None:
            return None
        return Reply(False, f"replay: ROIs come from the recording in a replay ({op}); edit them in a live console")

    def _do_set_roi(self, roi: Roi) -> Reply:
        if (refused := self._from_recording("set_roi")) is not None:
            return refused
        det = self._info.detectors.get(roi.detector) if self._info else None
        if det is None:
            known = sorted(self._info.detectors) if self._info else []
            return Reply(False, f"ROI {roi.name!r}: expected a detector in {known}, found {roi.detector!r}")
        try:
            roi.check_shape(det.shape)
        except ValueError as exc:
            return Reply(False, str(exc))
        version = self.rois.set(roi, shot=self._shot, tag=self._tag_now() + 1)
        if version is None:
            return Reply(True, data={"changed": False})
        self._rois_changed()
        self._notice(f"ROI {roi.name} v{version.version} on {roi.detector}: x [{roi.x[0]}, {roi.x[1]}) "
                     f"y [{roi.y[0]}, {roi.y[1]}) from tag {version.first_tag}", level="info")
        return Reply(True, data={"changed": True, "version": version.version, "first_shot": version.first_shot})

    def _do_delete_roi(self, name: str) -> Reply:
        if (refused := self._from_recording("delete_roi")) is not None:
            return refused
        if self.rois.delete(name, shot=self._shot) is None:
            return Reply(False, f"ROI {name!r}: expected one of {sorted(self.rois.active_rois())}, found no such active ROI")
        self._rois_changed()
        self._notice(f"ROI {name} deleted from tag {self._tag_now() + 1}", level="info")
        return Reply(True)

    def _rois_changed(self) -> None:
        assert self._source is not None
        self._source.set_rois(rois={k: v.roi for k, v in self.rois.active().items()})
        if self.sink is not None:
            self._notice(self.sink.set_rois(self.rois), level="error")
        self._announce_rois()

    def _announce_rois(self) -> None:
        self._rois_snapshot = tuple(self.rois.all())
        msg = RoisMsg(self._rois_snapshot)
        self._emit(lambda listener: listener.on_rois(msg))

    def _do_mark(self, text: str) -> Reply:
        if self._playback is not None and self.sink is None:
            return Reply(False, "replay: a replay never changes the recording (mark)")
        mark = self.sink.mark(text, tag=self.health.last_tag, at=time.time()) if self.sink else None
        self._notice(f"mark: {text}", level="info")
        return Reply(True, data={"mark": mark or {"text": text, "tag": self.health.last_tag}})

    def _do_grab(self, detector: str, n: int, fut: Future[Reply]) -> Reply | None:
        known = self._info.detectors if self._info else {}
        if self._playback is not None:
            return Reply(False, "replay: a replay has only the recorded frames (the running average shows them)")
        if detector not in known:
            return Reply(False, f"grab: expected one of {sorted(known)}, found {detector!r}")
        if not 1 <= n <= MAX_GRAB_FRAMES:
            return Reply(False, f"grab: expected 1 <= n <= {MAX_GRAB_FRAMES} frames, found {n}")
        self._grabs.append(Grab(detector, n, fut))
        return None  # answered when the frames are in

    def _do_pause(self, paused: bool) -> Reply:
        if self._playback is None:
            return _not_a_replay("pause")
        self._playback.set_paused(paused)
        self._notice(f"replay {'paused' if paused else 'resumed'}", level="info")
        self._emit_status()  # the new state at once, not at the next heartbeat
        return Reply(True, data={"paused": paused})

    def _do_speed(self, speed: float) -> Reply:
        if self._playback is None:
            return _not_a_replay("speed")
        try:
            self._playback.set_speed(speed)
        except ValueError as exc:
            return Reply(False, str(exc))
        self._notice(f"replay speed {'as fast as possible' if speed == 0 else f'x{speed:g}'}", level="info")
        self._emit_status()
        return Reply(True, data={"speed": speed})

    def _do_seek(self, seconds: float, start: bool) -> Reply:
        if self._playback is None:
            return _not_a_replay("seek")
        recording = self.sink is not None and self.sink.recording
        if recording and (start or seconds < 0):
            return Reply(False, "seek: expected a forward seek while recording (tags must grow within a "
                                f"recording), found {'the start' if start else f'{seconds:g} s'}")
        self._flush_publish()  # the blocks before the seek go out before the reset
        tag = self._playback.seek(seconds=seconds, start=start)
        self.health.new_run()
        if not recording:
            self._last_tag = -1
        self._follow_playback_rois()
        where = "its end" if tag is None else f"tag {tag}"
        msg = ResetMsg(time.time(), f"replay moved to {where}: averages restarted")
        self._emit(lambda listener: listener.on_reset(msg))
        self._emit_status()
        return Reply(True, data={"tag": tag})

    def _follow_playback_rois(self) -> None:
        """A replay's ROI table is the recording's as of the shots delivered: adopt its changes."""
        assert self._playback is not None
        table = RoiTable.from_versions(self._playback.rois())
        if tuple(table.all()) == self._rois_snapshot:
            return
        self.rois = table
        if self.sink is not None:
            self._notice(self.sink.set_rois(self.rois), level="error")
        self._announce_rois()

    # --- the loop ------------------------------------------------------------------------

    def run(self, *, shots: int | None = None, seconds: float | None = None, stop_at_end: bool = True) -> None:
        """Acquire until ``shots`` shots were recorded, ``seconds`` passed, or stop().

        ``stop_at_end``: a replay source at its end stops the loop (False: keep serving, a
        console may still seek back).
        """
        self.open()
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while not self._stopping:
                self._requests.apply()
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if shots is not None and self.health.shots >= shots:
                    break
                block = self._source.read(timeout=READ_TIMEOUT) if self._source else None
                ended = self._source is not None and self._source.status().state == "ended"
                if block is None and ended and stop_at_end:
                    break  # a replay source at its end: nothing more will come
                if block is not None and len(block):
                    if shots is not None:
                        block = block.slice(0, shots - self.health.shots)
                    self._process(block)
                self._tick()
        finally:
            self._flush_publish()
            self._requests.apply()
            self.close()

    def _process(self, block: ShotBlock) -> None:
        assert self._source is not None
        block = self._drop_old_tags(block)
        if not len(block):
            return
        if self.health.run is not None and block.run != self.health.run:
            self._new_run(block)
        if self._playback is not None:
            self._follow_playback_rois()
        if self.sink is not None and self.sink.state == "live":
            self._start_recording(block)
        self._learn_detectors(block)
        if self._playback is None:  # a replay delivers every recorded version's cutouts as they are
            block = cut_block(block, self.rois.active(), self._info.detectors if self._info else None)
        self._images.add(block)
        for grab in list(self._grabs):
            msg = grab.add(block)
            if msg is not None:
                self._grabs.remove(grab)
                self._emit_image(msg)
        self.health.add(block)
        if self._summary is not None:
            reducer, state = self._summary
            self._summary = (reducer, reducer.update(state, block))
        if self.sink is not None:
            every = self.config.record.frames_every
            kept, self._next_frame = decimate_frames(block, first_shot=self._shot, every=every,
                                                     next_shot=self._next_frame)
            self._notice(self.sink.write(kept), level="error")
        self._shot += len(block)
        self._pending.append(block.with_(frames={}))
        if sum(len(b) for b in self._pending) >= MAX_PUBLISH_SHOTS:
            self._flush_publish()

    def _learn_detectors(self, block: ShotBlock) -> None:
        """A detector appeared mid-run: learn its shape and gain, and record them (FACILITY.md)."""
        assert self._source is not None and self._info is not None
        seen = {*block.frames, *(c.detector for c in block.cutouts.values() if c.detector)}
        new = seen - set(self._info.detectors) - self._asked
        if not new:
            return
        self._asked |= new  # asked once each: a source that cannot tell is not asked every block
        self._info = self._source.describe()
        self._new_summary()
        if self.sink is not None:
            self._notice(self.sink.set_detectors(self._info), level="error")

    def _drop_old_tags(self, block: ShotBlock) -> ShotBlock:
        """Tags must grow within a recording: shots at or before the last tag are dropped."""
        if self.health.run is not None and block.run != self.health.run:
            self._last_tag = -1
        fresh = block.tags > self._last_tag
        if not fresh.all():
            dropped = int((~fresh).sum())
            self._old_tags += dropped
            self._notice(f"dropped {dropped} shot(s) whose tag was not after the last recorded tag {self._last_tag}")
            block = block.select(fresh)
        if len(block):
            self._last_tag = int(block.tags[-1])
        return block

    def _new_run(self, block: ShotBlock) -> None:
        """A new run of the source: its recording is closed (its last shots committed) before
        the next one opens, at this block (:meth:`_start_recording`)."""
        assert self._source is not None
        self._notice(f"run {self.health.run} ended; run {block.run} started", level="info")
        self._info = self._source.describe()
        self.health.new_run()
        self._shot = self._next_frame = 0
        if self._summary is not None:
            self._summary = (self._summary[0], self._summary[0].init())
        if self.sink is not None:
            self._notice(self.sink.new_run(), level="error")

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._timers["publish"] >= PUBLISH_EVERY:
            self._flush_publish()
            self._timers["publish"] = now
        if now - self._timers["rotate"] >= ROTATE_EVERY:
            self._images.rotate()
            self._timers["rotate"] = now
        if self.sink is not None and now - self._timers["commit"] >= self.sink.commit_seconds:
            # The writer commits on write when due; this covers a pause in the beam.
            self._notice(self.sink.commit(), level="error")
            self._timers["commit"] = now
        if now - self._timers["status"] >= STATUS_EVERY:
            self._drain_source_notices()
            self._emit_status()
            self._timers["status"] = now
        if now - self._timers["image"] >= IMAGE_EVERY:
            for msg in self._images.messages():
                self._emit_image(msg)
            self._timers["image"] = now

    def _flush_publish(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._seq += 1
        if not any(listener.wants_blocks for listener in self._listeners):
            return  # headless: joining the blocks would only copy memory
        msg = BlockMsg(self._seq, ShotBlock.concat(pending))
        self._emit(lambda listener: listener.on_block(msg))

    def _drain_source_notices(self) -> None:
        if self._source is not None:
            for text in self._source.notices():
                self._notice(text)

    # --- output --------------------------------------------------------------------------

    def status(self) -> Status:
        src = self._source.status() if self._source else None
        counters = dict(src.counters) if src else {}
        for more in self._counters:
            counters.update(more())
        if self._old_tags:
            counters["tags not increasing"] = self._old_tags
        sink = self.sink
        return Status(
            time=time.time(), source=self.config.source.kind,
            source_state=src.state if src else "waiting", run=self.health.run,
            last_tag=self.health.last_tag, rate_hz=round(self.health.rate(), 3),
            newest_age_s=self.health.age(), shots=self.health.shots, tag_gaps=self.health.tag_gaps,
            missing=dict(src.missing) if src else {}, counters=counters,
            not_in_stream=list(src.not_in_stream) if src else [],
            state=sink.state if sink else "live", recording=str(sink.path) if sink and sink.path else None,
            bytes=sink.size() if sink else 0, committed=sink.committed if sink else 0,
            free_bytes=sink.free_bytes() if sink else None, seq=self._seq,
            speed=self._playback.speed if self._playback is not None else None,
        )

    def _emit_status(self) -> None:
        msg = StatusMsg(self.status())
        self._emit(lambda listener: listener.on_status(msg))

    def _emit_image(self, msg: ImageMsg) -> None:
        self._emit(lambda listener: listener.on_image(msg))

    def _notice(self, text: str | None, *, level: Literal["info", "warning", "error"] = "warning") -> None:
        if not text:
            return
        log.log(logging.INFO if level == "info" else logging.WARNING, "%s", text)
        msg = NoticeMsg(time.time(), text, level)
        self._emit(lambda listener: listener.on_notice(msg))

    def _emit(self, call: Callable[[Listener], None]) -> None:
        for listener in list(self._listeners):
            try:
                call(listener)
            except Exception:
                log.exception("listener %r failed", listener)


def _not_a_replay(op: str) -> Reply:
    return Reply(False, f"{op}: expected a recorder replaying a recording, found a live source "
                        "(pause and seek work in replay only)")
