"""A worker rank's share of the source (``record --mpi``; DESIGN.md, Scale).

Each worker rank opens the configured source and delivers only its share of the shots, with
its *frontier*: a tag it will never deliver a tag at or before again, which lets rank 0
merge the shares in tag order without waiting longer than needed (``mpi_merge``).

- ``sim``: the simulator itself generates only the rank's share (``Share`` with units of
  :data:`SIM_UNIT` slots, in turn with the other ranks): each rank renders only its own
  frames. The frontier is exact: the slot before the rank's next unit.
- ``karabo`` with a ``REQ`` or ``PULL`` socket: the bridge hands each train to one of the
  connected ranks (PUSH deals round-robin, REP answers whoever asks), so every rank takes
  what it is given; the frontier is its last train.
- ``karabo`` with ``SUB``, ``sacla`` and ``euxfel-run``: every rank reads the whole stream
  and keeps the shots whose tag hashes to its own index (:func:`tag_owner`: a tag's
  remainder alone would give one rank every shot where tags step by 2, as at SACLA). That is correct (each
  shot is delivered by exactly one rank, the frontier is the last tag read) but shares only
  the cutting and what follows it, not the reading: sharing the reads needs the source to
  skip other ranks' tags before it reads their frames, which these sources do not offer.
- ``replay`` is refused: a recording is replayed by one process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from ..schemas import Config, KaraboSource, Roi, ShotBlock, SimSource, UsageError
from ..schemas.source_info import SourceInfo
from ..sources import Source, SourceStatus, open_source
from ..sources.base import Playback
from ..sources.sim import Simulator
from ..sources.sim_physics import Share

__all__ = ["SIM_UNIT", "SharedSource", "check_shareable", "shared_source", "tag_owner"]

SIM_UNIT = 32
"""Slots per unit of a simulator share (~1 s at 30 Hz): ranks take turns this often, so rank 0
holds at most a few units of each rank while it waits for the next tag."""

_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: consecutive and evenly spaced tags spread evenly

Tags = npt.NDArray[np.int64]


def tag_owner(tags: Tags, count: int) -> npt.NDArray[np.int64]:
    """Which of ``count`` ranks keeps each tag where every rank reads the whole stream."""
    mixed = (np.asarray(tags).astype(np.uint64) * _MIX) >> np.uint64(32)
    return (mixed % np.uint64(count)).astype(np.int64)


def check_shareable(config: Config) -> None:
    """A configuration ``record --mpi`` can share among ranks (UsageError otherwise, exit 2)."""
    if config.source.kind == "replay":
        raise UsageError("source.kind: expected a live source with --mpi (sim, sacla, karabo, euxfel-run), "
                         "found \"replay\" (a recording is replayed by one process)")


class SharedSource(Source):
    """One rank's share of a source, with its frontier (see the module docstring).

    Args:
        inner: the source (already built for this rank).
        keep: which shots of a block are this rank's (None: all it is given).
        frontier_after: the frontier after delivering a shot of tag t (None: t itself).
    """

    def __init__(self, inner: Source, *, keep: Callable[[Tags], npt.NDArray[np.bool_]] | None = None,
                 frontier_after: Callable[[int], int] | None = None) -> None:
        self.inner = inner
        self._keep = keep
        self._after = frontier_after
        self.frontier: int | None = None
        """No tag at or before this will be delivered any more (None: nothing read yet)."""

    def read(self, *, timeout: float) -> ShotBlock | None:
        block = self.inner.read(timeout=timeout)
        if block is None or not len(block):
            return block
        last = int(block.tags[-1])  # before filtering: every tag up to it was looked at
        if self._keep is not None:
            block = block.select(self._keep(block.tags))
        reached = self._after(last) if self._after is not None else last
        self.frontier = reached if self.frontier is None else max(self.frontier, reached)
        return block

    def open(self) -> None:
        self.inner.open()

    def describe(self) -> SourceInfo:
        return self.inner.describe()

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        self.inner.set_rois(rois=rois)

    def status(self) -> SourceStatus:
        return self.inner.status()

    def notices(self) -> list[str]:
        return self.inner.notices()

    def close(self) -> None:
        self.inner.close()

    def start_after(self, tag: int) -> None:
        self.inner.start_after(tag)

    def playback(self) -> Playback | None:
        return None

    @property
    def reads_everything(self) -> bool:
        """Every rank reads the whole stream (its counts of missing values are everyone's)."""
        return self._keep is not None


def shared_source(config: Config, *, index: int, count: int, epoch: float) -> SharedSource:
    """Share ``index`` of ``count`` of the source ``config`` names (constructed, not opened).

    Raises:
        UsageError: a replay source.
        SourceError: as :func:`~shotwatch.sources.open_source`.
    """
    check_shareable(config)
    src = config.source
    if isinstance(src, SimSource):
        share = Share(index, count, unit=SIM_UNIT)
        sim = open_source(config, share=share, epoch=epoch)
        assert isinstance(sim, Simulator)
        first = sim.truth.first_tag

        def next_unit(tag: int) -> int:
            """The tag before the first one of this share's next slots."""
            return first + 2 * share.next_slot((tag - first) // 2 + 1) - 1

        return SharedSource(sim, frontier_after=next_unit)
    inner = open_source(config)
    if isinstance(src, KaraboSource) and src.socket in ("REQ", "PULL"):
        return SharedSource(inner)

    def mine(tags: Tags) -> npt.NDArray[np.bool_]:
        return tag_owner(tags, count) == index

    return SharedSource(inner, keep=mine)
