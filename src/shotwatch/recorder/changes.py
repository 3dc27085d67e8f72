"""Changing the analysis while recording (INTERFACE.md, analysis versions), the recorder's side.

At a change (``set_analysis``) or a recomputation asked for (``recompute``, ``R``), between two
blocks, the recorder:

1. fixes the boundary shot B = the first shot of the next block (``_shot``);
2. publishes the blocks of the old analysis still pending, then commits, so the recording
   holds ``[0, B)`` at once and the worker need not wait for the next commit;
3. records analysis version K+1 (first shot B, first tag filled in by the writer when B is
   committed, ``by``) — a change only;
4. starts a new epoch: its own live summary (``--summary-json``) and every console start a
   fresh "since" state under the new analysis from the next block (AnalysisMsg);
5. hands the worker the job ``[0, B)`` (:class:`~.recompute.Recomputer`), and when it is
   done merges the result into its summary and publishes it (StateMsg), which each console
   merges with its own "since" state. Recording never pauses; a shot is in exactly one part.

A replaying recorder with recording off recomputes over its source's recording: the shots
before the tag it has reached (what it has delivered since the start, whatever seeks did to
the consoles' own states, which their tag ranges say); its versions live in memory only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..link.messages import AnalysisMsg, Reply, StateMsg
from ..recording import RecordingReader
from ..reducers.liveset import HIST_BINS, TREND_BLOCKS, WINDOW_SHOTS
from ..schemas import AnalysisVersion, ConfigError, RecordingError, ReplaySource
from .analysis import check_analysis, sections_json
from .broadcast import log
from .loop import AcquireLoop, recorded_points
from .recompute import Finished
from .recompute_worker import Job

__all__ = ["AnalysisChanges"]


@dataclass(frozen=True)
class _Target:
    """The recording a recomputation reads, and which of its shots: ``tag < hi``, B of them."""

    path: str
    hi: int
    boundary_shot: int
    live: bool  # the recording being written (wait for its commit of B), not a replay's source


class AnalysisChanges(AcquireLoop):
    """The acquire loop plus analysis changes and recomputations (see the module docstring)."""

    def _do_set_analysis(self, sections: dict[str, Any], by: str) -> Reply:
        target = self._target("set_analysis")
        if isinstance(target, Reply):
            return target
        assert self._info is not None
        try:
            config = check_analysis(self.config, sections, points=self._held_points(target), roi_names=self.rois.versions,
                                    detectors=self._info.detectors, darks=self._dark_versions())
        except ConfigError as exc:
            return Reply(False, str(exc))
        now = time.time()
        self._flush_publish()  # every block of the old analysis goes out before the AnalysisMsg
        entry = AnalysisVersion(version=self._version.version + 1, first_shot=target.boundary_shot, first_tag=-1,
                                time=now, by=by, config=sections_json(config))
        if self.sink is not None and self.sink.recording:
            got = self.sink.add_analysis(entry.config, first_shot=entry.first_shot, by=by, at=now)
            if isinstance(got, str):
                self.broadcast.notice(got, level="error")
                return Reply(False, f"set_analysis: the recording refused it: {got}")
            entry = entry.model_copy(update={"version": got})
        self.config, self._version = config, entry
        return self._new_epoch(target, f"analysis version {entry.version} set by {by or 'someone'}")

    def _do_recompute(self) -> Reply:
        progress = self.recomputer.progress()
        if progress is not None:
            return Reply(False, f"recompute: a recomputation is running (epoch {progress.epoch}: {progress.done} of "
                                f"{progress.total} shots); its result comes to every console")
        target = self._target("recompute")
        if isinstance(target, Reply):
            return target
        self._flush_publish()
        return self._new_epoch(target, "recomputation asked")

    # --- internals (acquire thread) -------------------------------------------------------

    def _dark_versions(self) -> dict[str, list[int]]:
        """Detector -> the dark versions the recording holds (those an analysis may name)."""
        return self.darks.held_versions()

    def _held_points(self, target: _Target) -> list[str]:
        if target.live:
            assert self._info is not None
            return recorded_points(self.config, self._info)
        return RecordingReader(target.path).points

    def _target(self, op: str) -> _Target | Reply:
        """What a recomputation reads now, or the one-line refusal when there is nothing."""
        if self._info is None:
            return Reply(False, f"{op}: the recorder is still opening its source; try again")
        sink = self.sink
        if sink is not None and sink.recording and sink.path is not None:
            return _Target(str(sink.path), self._last_tag + 1, self._shot, live=True)
        if sink is None and self._playback is not None and isinstance(self.config.source, ReplaySource):
            path, hi = self.config.source.path, (self.health.last_tag if self.health.last_tag is not None else -1) + 1
            try:
                shots = int(np.searchsorted(RecordingReader(path).tags(), hi))
            except (OSError, RecordingError) as exc:
                return Reply(False, f"{op}: expected the replayed recording to read, found {exc}")
            return _Target(path, hi, shots, live=False)
        if sink is not None and sink.state == "live":  # before the first block: nothing recorded yet
            return Reply(False, f"{op}: expected a recording to recompute, found none yet (no shot has come); try again")
        why = "recording off" if sink is None else f"the recording {sink.state}"
        return Reply(False, f"{op}: expected a recording to recompute (it reads the shots so far), found {why}")

    def _new_epoch(self, target: _Target, reason: str) -> Reply:
        """Steps 2, 4 and 5 of the module docstring; the reply to the request."""
        self._epoch += 1
        self._boundary = (self._epoch, None)
        if target.live and self.sink is not None:
            self.broadcast.notice(self.sink.commit(), level="error")  # [0, B) readable at once
            self._timers["commit"] = time.monotonic()
        self._new_summary(fresh=True)
        msg = AnalysisMsg(self._version, self.config, self._epoch, target.boundary_shot, None, reason)
        self.broadcast.emit(lambda listener: listener.on_analysis(msg))
        job = Job(target.path, target.hi, self.config, self._version.version, WINDOW_SHOTS, HIST_BINS, TREND_BLOCKS)
        sink = self.sink
        committed = (lambda: sink.committed) if target.live and sink is not None else None
        self.recomputer.start(epoch=self._epoch, boundary_shot=target.boundary_shot, job=job, committed=committed)
        if target.live:
            self.recomputer.follow(target.path, self.config)
        self.broadcast.notice(f"{reason}: from shot {target.boundary_shot} on; recomputing the {target.boundary_shot} "
                              "shots before it", level="info")
        self._emit_status()
        return Reply(True, data={"version": self._version.version, "epoch": self._epoch})

    def _take_recomputed(self) -> None:
        for done in self.recomputer.results():
            if done.epoch == self._epoch:
                self._publish_state(done)

    def _publish_state(self, done: Finished) -> None:
        if done.reduced is None:
            self.broadcast.notice(done.error or "recomputation failed", level="error")
            return
        r = done.reduced
        if self._summary is not None:
            reducer, since = self._summary
            self._summary = (reducer, reducer.merge(r.states.summary, since))
        # [first tag, tag of shot B): joins the consoles' own range from B on; before shot B
        # came, one past the last tag before it
        epoch, tag = self._boundary
        end = tag if epoch == done.epoch and tag is not None else done.hi
        ranges = ((int(r.first_tag), int(end)),) if r.shots and r.first_tag is not None and end is not None else ()
        msg = StateMsg(done.epoch, self._version.version, done.boundary_shot, r.shots, round(done.seconds, 3), ranges,
                       r.reducers.encode(r.states))
        self.broadcast.emit(lambda listener: listener.on_state(msg))
        self.broadcast.notice(f"recomputed {r.shots} shots in {done.seconds:.1f} s (analysis version "
                              f"{self._version.version}{f', {r.pixels_read} read from disk' if r.pixels_read else ''})",
                              level="info")
        log.info("recomputation of epoch %d: %d shots in %.2f s", done.epoch, r.shots, done.seconds)
