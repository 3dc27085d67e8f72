"""The acquire loop: source → cut ROIs → recording, live summary, images → listeners.

One thread runs :meth:`Recorder.run`. Other threads (the control service, a console in the
same process) talk to it only through the request methods, which queue work for the next
block boundary and return futures; listeners are called from the acquire thread.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from ..link.messages import BlockMsg, ImageMsg, NoticeMsg, Reply, RoisMsg, Status, StatusMsg
from ..link.protocols import Listener
from ..reducers import Analysis, SummaryReducer, roi_versions
from ..schemas import Config, Roi, RoiTable, RoiVersion, ShotBlock, SourceError
from ..schemas.source_info import SourceInfo
from ..sources import Source, open_source
from .cut import cut_block, decimate_frames
from .health import Health
from .images import Grab, ImageWindow
from .sink import RecordingSink

__all__ = ["Recorder", "recorded_points"]

log = logging.getLogger("shotwatch.recorder")

PUBLISH_EVERY = 0.25  # s: blocks go out at least every 0.5 s (DESIGN), a little more often here
STATUS_EVERY = 0.5  # s: heartbeat >= 1 Hz
IMAGE_EVERY = 3.0  # s: running images are costly on the wire and on screen
MAX_PUBLISH_SHOTS = 2048  # bounds what a stalled console's queue can hold
READ_TIMEOUT = 0.1  # s: how long one source read may wait, so requests stay responsive


def recorded_points(config: Config, info: SourceInfo) -> list[str]:
    """``source.points`` (default: all the source offers) plus every analysis point."""
    return config.recorded_points(info.points)


class Recorder:
    """Owns the source and the recording; serves any number of listeners."""

    def __init__(self, config: Config, *, out: str | None = None, append: bool = False,
                 commit_seconds: float = 2.0, record: bool = True) -> None:
        self.config = config
        self._listeners: list[Listener] = []
        self._counters: list[Callable[[], Mapping[str, int]]] = []
        self.rois = RoiTable()
        self.health = Health()
        self.sink = RecordingSink(config, template=out or config.record.out, append=append,
                                  commit_seconds=commit_seconds) if record else None
        self._requests: queue.Queue[tuple[Callable[[], Reply], Future[Reply]]] = queue.Queue()
        self._source: Source | None = None
        self._info: SourceInfo | None = None
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
        """Open the source, check ROIs against it, open the first recording."""
        if self._source is not None:
            return
        source = open_source(self.config)
        source.open()
        self._source = source
        info = source.describe()
        self._info = info
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
                if hasattr(source, "start_after"):
                    source.start_after(last)
        self.rois.apply({r.name: r for r in self.config.roi}, shot=0, tag=-1)
        source.set_rois(rois={k: v.roi for k, v in self.rois.active().items()})
        self._rois_snapshot = tuple(self.rois.all())
        self._analysis = Analysis.from_config(self.config, detectors=info.detectors, roi_names=self.rois.versions)
        self._summary_reducer = SummaryReducer(self._analysis)
        self._summary = self._summary_reducer.init()

    def _start_recording(self, block: ShotBlock) -> None:
        """Open the recording at the first block, so ROI versions start at its first tag."""
        assert self._source is not None and self._info is not None and self.sink is not None
        active = self._last_active()
        # --append continues the recording's ROI history and shot count.
        self.rois, self._shot = self.sink.resume()
        self._next_frame = self._shot
        self.rois.apply({v.name: v.roi for v in active}, shot=self._shot, tag=int(block.tags[0]))
        self._source.set_rois(rois={k: v.roi for k, v in self.rois.active().items()})
        path = self.sink.open(info=self._info, rois=self.rois, points=recorded_points(self.config, self._info))
        self._emit(lambda listener: listener.on_recording(path))
        log.info("recording to %s", path)
        self._announce_rois()

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
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

    # --- requests (any thread) ---------------------------------------------------------

    def _submit(self, work: Callable[[], Reply]) -> Future[Reply]:
        fut: Future[Reply] = Future()
        self._requests.put((work, fut))
        return fut

    def set_roi(self, roi: Roi) -> Future[Reply]:
        return self._submit(lambda: self._do_set_roi(roi))

    def delete_roi(self, name: str) -> Future[Reply]:
        return self._submit(lambda: self._do_delete_roi(name))

    def mark(self, text: str) -> Future[Reply]:
        return self._submit(lambda: self._do_mark(text))

    def stop(self) -> Future[Reply]:
        self._stopping = True
        fut: Future[Reply] = Future()
        fut.set_result(Reply(True))
        return fut

    def grab(self, detector: str, n: int) -> Future[Reply]:
        fut: Future[Reply] = Future()

        def work() -> Reply:
            known = self._info.detectors if self._info else {}
            if detector not in known:
                fut.set_result(Reply(False, f"grab: expected one of {sorted(known)}, found {detector!r}"))
            elif not 1 <= n <= 10_000:
                fut.set_result(Reply(False, f"grab: expected 1 <= n <= 10000 frames, found {n}"))
            else:
                self._grabs.append(Grab(detector, n, fut))
            return Reply(True)

        self._requests.put((work, Future()))
        return fut

    def hello_parts(self) -> tuple[Config, SourceInfo | None, list[RoiVersion]]:
        """For the control thread: a snapshot the acquire thread keeps, never the live table."""
        return self.config, self._info, list(self._rois_snapshot)

    def summary(self) -> dict[str, Any]:
        """The live reduction of every shot recorded so far (``--summary-json``)."""
        return self._summary_reducer.result(self._summary)

    # --- request handlers (acquire thread) ------------------------------------------

    def _tag_now(self) -> int:
        return self.health.last_tag if self.health.last_tag is not None else -1

    def _do_set_roi(self, roi: Roi) -> Reply:
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
        if self.rois.delete(name, shot=self._shot) is None:
            return Reply(False, f"ROI {name!r}: expected one of {sorted(self.rois.active_rois())}, found no such active ROI")
        self._rois_changed()
        self._notice(f"ROI {name} deleted from tag {self._tag_now() + 1}", level="info")
        return Reply(True)

    def _rois_changed(self) -> None:
        assert self._source is not None
        self._source.set_rois(rois={k: v.roi for k, v in self.rois.active().items()})
        if self.sink is not None:
            self._notice(self.sink.call("set_rois", self.rois))
        self._announce_rois()

    def _announce_rois(self) -> None:
        self._rois_snapshot = tuple(self.rois.all())
        msg = RoisMsg(self._rois_snapshot)
        self._emit(lambda listener: listener.on_rois(msg))

    def _do_mark(self, text: str) -> Reply:
        mark = self.sink.mark(text, tag=self.health.last_tag, at=time.time()) if self.sink else None
        self._notice(f"mark: {text}", level="info")
        return Reply(True, data={"mark": mark or {"text": text, "tag": self.health.last_tag}})

    def _apply_requests(self) -> None:
        while True:
            try:
                work, fut = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                reply = work()
            except Exception as exc:
                log.exception("request failed")
                reply = Reply(False, f"request failed: {exc}")
            if not fut.done():
                fut.set_result(reply)

    # --- the loop ------------------------------------------------------------------------

    def run(self, *, shots: int | None = None, seconds: float | None = None) -> None:
        """Acquire until ``shots`` shots were recorded, ``seconds`` passed, or stop()."""
        self.open()
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while not self._stopping:
                self._apply_requests()
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if shots is not None and self.health.shots >= shots:
                    break
                block = self._source.read(timeout=READ_TIMEOUT) if self._source else None
                if block is None and self._source is not None and self._source.status().state == "ended":
                    break  # a replay source at its end: nothing more will come
                if block is not None and len(block):
                    if shots is not None:
                        block = block.slice(0, shots - self.health.shots)
                    self._process(block)
                self._tick()
        finally:
            self._flush_publish()
            self._apply_requests()
            self.close()

    def _process(self, block: ShotBlock) -> None:
        assert self._source is not None
        block = self._drop_old_tags(block)
        if not len(block):
            return
        if self.health.run is not None and block.run != self.health.run:
            self._new_run(block)
        elif self.sink is not None and self.sink.state == "live" and self._shot == 0:
            self._start_recording(block)
        if self._info is not None and any(d not in self._info.detectors for d in block.frames):
            self._refresh_detectors()
        active = self.rois.active()
        block = cut_block(block, active, self._info.detectors if self._info else None)
        self._images.add(block)
        for grab in list(self._grabs):
            msg = grab.add(block)
            if msg is not None:
                self._grabs.remove(grab)
                self._emit_image(msg)
        self.health.add(block)
        self._summary = self._summary_reducer.update(self._summary, block, versions=roi_versions(self.rois.all()))
        if self.sink is not None:
            every = self.config.record.frames_every
            kept, self._next_frame = decimate_frames(block, first_shot=self._shot, every=every,
                                                     next_shot=self._next_frame)
            self._notice(self.sink.write(kept), level="error")
        self._shot += len(block)
        self._pending.append(block.with_(frames={}))
        if sum(len(b) for b in self._pending) >= MAX_PUBLISH_SHOTS:
            self._flush_publish()

    def _refresh_detectors(self) -> None:
        """A detector appeared mid-run: learn its shape and gain, tell the recording."""
        assert self._source is not None
        self._info = self._source.describe()
        self._analysis = Analysis.from_config(self.config, detectors=self._info.detectors, roi_names=self.rois.versions)
        self._summary_reducer = SummaryReducer(self._analysis)  # states carry no calibration
        if self.sink is not None and self.sink.writer is not None and hasattr(self.sink.writer, "set_detectors"):
            self._notice(self.sink.call("set_detectors", self._info), level="error")

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
        """A new run of the source: close this recording and start the next one."""
        assert self._source is not None
        self._notice(f"run {self.health.run} ended; run {block.run} started", level="info")
        self._info = self._source.describe()
        self.health.new_run()
        self._shot = self._next_frame = 0
        self._summary = self._summary_reducer.init()
        if self.sink is not None and self.sink.writer is not None:
            self.sink.close()
            self.sink.state = "live"
            self._start_recording(block)

    def _last_active(self) -> list[RoiVersion]:
        return list(self.rois.active().values())

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._timers["publish"] >= PUBLISH_EVERY:
            self._flush_publish()
            self._timers["publish"] = now
        if now - self._timers["rotate"] >= 1.0:
            self._images.rotate()
            self._timers["rotate"] = now
        if self.sink is not None and now - self._timers["commit"] >= self.sink.commit_seconds:
            # The writer commits on write when due; this covers a pause in the beam.
            self._notice(self.sink.call("commit"), level="error")
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
        )

    def _emit_status(self) -> None:
        msg = StatusMsg(self.status())
        self._emit(lambda listener: listener.on_status(msg))

    def _emit_image(self, msg: ImageMsg) -> None:
        self._emit(lambda listener: listener.on_image(msg))

    def _notice(self, text: str | None, *, level: str = "warning") -> None:
        if not text:
            return
        log.log(logging.INFO if level == "info" else logging.WARNING, "%s", text)
        msg = NoticeMsg(time.time(), text, level)  # type: ignore[arg-type]
        self._emit(lambda listener: listener.on_notice(msg))

    def _emit(self, call: Callable[[Listener], None]) -> None:
        for listener in list(self._listeners):
            try:
                call(listener)
            except Exception:
                log.exception("listener %r failed", listener)
