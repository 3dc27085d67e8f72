"""The recorder: the acquire loop (``loop.py``) plus the requests other threads make of it.

Other threads (the control service, a console in the same process) talk to the recorder only
through the :class:`~shotwatch.link.protocols.Control` protocol: each request queues work
for the next block boundary and returns a future. Over a replay source, pause, seek and
speed are requests too; its ROIs, grabs and (recording off) marks are the recording's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from .. import __version__
from ..link.messages import Hello, Reply, ResetMsg
from ..link.protocols import Listener
from ..schemas import Roi
from .images import Grab
from .loop import AcquireLoop, recorded_points
from .tuning import MAX_GRAB_FRAMES

__all__ = ["Recorder", "recorded_points"]


class Recorder(AcquireLoop):
    """Owns the source and the recording; serves any number of listeners (a ``Control``).

    Arguments as :class:`~shotwatch.recorder.loop.AcquireLoop`.
    """

    # --- listeners and counters ------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Hear everything the recorder emits, from the acquire thread, until removed."""
        self.broadcast.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop hearing; a listener not added is ignored."""
        self.broadcast.remove_listener(listener)

    def add_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        """Counted faults of another part (the network service) to show in the status."""
        self.broadcast.add_counters(counters)

    def remove_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        self.broadcast.remove_counters(counters)

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

    def _check_roi(self, roi: Roi) -> Reply | None:
        """The refusal of ``set_roi(roi)``, or None where it can be set."""
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
        return None

    def _do_set_roi(self, roi: Roi) -> Reply:
        if (refused := self._check_roi(roi)) is not None:
            return refused
        version = self.rois.set(roi, shot=self._shot, tag=self._tag_now() + 1)
        if version is None:
            return Reply(True, data={"changed": False})
        self._rois_changed()
        self.broadcast.notice(f"ROI {roi.name} v{version.version} on {roi.detector}: x [{roi.x[0]}, {roi.x[1]}) "
                     f"y [{roi.y[0]}, {roi.y[1]}) from tag {version.first_tag}", level="info")
        return Reply(True, data={"changed": True, "version": version.version, "first_shot": version.first_shot})

    def _check_delete(self, name: str) -> Reply | None:
        """The refusal of ``delete_roi(name)``, or None where it can be deleted."""
        if (refused := self._from_recording("delete_roi")) is not None:
            return refused
        if name not in self.rois.active_rois():
            return Reply(False, f"ROI {name!r}: expected one of {sorted(self.rois.active_rois())}, found no such active ROI")
        return None

    def _do_delete_roi(self, name: str) -> Reply:
        if (refused := self._check_delete(name)) is not None:
            return refused
        self.rois.delete(name, shot=self._shot)
        self._rois_changed()
        self.broadcast.notice(f"ROI {name} deleted from tag {self._tag_now() + 1}", level="info")
        return Reply(True)

    def _rois_changed(self) -> None:
        assert self._source is not None
        self._source.set_rois(rois={k: v.roi for k, v in self.rois.active().items()})
        if self.sink is not None:
            self.broadcast.notice(self.sink.set_rois(self.rois), level="error")
        self._announce_rois()

    def _do_mark(self, text: str) -> Reply:
        if self._playback is not None and self.sink is None:
            return Reply(False, "replay: a replay never changes the recording (mark)")
        mark = self.sink.mark(text, tag=self.health.last_tag, at=time.time()) if self.sink else None
        self.broadcast.notice(f"mark: {text}", level="info")
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
        self.broadcast.notice(f"replay {'paused' if paused else 'resumed'}", level="info")
        self._emit_status()  # the new state at once, not at the next heartbeat
        return Reply(True, data={"paused": paused})

    def _do_speed(self, speed: float) -> Reply:
        if self._playback is None:
            return _not_a_replay("speed")
        try:
            self._playback.set_speed(speed)
        except ValueError as exc:
            return Reply(False, str(exc))
        self.broadcast.notice(f"replay speed {'as fast as possible' if speed == 0 else f'x{speed:g}'}", level="info")
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
        self.broadcast.emit(lambda listener: listener.on_reset(msg))
        self._emit_status()
        return Reply(True, data={"tag": tag})


def _not_a_replay(op: str) -> Reply:
    return Reply(False, f"{op}: expected a recorder replaying a recording, found a live source "
                        "(pause and seek work in replay only)")
