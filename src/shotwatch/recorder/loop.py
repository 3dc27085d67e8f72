"""The acquire loop: source → cut ROIs → recording, images, health → listeners.

One thread runs :meth:`AcquireLoop.run`; :class:`~shotwatch.recorder.acquire.Recorder` adds
the requests other threads make of it. Over a replay source the same loop runs with the
recording off (``shotwatch replay``) or on (``record`` with ``[source] kind = "replay"``):
the source's recorded ROI table is then the loop's, and its cutouts pass as they are.
"""

from __future__ import annotations

import time

from ..link.messages import BlockMsg, ImageMsg, RoisMsg, Status, StatusMsg
from ..reducers import Analysis, SummaryReducer, roi_versions
from ..reducers.summary import SummaryState
from ..schemas import (
    AnalysisVersion,
    Config,
    DarkFrame,
    DarkVersion,
    RoiTable,
    RoiVersion,
    ShotBlock,
    SourceError,
)
from ..schemas.source_info import SourceInfo
from ..sources import Source, open_source
from ..sources.base import Playback
from .alarms import AlarmChange
from .analysis import sections_json
from .broadcast import Broadcast, log
from .cut import cut_block, decimate_frames
from .darks import (
    DarkBook,
    DarkRefused,
    DarkStart,
    DarkTake,
    dark_refs,
    renumbered,
    start_darks,
    with_dark_refs,
)
from .health import Health
from .images import Grab, ImageWindow
from .recompute import Recomputer
from .requests import RequestQueue
from .sink import RecordingSink
from .tuning import (
    COMMIT_SECONDS,
    IMAGE_EVERY,
    MAX_PUBLISH_SHOTS,
    PUBLISH_EVERY,
    READ_TIMEOUT,
    ROTATE_EVERY,
    STATUS_EVERY,
)
from .watch import Watch

__all__ = ["AcquireLoop", "recorded_points"]


def recorded_points(config: Config, info: SourceInfo) -> list[str]:
    """``source.points`` (default: all the source offers) plus every analysis point."""
    return config.recorded_points(info.points)


class AcquireLoop:
    """Owns the source and the recording; what it emits goes to :attr:`broadcast`'s listeners.

    Args:
        config: the configuration in force.
        out: recording path template (default ``record.out``).
        append: continue an existing recording (``record --append``).
        commit_seconds: commit at least this often while shots come.
        record: False: live only (``shotwatch replay``, tests), no recording.
        summary: keep the live ``reduce --json`` reduction (``record --summary-json``); off,
            the acquire thread does not reduce at all.
        source: the source to read (default: the one ``config.source`` names).
        origin: the configuration file, for error messages (``<demo>`` for the built-in one).
        alarms: ring the ``[alarm]`` alarms (off for ``shotwatch dark``: a beam off is the point).
    """

    def __init__(self, config: Config, *, out: str | None = None, append: bool = False,
                 commit_seconds: float = COMMIT_SECONDS, record: bool = True, summary: bool = False,
                 source: Source | None = None, origin: str = "<demo>", alarms: bool = True) -> None:
        self.config = config
        self.origin = origin
        self.rois = RoiTable()
        self.health = Health()
        self.sink = RecordingSink(config, template=out or config.record.out, append=append,
                                  commit_seconds=commit_seconds) if record else None
        self.broadcast = Broadcast()
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
        self.darks = DarkBook()
        """Dark versions of the current recording (or of this recorder, without one)."""
        self._new_darks: dict[str, DarkFrame] = {}  # to write into the next recording opened
        self._darks_snapshot: tuple[DarkVersion, ...] = ()  # the versions the analysis in force names (Hello)
        self.analysis: Analysis | None = None
        """The analysis in force (its darks loaded), once the source is open."""
        self._watch = Watch(config.alarm, ring=alarms)
        # the analysis in force (INTERFACE.md, analysis versions): its version, the epoch
        # (one more with every AnalysisMsg), the tag of the epoch's boundary shot once it came
        self._version = AnalysisVersion(version=1, first_shot=0, first_tag=-1, config=sections_json(config))
        self._epoch = 0
        self._boundary: tuple[int, int | None] = (0, None)
        self.recomputer = Recomputer()

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
        self._start_darks(info)
        if self._playback is not None:
            self.rois = RoiTable.from_versions(self._playback.rois())
        else:
            self.rois.apply({r.name: r for r in self.config.roi}, shot=0, tag=-1)
            source.set_rois(rois={k: v.roi for k, v in self.rois.active().items()})
        self._rois_snapshot = tuple(self.rois.all())
        self._new_summary()
        self._watch = Watch(self.config.alarm, ring=self._watch.ring)  # stale from now on, not from __init__

    def _start_darks(self, info: SourceInfo) -> None:
        """``calibration.dark`` at start: its frames, numbered as the recording holds them."""
        self._use_darks(start_darks(self.config, info, appending=self.sink.continuing() if self.sink else None,
                                    recording=self.sink is not None, origin=self.origin))

    def _use_darks(self, start: DarkStart) -> None:
        """The darks of a recording starting: the book, and the analysis in force naming them."""
        self.darks, self._new_darks = start.book, start.new
        if self.config.calibration.dark:
            self.config = with_dark_refs(self.config, start.refs)
            self._version = self._version.model_copy(update={"config": sections_json(self.config)})

    def _new_summary(self, *, fresh: bool = False) -> None:
        """The analysis in force under the detectors known now (its dark frames loaded), and
        the live summary under it (its states carry no calibration, so they survive a new
        detector; ``fresh``: a new analysis)."""
        if self._info is None:
            return
        self.analysis = Analysis.from_config(self.config, detectors=self._info.detectors,
                                             darks=self.darks.named(dark_refs(self.config)),
                                             roi_names=self.rois.versions, version=self._version.version,
                                             origin=self.origin)
        self._darks_snapshot = tuple(self.darks.versions(dark_refs(self.config)))
        self._watch.alarms.set_alarm(self.config.alarm)
        if self._want_summary:
            reducer = SummaryReducer(self.analysis)
            self._summary = (reducer, self._summary[1] if self._summary and not fresh else reducer.init())

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
        if self.sink.path is not None:  # a later run's new recording holds the darks in force as versions 1
            self._use_darks(renumbered(self.darks, dark_refs(self.config), recording=True))
            self._new_summary()
        failed = self.sink.open(info=self._info, rois=self.rois, points=recorded_points(self.config, self._info),
                                analysis=self.config, darks=self._new_darks)
        self._new_darks = {}
        path = self.sink.path
        if failed is not None or path is None:
            self.broadcast.notice(failed, level="error")
            return
        if self.sink.renamed_from is not None:
            self.broadcast.notice(f"{self.sink.renamed_from} exists already: recording run {self._info.run} to {path}",
                         level="info")
        versions = self.sink.analysis_versions()  # --append continues the numbering
        if versions and versions[-1] != self._version:
            self._version = versions[-1]
            self._new_summary()
        self.recomputer.follow(str(path), self.config)
        self.broadcast.emit(lambda listener: listener.on_recording(path))
        log.info("recording to %s", path)
        self._announce_rois()

    def close(self) -> None:
        self.recomputer.close()
        if self.sink is not None:
            self.broadcast.notice(self.sink.close(), level="error")
        if self._source is not None:
            self._source.close()
        self._emit_status()

    def _announce_rois(self) -> None:
        self._rois_snapshot = tuple(self.rois.all())
        msg = RoisMsg(self._rois_snapshot)
        self.broadcast.emit(lambda listener: listener.on_rois(msg))

    def _follow_playback_rois(self) -> None:
        """A replay's ROI table is the recording's as of the shots delivered: adopt its changes."""
        assert self._playback is not None
        table = RoiTable.from_versions(self._playback.rois())
        if tuple(table.all()) == self._rois_snapshot:
            return
        self.rois = table
        if self.sink is not None:
            self.broadcast.notice(self.sink.set_rois(self.rois), level="error")
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
                if ended and block is None:
                    for take, outcome in self._watch.ended():
                        self._dark_taken(take, outcome)
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
        if self._boundary[1] is None:  # the first shot under this epoch: its tag ends the recomputed ranges
            self._boundary = (self._boundary[0], int(block.tags[0]))
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
        self._judge(block)
        if self._summary is not None:
            reducer, state = self._summary
            self._summary = (reducer, reducer.update(state, block, versions=roi_versions(self.rois.all())))
        if self.sink is not None:
            every = self.config.record.frames_every
            kept, self._next_frame = decimate_frames(block, first_shot=self._shot, every=every,
                                                     next_shot=self._next_frame)
            self.broadcast.notice(self.sink.write(kept), level="error")
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
            self.broadcast.notice(self.sink.set_detectors(self._info), level="error")

    def _drop_old_tags(self, block: ShotBlock) -> ShotBlock:
        """Tags must grow within a recording: shots at or before the last tag are dropped."""
        if self.health.run is not None and block.run != self.health.run:
            self._last_tag = -1
        fresh = block.tags > self._last_tag
        if not fresh.all():
            dropped = int((~fresh).sum())
            self._old_tags += dropped
            self.broadcast.notice(f"dropped {dropped} shot(s) whose tag was not after the last recorded tag {self._last_tag}")
            block = block.select(fresh)
        if len(block):
            self._last_tag = int(block.tags[-1])
        return block

    def _new_run(self, block: ShotBlock) -> None:
        """A new run of the source: its recording is closed (its last shots committed) before
        the next one opens, at this block (:meth:`_start_recording`)."""
        assert self._source is not None
        self.broadcast.notice(f"run {self.health.run} ended; run {block.run} started", level="info")
        self._info = self._source.describe()
        self.health.new_run()
        self._shot = self._next_frame = 0
        self.recomputer.cancel()  # its recording is closed: its result would fit no console
        self.recomputer.follow(None, self.config)
        self._version = AnalysisVersion(version=1, first_shot=0, first_tag=-1, config=sections_json(self.config))
        self._new_summary(fresh=True)
        if self.sink is not None:
            self.broadcast.notice(self.sink.new_run(), level="error")

    def _tick(self) -> None:
        self._take_recomputed()
        now = time.monotonic()
        if now - self._timers["publish"] >= PUBLISH_EVERY:
            self._flush_publish()
            self._timers["publish"] = now
        if now - self._timers["rotate"] >= ROTATE_EVERY:
            self._images.rotate()
            self._timers["rotate"] = now
        if self.sink is not None and now - self._timers["commit"] >= self.sink.commit_seconds:
            # The writer commits on write when due; this covers a pause in the beam.
            self.broadcast.notice(self.sink.commit(), level="error")
            self._timers["commit"] = now
        if now - self._timers["status"] >= STATUS_EVERY:
            self._drain_source_notices()
            state = self._source.status().state if self._source is not None else "waiting"
            self._alarm_notices(self._watch.tick(stale_ok=state in ("paused", "ended", "stopped")))
            self._emit_status()
            self._timers["status"] = now
        if now - self._timers["image"] >= IMAGE_EVERY:
            for msg in self._images.messages():
                self._emit_image(msg)
            self._timers["image"] = now

    # --- alarms and darks ------------------------------------------------------------

    def _judge(self, block: ShotBlock) -> None:
        changes, done = self._watch.block(block, self.analysis, self.config.alarm, roi_versions(self.rois.all()))
        self._alarm_notices(changes)
        for take, outcome in done:
            self._dark_taken(take, outcome)

    def _dark_taken(self, take: DarkTake, outcome: DarkFrame | str) -> None:
        """A dark finished (a frame) or was abandoned (a one-line reason)."""
        if isinstance(outcome, str):
            take.future.set_exception(DarkRefused(outcome))
        else:
            take.future.set_result(outcome)

    def _alarm_notices(self, changes: list[AlarmChange]) -> None:
        for change in changes:
            self.broadcast.notice(change.text, level="error" if change.ringing else "info")

    def _flush_publish(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._seq += 1
        if not self.broadcast.wants_blocks:
            return  # headless: joining the blocks would only copy memory
        msg = BlockMsg(self._seq, ShotBlock.concat(pending))
        self.broadcast.emit(lambda listener: listener.on_block(msg))

    def _take_recomputed(self) -> None:
        """Recomputations the worker finished (:class:`~.changes.AnalysisChanges` merges them)."""

    def _drain_source_notices(self) -> None:
        if self._source is not None:
            for text in self._source.notices():
                self.broadcast.notice(text)

    # --- output --------------------------------------------------------------------------

    def status(self) -> Status:
        src = self._source.status() if self._source else None
        counters = dict(src.counters) if src else {}
        counters.update(self.broadcast.counters())
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
            alarms=self._watch.ringing,
            analysis_version=self._version.version, epoch=self._epoch, recompute=self.recomputer.progress(),
        )

    def _emit_status(self) -> None:
        msg = StatusMsg(self.status())
        self.broadcast.emit(lambda listener: listener.on_status(msg))

    def _emit_image(self, msg: ImageMsg) -> None:
        self.broadcast.emit(lambda listener: listener.on_image(msg))
