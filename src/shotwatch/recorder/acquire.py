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
from ..link.messages import DarkMsg, Hello, Reply, ResetMsg
from ..link.protocols import Listener
from ..schemas import DarkFrame, Roi
from .analysis import sections_json
from .changes import AnalysisChanges
from .darks import DarkRefused, DarkTake, dark_refs, with_dark_refs
from .images import Grab
from .loop import recorded_points
from .tuning import MAX_GRAB_FRAMES

__all__ = ["Recorder", "recorded_points"]


class Recorder(AnalysisChanges):
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

    def take_dark(self, detector: str, n: int, *, force: bool = False) -> Future[DarkFrame]:
        """Average the next ``n`` full frames of ``detector`` (``shotwatch dark``): the frame, or
        :class:`~shotwatch.recorder.darks.DarkRefused` with the one-line reason.

        Unlike the ``dark`` request, the result is not recorded nor applied.
        """
        fut: Future[DarkFrame] = Future()

        def start() -> Reply | None:
            refused = self._dark_refusal(detector, n, force)
            if refused is not None:
                fut.set_exception(DarkRefused(refused))
                return Reply(False, refused)
            self._watch.takes.append(DarkTake(detector, n, force, self.config.alarm.beam, fut))
            return Reply(True)

        self._requests.submit(start)
        return fut

    def dark_progress(self) -> dict[str, tuple[int, int]]:
        """detector -> (frames taken, frames wanted) of the darks under way (any thread)."""
        return {t.detector: (t.state.frames, t.n) for t in list(self._watch.takes)}

    def pause(self, paused: bool) -> Future[Reply]:
        return self._requests.submit(lambda: self._do_pause(paused))

    def seek(self, *, seconds: float = 0.0, start: bool = False) -> Future[Reply]:
        return self._requests.submit(lambda: self._do_seek(seconds, start))

    def set_speed(self, speed: float) -> Future[Reply]:
        return self._requests.submit(lambda: self._do_speed(speed))

    def set_analysis(self, analysis: dict[str, Any], *, by: str) -> Future[Reply]:
        return self._requests.submit(lambda: self._do_set_analysis(analysis, by))

    def recompute(self) -> Future[Reply]:
        return self._requests.submit(self._do_recompute)

    def dark(self, detector: str, n: int, *, force: bool = False) -> Future[Reply]:
        reply: Future[Reply] = Future()

        def start() -> Reply | None:
            if self._playback is not None:
                return Reply(False, "dark: expected a live source, found a replay (it holds only the recorded "
                                    "frames; take darks while recording)")
            refused = self._dark_refusal(detector, n, force)
            if refused is not None:
                return Reply(False, refused)
            frame: Future[DarkFrame] = Future()  # resolved on this thread: so is the callback
            frame.add_done_callback(lambda f: reply.set_result(self._dark_done(detector, f)))
            self._watch.takes.append(DarkTake(detector, n, force, self.config.alarm.beam, frame))
            forced = " (forced: the beam is on)" if force and self._watch.beam_on else ""
            self.broadcast.notice(f"dark of {detector}: averaging the next {n} frames{forced}", level="info")
            return None  # answered when the frames are in

        return self._requests.submit(start, reply)

    def get_dark(self, detector: str, version: int) -> Future[Reply]:
        return self._requests.submit(lambda: self._do_get_dark(detector, version))

    def hello(self, *, publish: str, control: str) -> Hello | None:
        """For any thread: built from snapshots the acquire thread keeps, never the live table."""
        info = self._info
        if info is None:
            return None
        return Hello(publish=publish, control=control, config=self.config, source=info,
                     rois=list(self._rois_snapshot), version=__version__, playback=self._playback is not None,
                     analysis_version=self._version.version, epoch=self._epoch, darks=list(self._darks_snapshot))

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

    def _dark_refusal(self, detector: str, n: int, force: bool) -> str | None:
        """Why a dark of ``detector`` cannot start now (None: it can)."""
        known = self._info.detectors if self._info else {}
        if detector not in known:
            return f"dark: expected one of the source's detectors ({', '.join(sorted(known)) or 'none'}), found {detector!r}"
        if not 1 <= n <= MAX_GRAB_FRAMES:
            return f"dark: expected 1 <= n <= {MAX_GRAB_FRAMES} frames, found {n}"
        if any(t.detector == detector for t in self._watch.takes):
            return f"dark of {detector}: expected no other dark of it under way, found one"
        if self._watch.beam_on and not force:
            return (f"dark: beam on (veto {self.config.alarm.beam} passes): expected the beam off for a dark of "
                    f"{detector}, found it on at tag {self._tag_now()} (close the shutter, or force it)")
        return None

    def _dark_done(self, detector: str, taken: Future[DarkFrame]) -> Reply:
        """A dark finished (acquire thread): its version recorded, sent, and made part of the
        next analysis version (or the one-line reason it was abandoned)."""
        exc = taken.exception()
        if exc is not None:
            self.broadcast.notice(str(exc), level="warning")
            return Reply(False, str(exc))
        frame, now = taken.result(), time.time()
        k, notice = self.sink.add_dark(detector, frame, at=now) if self.sink is not None else (None, None)
        self.broadcast.notice(notice, level="error")
        meta = self.darks.add(detector, frame, version=k, at=now)
        msg = DarkMsg(detector, meta.version, frame)
        self.broadcast.emit(lambda listener: listener.on_dark(msg))
        self.broadcast.notice(f"dark of {detector} v{meta.version}: {frame.frames} frames, tags {frame.first_tag} .. "
                              f"{frame.last_tag}", level="info")
        # exactly as a console's set_analysis: version K+1 from the boundary, AnalysisMsg, recomputation
        config = with_dark_refs(self.config, {**dark_refs(self.config), detector: meta.version})
        reply = self._do_set_analysis(sections_json(config), "dark")
        return Reply(reply.ok, reply.error, {**reply.data, "detector": detector, "dark_version": meta.version})

    def _do_get_dark(self, detector: str, version: int) -> Reply:
        got = self.darks.get(detector, version)
        if got is None:
            return Reply(False, f"get_dark: expected a dark version the recorder holds "
                                f"({', '.join(self.darks.held()) or 'none'}), found {detector} v{version}")
        meta, frame = got
        return Reply(True, data={"detector": detector, "version": version, "frames": meta.frames,
                                 "first_tag": meta.first_tag, "last_tag": meta.last_tag,
                                 "mean": frame.mean, "std": frame.std})

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
        self.recomputer.cancel()  # the consoles restart: a prefix for the old position fits none
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


def _refused(error: str) -> Future[Reply]:
    fut: Future[Reply] = Future()
    fut.set_result(Reply(False, error))
    return fut
