"""The console's own reduction of what its feed delivers: pure Python + numpy, no Textual.

:class:`LiveModel` lives on the feed thread: it applies messages (blocks into the same
reducers ``reduce`` uses, status, ROI broadcasts, images) and hands the UI immutable
:class:`Snapshot` values, so nothing mutable is shared between threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from ..link.messages import BlockMsg, DarkMsg, Hello, ImageMsg, Message, ResetMsg, RoisMsg, Status, StatusMsg
from ..link.protocols import Reducer
from ..reducers import (
    Analysis,
    Correlation,
    Histogram,
    RollingWindow,
    ShotTable,
    SummaryReducer,
    Trend,
    shot_table,
)
from ..reducers.hist import HistSeries
from ..schemas import Config, DarkFrame, RoiVersion, ShotBlock
from .darks import DarkCache
from .tuning import HIST_BINS, NAMED_I0, TREND_BLOCKS, WINDOW_SHOTS

__all__ = ["LiveModel", "Series", "Snapshot"]

F64 = npt.NDArray[np.float64]
S = TypeVar("S")
R = TypeVar("R")


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
        i0_mean: mean I0 over the accepted shots since reset (None before the first).
        playback: the recorder replays a recording (pause, seek and speed requests work).
        named: every value by the name the operator knows it by (I0, ROI names, channels,
            aliases, points, in that order) over the window, aligned with ``tags``: what the
            correlation view pairs.
        hists: the same names -> their histogram since reset (I0 and points over every shot
            with a value, ROIs over the accepted ones).
        missing_darks: ``<det> v<k>`` of every dark version the analysis names whose frame this
            console does not hold yet: until it does, no block is reduced (``waiting_shots``).
        waiting_shots: shots received but not reduced while a dark was missing.
        darks: detector -> the dark frame the analysis in force subtracts (the detector view
            shows it).
        masks: detector -> bool [H, W], true where a pixel never counts (``[[mask]]`` and
            noisy dark pixels; the detector view shows it).
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
    missing_darks: tuple[str, ...] = ()
    waiting_shots: int = 0
    darks: Mapping[str, DarkFrame] = field(default_factory=dict)
    masks: Mapping[str, npt.NDArray[np.bool_]] = field(default_factory=dict)


class _Stepping(Protocol):
    def update(self, block: ShotBlock, table: ShotTable) -> None: ...
    def reset(self) -> None: ...


class _Running(Generic[S, R]):
    """One reducer (any :class:`~shotwatch.link.protocols.Reducer`) and its state since reset."""

    def __init__(self, reducer: Reducer[S, R, ShotTable]) -> None:
        self.reducer = reducer
        self.state = reducer.init()

    def update(self, block: ShotBlock, table: ShotTable) -> None:
        self.state = self.reducer.update(self.state, block, table=table)

    def reset(self) -> None:
        self.state = self.reducer.init()

    def result(self) -> R:
        return self.reducer.result(self.state)


class LiveModel:
    """Reduces a feed's messages for display; ``snapshot()`` is the only thing the UI sees.

    The reducers are the ones ``reduce`` uses, so the numbers equal ``reduce --tags`` over
    :attr:`Snapshot.tag_ranges`. They are keyed by ROI version (``name/vK``): a changed
    rectangle is a new key and starts from nothing, while the other ROIs keep their averages.
    Only the reducers' public results and accessors are read, never their states.

    Args:
        hello: the recorder's hello (configuration, detectors, ROI versions so far).
        window: shots kept for sparklines and the correlation plot.
    """

    def __init__(self, hello: Hello, *, window: int = WINDOW_SHOTS) -> None:
        self.config = hello.config
        self.shapes = {d: info.shape for d, info in hello.source.detectors.items()}
        self._detectors = hello.source.detectors
        self._size = window
        self.darks = DarkCache()
        self.waiting_shots = 0
        self._build()
        self.rois = {v.name: v for v in hello.rois if v.end_shot is None}
        self.versions = {v.key: v for v in hello.rois}  # every rectangle: masks and darks
        self.playback = hello.playback
        self.status: Status | None = None
        self.images: dict[str, ImageMsg] = {}
        self.version = 0
        self.reset()

    def _build(self) -> None:
        """The reducers under the analysis in force, with the dark frames it names (held so far)."""
        a = self.analysis = Analysis.from_config(self.config, detectors=self._detectors,
                                                 darks=self.darks.frames(self.config))
        window = self._size
        self.summary, self.window = SummaryReducer(a), RollingWindow(a, size=window)
        self.corr, self.hist, self.trend = Correlation(a, size=window), Histogram(a, bins=HIST_BINS), Trend(a, size=TREND_BLOCKS)
        self._summary, self._window = _Running(self.summary), _Running(self.window)
        self._corr, self._hist, self._trend = _Running(self.corr), _Running(self.hist), _Running(self.trend)
        self._all: tuple[_Stepping, ...] = (self._summary, self._window, self._corr, self._hist, self._trend)

    @property
    def missing_darks(self) -> list[tuple[str, int]]:
        """Dark versions the analysis names whose frames this console lacks (ask ``get_dark``)."""
        return self.darks.needed(self.config)

    def add_dark(self, detector: str, version: int, frame: DarkFrame) -> None:
        """A dark version's frame (a DarkMsg, or the reply to ``get_dark``)."""
        missing = bool(self.missing_darks)
        self.darks.add(detector, version, frame)
        if missing and not self.missing_darks:  # nothing was reduced while it lacked: start now
            self._build()
            self.reset()
        self.version += 1

    def reset(self) -> None:
        """Start every average and the received-tag record afresh (``r``, a replay seek)."""
        for running in self._all:
            running.reset()
        self.ranges: list[list[int]] = []
        self._last_seq: int | None = None
        self.i0_sum, self.i0_count = 0.0, 0
        self.version += 1

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
            self.reset()
        elif isinstance(msg, DarkMsg):
            self.add_dark(msg.detector, msg.version, msg.frame)
            return
        else:
            return
        self.version += 1

    def _block(self, msg: BlockMsg) -> None:
        block = msg.block
        if self.missing_darks:  # values without their dark would be wrong: not reduced
            self.waiting_shots += len(block)
            return
        table = shot_table(block, self.analysis, self.versions)  # the ROI sums, once for every reducer
        for running in self._all:
            running.update(block, table)
        i0 = np.asarray(table.i0, np.float64)[np.asarray(table.accepted, bool)]
        i0 = i0[np.isfinite(i0)]
        self.i0_sum, self.i0_count = self.i0_sum + float(i0.sum()), self.i0_count + int(i0.size)
        self._record_tags(msg.seq, block)

    def _record_tags(self, seq: int, block: ShotBlock) -> None:
        first, last = int(block.tags[0]), int(block.tags[-1])
        # A range continues only across consecutive sequence numbers: a skipped block means
        # shots this console never reduced, so `reduce --tags` must not include them.
        if self.ranges and self._last_seq is not None and seq == self._last_seq + 1:
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
        return self.summary.result_keys(self._summary.state).get(active.key, active.key)

    def _series(self, key: str, n: int) -> Series:
        # By version key, not display name: an older rectangle's shots stay out of the
        # current one's plots.
        values = self.window.values(self._window.state, key)
        corr = self.corr.samples(self._corr.state, key)
        hist = self.hist.series(self._hist.state, key)
        trend = self._trend.state
        mean = self.trend.means(trend, key)
        return Series(
            values=np.full(n, np.nan) if values is None else values,
            corr_i0=corr["i0"] if corr else np.empty(0),
            corr_value=corr["value"] if corr else np.empty(0),
            corr_accepted=corr["accepted"] if corr else np.empty(0, bool),
            hist_edges=hist.edges if hist else np.empty(0),
            hist_counts=hist.counts if hist else np.empty(0, np.int64),
            trend_tags=trend.tags if mean is not None else np.empty(0, np.int64),
            trend_mean=mean if mean is not None else np.empty(0),
        )

    def snapshot(self) -> Snapshot:
        """An immutable picture of everything for the UI thread (reducer states never change)."""
        window = self.window.result(self._window.state)
        tags = window["tags"]
        rois = tuple(self.rois.values())
        return Snapshot(
            version=self.version, status=self.status, rois=rois, shapes=dict(self.shapes),
            summary=self._summary.result(),
            result_keys={v.name: k for v in rois if (k := self.result_key(v.name)) is not None},
            tags=tags, i0=np.asarray(window["i0"], np.float64), accepted=np.asarray(window["accepted"], bool),
            series={v.name: self._series(v.key, len(tags)) for v in rois},
            trend_quantity="ratio" if self.analysis.i0 is not None else "value",
            tag_ranges=tuple((a, b) for a, b in self.ranges), images=dict(self.images),
            config=self.config, i0_mean=self.i0_sum / self.i0_count if self.i0_count else None,
            playback=self.playback,
            missing_darks=tuple(f"{det} v{k}" for det, k in self.missing_darks), waiting_shots=self.waiting_shots,
            **self._named(rois),
        )

    def _named(self, rois: tuple[RoiVersion, ...]) -> dict[str, Any]:
        """``named`` and ``hists`` of the snapshot: each value under its operator's name."""
        keys = {NAMED_I0: "i0"} if self.analysis.i0 is not None else {}
        keys.update({v.name: v.key for v in rois})
        derived = [*self.analysis.channel_names, *self.analysis.aliases]
        window = self._window.state
        points = sorted(set(self.window.names(window)) - set(derived))
        keys.update({name: name for name in [*derived, *points]})
        named = {name: col for name, key in keys.items() if (col := self.window.column(window, key)) is not None}
        hists = {name: s for name, key in keys.items() if (s := self.hist.series(self._hist.state, key)) is not None}
        return {"named": named, "hists": hists, "darks": self.analysis.darks, "masks": self.analysis.masks}
