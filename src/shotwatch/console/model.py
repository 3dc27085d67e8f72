"""The console's own reduction of what its feed delivers: pure Python + numpy, no Textual.

:class:`LiveModel` lives on the feed thread: it applies messages (blocks into the same
reducers ``reduce`` uses, status, ROI broadcasts, images) and hands the UI immutable
:class:`Snapshot` values, so nothing mutable is shared between threads.

Analysis changes (INTERFACE.md, analysis versions): an :class:`AnalysisMsg` starts a fresh
"since" state under the new analysis (every block after it was reduced by the recorder under
it); the :class:`StateMsg` of the same epoch, the recording's shots ``[0, B)`` under it, is
merged in (``prefix ⊕ since``, the reducers' merge) and its tag ranges put before this
console's own. A state of another epoch is stale and ignored; one that fails to decode is
counted and dropped. A status whose epoch differs from the model's says an AnalysisMsg was
missed (PUB drops whole messages for a slow console): :attr:`LiveModel.stale` is then true
and the feed thread asks for hello again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..link.messages import (
    AnalysisMsg,
    BlockMsg,
    DarkMsg,
    Hello,
    ImageMsg,
    Message,
    Progress,
    ResetMsg,
    RoisMsg,
    StateMsg,
    Status,
    StatusMsg,
)
from ..reducers import Analysis, LiveSet, shot_table
from ..reducers.hist import HistSeries
from ..schemas import Config, DarkFrame, RoiVersion
from .darks import DarkCache
from .tuning import HIST_BINS, NAMED_I0, TREND_BLOCKS, WINDOW_SHOTS

__all__ = ["LiveModel", "Series", "Snapshot"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Series:
    """One ROI's (or I0's) recent data for the widgets, already resolved to its active key.

    Attributes:
        values: per shot over the window (NaN = missing), aligned with Snapshot.tags.
        corr_i0, corr_value, corr_accepted: recent shots with finite I0 and value.
        hist_edges, hist_counts: histogram of accepted values since reset (edges fixed).
        trend_tags, trend_mean: per-block mean of value/I0 (or value without [i0]).
    """

    values: F64
    corr_i0: F64 = field(default_factory=lambda: np.empty(0))
    corr_value: F64 = field(default_factory=lambda: np.empty(0))
    corr_accepted: npt.NDArray[np.bool_] = field(default_factory=lambda: np.empty(0, bool))
    hist_edges: F64 = field(default_factory=lambda: np.empty(0))
    hist_counts: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    trend_tags: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    trend_mean: F64 = field(default_factory=lambda: np.empty(0))


@dataclass(frozen=True)
class Snapshot:
    """Everything the widgets draw, as of one moment. Never mutated after creation.

    Attributes:
        version: increases with every change, so the UI can skip unchanged snapshots.
        status: newest recorder heartbeat.
        rois: active ROI versions, in table order.
        shapes: array detector -> (H, W).
        summary: the SummaryReducer result (INTERFACE.md ``reduce --json`` layout) since reset.
        result_keys: ROI name -> the key its active version has in ``summary``.
        tags, i0, accepted: the last shots (RollingWindow), oldest first.
        series: ROI name -> its :class:`Series` (only the active version's shots).
        trend_quantity: "ratio" (value / I0) or "value" (without [i0]).
        tag_ranges: received tag ranges since reset, ``(A, B)`` with B exclusive.
        images: detector -> newest mean image message (running or grab).
        config: the analysis configuration in force.
        i0_mean: mean I0 over the accepted shots this console reduced itself since its reset or
            the last analysis change (None before the first).
        playback: the recorder replays a recording (pause, seek and speed requests work).
        named: every value by the name the operator knows it by (I0, ROI names, channels,
            aliases, points, in that order) over the window, aligned with ``tags``: what the
            correlation view pairs.
        hists: the same names -> their histogram since reset (I0 and points over every shot
            with a value, ROIs over the accepted ones).
        darks: detector -> the dark frame the analysis in force subtracts (the detector view
            shows it).
        masks: detector -> bool [H, W], true where a pixel never counts (``[[mask]]`` and
            noisy dark pixels; the detector view shows it).
        missing_darks: ``<det> v<k>`` of every dark version the analysis names whose frame this
            console does not hold yet: until it does, no block is reduced (``waiting_shots``).
        waiting_shots: shots received but not reduced while a dark was missing.
        analysis_version: the analysis version the numbers are under.
        epoch: the recorder's epoch the model follows (Status.epoch).
        recompute: the recomputation under way for this epoch (its progress), None otherwise.
        awaiting_state: an analysis change (or ``R``) came and its recomputed state has not yet:
            the numbers cover only the blocks since the change.
        recomputed: (shots, seconds) of the last recomputed state merged in: "recomputed N
            shots in S s".
        dropped_states: recomputed states that failed to decode (counted, never fatal).
    """

    version: int = 0
    status: Status | None = None
    rois: tuple[RoiVersion, ...] = ()
    shapes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    result_keys: Mapping[str, str] = field(default_factory=dict)
    tags: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    i0: F64 = field(default_factory=lambda: np.empty(0))
    accepted: npt.NDArray[np.bool_] = field(default_factory=lambda: np.empty(0, bool))
    series: Mapping[str, Series] = field(default_factory=dict)
    trend_quantity: str = "ratio"
    tag_ranges: tuple[tuple[int, int], ...] = ()
    images: Mapping[str, ImageMsg] = field(default_factory=dict)
    config: Config | None = None
    i0_mean: float | None = None
    playback: bool = False
    named: Mapping[str, F64] = field(default_factory=dict)
    hists: Mapping[str, HistSeries] = field(default_factory=dict)
    darks: Mapping[str, DarkFrame] = field(default_factory=dict)
    masks: Mapping[str, npt.NDArray[np.bool_]] = field(default_factory=dict)
    missing_darks: tuple[str, ...] = ()
    waiting_shots: int = 0
    analysis_version: int = 1
    epoch: int = 0
    recompute: Progress | None = None
    awaiting_state: bool = False
    recomputed: tuple[int, float] | None = None
    dropped_states: int = 0


class LiveModel:
    """Reduces a feed's messages for display; ``snapshot()`` is the only thing the UI sees.

    The reducers are the ones ``reduce`` uses (a :class:`~shotwatch.reducers.LiveSet`, the
    set a recomputation sends states of), so the numbers equal ``reduce --tags`` over
    :attr:`Snapshot.tag_ranges` under :attr:`Snapshot.analysis_version`. They are keyed by ROI
    version (``name/vK``): a changed rectangle is a new key and starts from nothing, while the
    other ROIs keep their averages. Only the reducers' public results and accessors are read.

    Args:
        hello: the recorder's hello (configuration, detectors, ROI versions so far, epoch).
        window: shots kept for sparklines and the correlation plot.
    """

    def __init__(self, hello: Hello, *, window: int = WINDOW_SHOTS) -> None:
        self.shapes = {d: info.shape for d, info in hello.source.detectors.items()}
        self.detectors = dict(hello.source.detectors)
        self._window_size = window
        self.darks = DarkCache()
        self.waiting_shots = 0
        self.rois = {v.name: v for v in hello.rois if v.end_shot is None}
        self.versions = {v.key: v for v in hello.rois}  # every rectangle: masks and darks
        self.playback = hello.playback
        self.status: Status | None = None
        self.images: dict[str, ImageMsg] = {}
        self.version = 0
        self.epoch, self.analysis_version = hello.epoch, hello.analysis_version
        self.awaiting_state = False
        # a state of the hello's epoch may still come (the recomputation was running when
        # this console said hello): it is taken, its tag range then ends before this console's
        self._state_welcome = hello.epoch > 0
        self.recomputed: tuple[int, float] | None = None
        self.dropped_states = 0
        self._use(hello.config)

    def _use(self, config: Config) -> None:
        """Reduce under ``config``'s analysis from now on, from nothing."""
        self._build(config)
        self.reset()

    def _build(self, config: Config) -> None:
        """The reducers under ``config``'s analysis (its states untouched)."""
        self.config = config
        self.analysis = a = self._analysis(config)
        self.reducers = LiveSet(a, window=self._window_size, hist_bins=HIST_BINS, trend=TREND_BLOCKS)
        r = self.reducers
        self.summary, self.window, self.corr, self.hist, self.trend = r.summary, r.window, r.corr, r.hist, r.trend

    def _analysis(self, config: Config) -> Analysis:
        """The analysis of ``config`` over the recorder's detectors (the version in force), with
        the dark frames it names that this console holds (see :attr:`missing_darks`)."""
        return Analysis.from_config(config, detectors=self.detectors, darks=self.darks.frames(config),
                                    version=self.analysis_version)

    @property
    def missing_darks(self) -> list[tuple[str, int]]:
        """Dark versions the analysis names whose frames this console lacks (``get_dark``):
        until it has them it reduces no block (the values would keep the pedestal)."""
        return self.darks.needed(self.config)

    def add_dark(self, detector: str, version: int, frame: DarkFrame) -> None:
        """A dark version's frame (a DarkMsg, or the reply to ``get_dark``)."""
        missing = bool(self.missing_darks)
        self.darks.add(detector, version, frame)
        if missing and not self.missing_darks:  # blocks waited for it: reduced with it from now on
            self._build(self.config)  # states kept: a recomputed prefix merged meanwhile is right
        self.version += 1

    def reset(self) -> None:
        """Start every average and the received-tag record afresh (``r``, a replay seek)."""
        self.states = self.reducers.init()
        self.ranges: list[list[int]] = []
        self._last_seq: int | None = None
        self._seq_before: int | None = None  # set by an analysis change (see _analysis_changed)
        self._from_boundary = False  # this console's first block since the change holds shot B
        self._prefix_last = False  # the last range is the recomputed one, no block of ours since
        self.i0_sum, self.i0_count = 0.0, 0
        self.version += 1

    @property
    def stale(self) -> bool:
        """The recorder's epoch is not the model's: an AnalysisMsg was missed (ask for hello)."""
        return self.status is not None and self.status.epoch != self.epoch

    def apply(self, msg: Message) -> None:
        """Take one message into account (NoticeMsg is the caller's business)."""
        if isinstance(msg, BlockMsg):
            if not len(msg.block):
                return
            self._block(msg)
        elif isinstance(msg, StatusMsg):
            self.status = msg.status
        elif isinstance(msg, RoisMsg):
            self.rois = {v.name: v for v in msg.versions if v.end_shot is None}
            self.versions.update({v.key: v for v in msg.versions})
        elif isinstance(msg, ImageMsg):
            self.images[msg.detector] = msg
        elif isinstance(msg, ResetMsg):
            self.awaiting_state = self._state_welcome = False  # the recorder dropped its recomputation
            self.reset()
        elif isinstance(msg, AnalysisMsg):
            self._analysis_changed(msg)
        elif isinstance(msg, StateMsg):
            self._recomputed(msg)
        elif isinstance(msg, DarkMsg):
            self.add_dark(msg.detector, msg.version, msg.frame)
            return
        else:
            return
        self.version += 1

    def _analysis_changed(self, msg: AnalysisMsg) -> None:
        if msg.epoch <= self.epoch:
            return  # one this model's hello already had (or an old one)
        seq_before = self._last_seq
        self.epoch, self.analysis_version = msg.epoch, msg.version.version
        self._use(msg.config)
        self.awaiting_state, self.recomputed, self._state_welcome = True, None, True
        # the recorder published every shot before B in blocks up to this sequence number:
        # if the next block comes with the next number, this console's own range starts at B
        self._seq_before = seq_before

    def _recomputed(self, msg: StateMsg) -> None:
        if msg.epoch != self.epoch or not self._state_welcome:
            return  # stale: a newer change came, or this epoch's state was merged already
        try:
            prefix = self.reducers.decode(msg.states)
        except ValueError:
            self.dropped_states += 1
            return
        self.states = self.reducers.merge(prefix, self.states)
        own = self.ranges
        self.ranges = [[a, b] for a, b in msg.tag_ranges]
        # the prefix is the shots before B; where this console's first block after the change
        # was the one holding B (or B's tag ends the prefix), no recorded shot lies between
        if self.ranges and own and (self._from_boundary or self.ranges[-1][1] == own[0][0]):
            self.ranges[-1][1] = own[0][1]
            own = own[1:]
        self._prefix_last = bool(self.ranges) and not own  # this console's first block is still to come
        self.ranges += own
        self.awaiting_state, self._state_welcome, self.recomputed = False, False, (msg.shots, msg.seconds)

    def _block(self, msg: BlockMsg) -> None:
        block = msg.block
        if self.missing_darks:  # values without their dark would be wrong: not reduced
            self.waiting_shots += len(block)
            return
        table = shot_table(block, self.analysis, self.versions)  # the ROI sums, once for every reducer
        self.states = self.reducers.update(self.states, block, table=table)
        i0 = np.asarray(table.i0, np.float64)[np.asarray(table.accepted, bool)]
        i0 = i0[np.isfinite(i0)]
        self.i0_sum, self.i0_count = self.i0_sum + float(i0.sum()), self.i0_count + int(i0.size)
        self._record_tags(msg.seq, block.tags)

    def _record_tags(self, seq: int, tags: npt.NDArray[np.int64]) -> None:
        at_boundary = self._seq_before is not None and seq == self._seq_before + 1
        if self._last_seq is None:  # the first block since the reset or the change
            self._from_boundary = at_boundary
        first, last = int(tags[0]), int(tags[-1])
        # A range continues only across consecutive sequence numbers: a skipped block means
        # shots this console never reduced, so `reduce --tags` must not include them. The
        # recomputed range (shots before B) is continued by the block that holds B.
        prefix_last, self._prefix_last = self._prefix_last, False
        if self.ranges and ((self._last_seq is not None and seq == self._last_seq + 1) or (prefix_last and at_boundary)):
            self.ranges[-1][1] = last + 1
        else:
            self.ranges.append([first, last + 1])
        self._last_seq = seq

    def result_key(self, name: str) -> str | None:
        """The key under which the active version of ``name`` appears in the summary
        (INTERFACE.md: its bare name while it is the only version with valid shots)."""
        active = self.rois.get(name)
        if active is None:
            return None
        return self.summary.result_keys(self.states.summary).get(active.key, active.key)

    def _series(self, key: str, n: int) -> Series:
        # By version key, not display name: an older rectangle's shots stay out of the
        # current one's plots.
        s = self.states
        values = self.window.values(s.window, key)
        corr = self.corr.samples(s.corr, key)
        hist = self.hist.series(s.hist, key)
        mean = self.trend.means(s.trend, key)
        return Series(
            values=np.full(n, np.nan) if values is None else values,
            corr_i0=corr["i0"] if corr else np.empty(0),
            corr_value=corr["value"] if corr else np.empty(0),
            corr_accepted=corr["accepted"] if corr else np.empty(0, bool),
            hist_edges=hist.edges if hist else np.empty(0),
            hist_counts=hist.counts if hist else np.empty(0, np.int64),
            trend_tags=s.trend.tags if mean is not None else np.empty(0, np.int64),
            trend_mean=mean if mean is not None else np.empty(0),
        )

    def snapshot(self) -> Snapshot:
        """An immutable picture of everything for the UI thread (reducer states never change)."""
        window = self.window.result(self.states.window)
        tags = window["tags"]
        rois = tuple(self.rois.values())
        progress = self.status.recompute if self.status is not None else None
        return Snapshot(
            version=self.version, status=self.status, rois=rois, shapes=dict(self.shapes),
            summary=self.summary.result(self.states.summary),
            result_keys={v.name: k for v in rois if (k := self.result_key(v.name)) is not None},
            tags=tags, i0=np.asarray(window["i0"], np.float64), accepted=np.asarray(window["accepted"], bool),
            series={v.name: self._series(v.key, len(tags)) for v in rois},
            trend_quantity="ratio" if self.analysis.i0 is not None else "value",
            tag_ranges=tuple((a, b) for a, b in self.ranges), images=dict(self.images),
            config=self.config, i0_mean=self.i0_sum / self.i0_count if self.i0_count else None,
            playback=self.playback, analysis_version=self.analysis_version, epoch=self.epoch,
            recompute=progress if progress is not None and progress.epoch == self.epoch else None,
            awaiting_state=self.awaiting_state, recomputed=self.recomputed, dropped_states=self.dropped_states,
            missing_darks=tuple(f"{det} v{k}" for det, k in self.missing_darks), waiting_shots=self.waiting_shots,
            **self._named(rois),
        )

    def _named(self, rois: tuple[RoiVersion, ...]) -> dict[str, Any]:
        """``named``, ``hists``, ``darks`` and ``masks`` of the snapshot: each value under the
        name the operator knows it by."""
        keys = {NAMED_I0: "i0"} if self.analysis.i0 is not None else {}
        keys.update({v.name: v.key for v in rois})
        derived = [*self.analysis.channel_names, *self.analysis.aliases]
        window, hist = self.states.window, self.states.hist
        points = sorted(set(self.window.names(window)) - set(derived))
        keys.update({name: name for name in [*derived, *points]})
        named = {name: col for name, key in keys.items() if (col := self.window.column(window, key)) is not None}
        hists = {name: s for name, key in keys.items() if (s := self.hist.series(hist, key)) is not None}
        return {"named": named, "hists": hists, "darks": self.analysis.darks, "masks": self.analysis.masks}
