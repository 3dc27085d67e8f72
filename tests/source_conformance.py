"""Conformance tests for the Source protocol, shared by every implementation.

Like zarr's ``StoreTests``: an implementation's test module subclasses
:class:`SourceConformance` and provides a ``source_factory`` fixture returning a callable
that builds a fresh, unopened source (fixtures such as an emulator or ``tmp_path`` may be
requested by it)::

    class TestSimConformance(SourceConformance):
        @pytest.fixture
        def source_factory(self):
            return lambda: Simulator(SimSource(rate=0), frames_every=10)

Class attributes tune timing for slow emulators. The class name does not start with
``Test``, so pytest collects only the subclasses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from shotwatch.schemas import Roi, ShotBlock, SourceInfo, roi_key
from shotwatch.sources import Source, SourceStatus

STATES = {"running", "paused", "stopped", "no run", "waiting", "disconnected", "ended"}


class SourceConformance:
    """Checks any :class:`~shotwatch.sources.Source` against the protocol's promises."""

    #: seconds a read may overrun its timeout (scheduling, one block of work)
    slack: float = 1.0
    #: how long to wait in total for the first blocks to arrive
    first_blocks_within: float = 10.0
    #: non-empty blocks to collect where a test needs several
    blocks_wanted: int = 3
    #: the source may legitimately end (a replay) before ``blocks_wanted`` blocks
    may_end: bool = False
    #: the source delivers cutouts of its own whatever set_rois says (a replay)
    own_cutouts: bool = False

    @pytest.fixture
    def source_factory(self) -> Callable[[], Source]:
        raise NotImplementedError("subclasses provide a source_factory fixture")

    @pytest.fixture
    def source(self, source_factory: Callable[[], Source]) -> Iterator[Source]:
        src = source_factory()
        src.open()
        try:
            yield src
        finally:
            src.close()

    # --- helpers ------------------------------------------------------------------------

    def roi_for(self, info: SourceInfo) -> Roi | None:
        """A small ROI inside the first array detector, or None if there is none."""
        if not info.detectors:
            return None
        det, d = next(iter(info.detectors.items()))
        h, w = d.shape
        return Roi(name="conf", detector=det, x=(0, min(8, w)), y=(0, min(8, h)))

    def timed_read(self, source: Source, timeout: float) -> ShotBlock | None:
        t = time.monotonic()
        block = source.read(timeout=timeout)
        took = time.monotonic() - t
        assert took <= timeout + self.slack, f"read(timeout={timeout}) took {took:.2f} s"
        assert block is None or isinstance(block, ShotBlock), f"read returned {type(block)}"
        return block

    def collect(self, source: Source, n: int | None = None) -> list[ShotBlock]:
        """Up to ``n`` non-empty blocks within ``first_blocks_within`` seconds."""
        n = n or self.blocks_wanted
        out: list[ShotBlock] = []
        deadline = time.monotonic() + self.first_blocks_within
        while len(out) < n and time.monotonic() < deadline:
            block = self.timed_read(source, 0.5)
            if block is not None and len(block):
                out.append(block)
            elif block is None and source.status().state in ("ended", "stopped"):
                break
        assert out, "no block arrived"
        if not self.may_end:
            assert len(out) == n, f"expected {n} blocks within {self.first_blocks_within} s, found {len(out)}"
        return out

    # --- the protocol -------------------------------------------------------------------

    def test_is_a_source(self, source: Source) -> None:
        assert isinstance(source, Source)

    def test_describe(self, source: Source) -> None:
        info = source.describe()
        assert isinstance(info, SourceInfo)
        assert info.kind
        assert all(isinstance(p, str) and p for p in info.points)
        assert len(set(info.points)) == len(info.points)
        for det, d in info.detectors.items():
            assert det and len(d.shape) == 2 and min(d.shape) > 0
            np.dtype(d.dtype)  # a real numpy dtype
            assert d.ev_per_adu > 0

    def test_blocks_validate_and_match_describe(self, source: Source) -> None:
        info = source.describe()
        for block in self.collect(source):
            block.validate()
            for name, values in block.points.items():
                assert name in info.points, f"point {name!r} not in describe().points"
                assert values.dtype == np.float64
            for det, frames in block.frames.items():
                assert det in info.detectors, f"frames of unknown detector {det!r}"
                assert frames.pixels.shape[1:] == info.detectors[det].shape
                assert frames.pixels.dtype == np.dtype(info.detectors[det].dtype)
                assert np.all(np.diff(frames.shot) > 0)
            for key, cut in block.cutouts.items():
                assert cut.detector in info.detectors, f"cutout {key!r} on unknown detector"
                assert not np.any(cut.pixels[~cut.valid]), f"cutout {key!r}: invalid shots not zero"

    def test_tags_increase_across_blocks(self, source: Source) -> None:
        blocks = self.collect(source)
        tags = np.concatenate([b.tags for b in blocks])
        assert tags.dtype == np.int64
        assert np.all(np.diff(tags) > 0), "tags must strictly increase across blocks"

    def test_time_is_float_unix_seconds_or_nan(self, source: Source) -> None:
        for block in self.collect(source, 1):
            finite = block.time[np.isfinite(block.time)]
            assert np.all(finite > 1e9), "time: expected unix seconds"

    def test_read_respects_timeout(self, source: Source) -> None:
        for timeout in (0.0, 0.05, 0.3):
            self.timed_read(source, timeout)

    def test_set_rois_then_read(self, source: Source) -> None:
        roi = self.roi_for(source.describe())
        if roi is None:
            pytest.skip("source has no array detector")
        key = roi_key(roi.name, 1)
        source.set_rois(rois={key: roi})
        for block in self.collect(source, 2):
            block.validate()
            if not self.own_cutouts:
                assert set(block.cutouts) <= {key}, f"unexpected cutout keys {sorted(block.cutouts)}"
            if key in block.cutouts:
                cut = block.cutouts[key]
                assert cut.pixels.shape[1:] == (roi.y[1] - roi.y[0], roi.x[1] - roi.x[0])
        source.set_rois(rois={})

    def test_status_and_notices(self, source: Source) -> None:
        self.collect(source, 1)
        st = source.status()
        assert isinstance(st, SourceStatus)
        assert st.state in STATES
        assert all(isinstance(v, int) and v >= 0 for v in st.missing.values())
        assert all(isinstance(v, int) and v >= 0 for v in st.counters.values())
        first = source.notices()
        assert isinstance(first, list) and all(isinstance(s, str) for s in first)
        assert all("\n" not in s for s in first), "notices are one line each"

    def test_optional_capabilities_are_callable(self, source_factory: Callable[[], Source]) -> None:
        """start_after and playback are part of the protocol: the recorder never probes for them."""
        src = source_factory()
        src.open()
        try:
            src.start_after(-1)  # before the first read, as the recorder does with --append
            playback = src.playback()
            assert playback is None or isinstance(playback.rois(), list)
            block = self.collect(src, 1)[0]
            assert block.validate() is not None
        finally:
            src.close()

    def test_close_is_idempotent_and_reads_end(self, source_factory: Callable[[], Source]) -> None:
        src = source_factory()
        src.open()
        self.collect(src, 1)
        src.close()
        src.close()
        # After close a read must not hang (it may return None or raise).
        t = time.monotonic()
        try:
            src.read(timeout=0.2)
        except Exception:
            pass
        assert time.monotonic() - t <= 0.2 + self.slack

    def test_close_without_open(self, source_factory: Callable[[], Source]) -> None:
        src = source_factory()
        src.close()
        src.close()
