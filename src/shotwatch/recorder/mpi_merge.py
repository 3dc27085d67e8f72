"""Rank 0's merge: the worker ranks' blocks back into one stream, in tag order.

Each worker delivers its share of the stream with increasing tags and says how far it is:
its *frontier* F is a tag such that it will never deliver a tag <= F again (the last tag it
sent, or further where its share says so: a simulator share knows where its next unit
starts). A shot is delivered once every live worker's frontier has reached its tag, so the
merged stream is the single-process stream whatever the timing. A dead worker is no longer
waited for; what it had sent is still delivered.

Pure: no MPI, no clocks (tests drive it directly).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..schemas import ShotBlock

__all__ = ["Merged", "TagMerge"]

_NONE = -(1 << 62)  # a frontier before any tag


@dataclass
class _Queued:
    block: ShotBlock
    offset: int = 0  # shots of it already delivered


@dataclass(frozen=True)
class Merged:
    """What one :meth:`TagMerge.pop` gives.

    Attributes:
        parts: the shots now deliverable, in tag order: slices of the workers' blocks (views,
            not copies: rank 0 passes them on one by one rather than join them).
        consumed: rank -> blocks of it fully delivered (each frees one of its credits).
        late: shots dropped because their tag was not after the last one delivered.
    """

    parts: list[ShotBlock]
    consumed: dict[int, int]
    late: int = 0


class TagMerge:
    """The k-way merge of the workers' queues (see the module docstring)."""

    def __init__(self, ranks: Iterable[int]) -> None:
        self._queues: dict[int, deque[_Queued]] = {r: deque() for r in ranks}
        self._frontier: dict[int, int] = dict.fromkeys(self._queues, _NONE)
        self._live: set[int] = set(self._queues)
        self.last: int | None = None  # the last tag delivered

    @property
    def live(self) -> frozenset[int]:
        return frozenset(self._live)

    def queued(self, rank: int) -> int:
        """Blocks of ``rank`` waiting (not fully delivered)."""
        return len(self._queues[rank])

    def frontier(self, rank: int) -> int | None:
        f = self._frontier[rank]
        return None if f == _NONE else f

    def push(self, rank: int, block: ShotBlock, frontier: int | None = None) -> None:
        """A block of ``rank`` (its tags after all it sent before) and its frontier after it."""
        if len(block):
            self._queues[rank].append(_Queued(block))
            self.advance(rank, int(block.tags[-1]))
        if frontier is not None:
            self.advance(rank, frontier)

    def advance(self, rank: int, frontier: int) -> None:
        """``rank`` will deliver no tag <= ``frontier`` any more."""
        self._frontier[rank] = max(self._frontier[rank], frontier)

    def drop(self, rank: int) -> None:
        """``rank`` is gone: never wait for it again (its queued shots are still delivered)."""
        self._live.discard(rank)

    def revive(self, rank: int) -> None:
        """``rank`` spoke again after it was taken for dead: wait for it again."""
        self._live.add(rank)

    def next_tag(self) -> int | None:
        """The smallest tag waiting (None: nothing queued)."""
        heads = self._heads()
        return heads[0][0] if heads else None

    def limit(self) -> int | None:
        """The newest tag deliverable now (None: no live worker has said anything yet)."""
        if not self._live:
            return 1 << 62
        low = min(self._frontier[r] for r in self._live)
        return None if low == _NONE else low

    def pop(self, *, before: int | None = None) -> Merged:
        """Every deliverable shot (tag <= :meth:`limit`, and < ``before`` if given), merged."""
        consumed: dict[int, int] = {}
        late = self._trim(consumed)
        cap = self.limit()
        if cap is None:
            return Merged([], consumed, late)
        if before is not None:
            cap = min(cap, before - 1)
        parts: list[ShotBlock] = []
        while True:
            heads = self._heads()
            if not heads or heads[0][0] > cap:
                break
            tag, rank = heads[0]
            q = self._queues[rank][0]
            bound = min(heads[1][0] if len(heads) > 1 else cap + 1, cap + 1)
            end = int(np.searchsorted(q.block.tags, bound, side="left"))
            end = max(end, q.offset + 1)  # an equal tag elsewhere: take this one, the other is late
            parts.append(q.block.slice(q.offset, end))
            self.last = int(q.block.tags[end - 1])
            self._take(rank, end, consumed)
            late += self._trim(consumed)
        return Merged(parts, consumed, late)

    def _heads(self) -> list[tuple[int, int]]:
        """(next tag, rank) of every non-empty queue, smallest first."""
        return sorted((int(q[0].block.tags[q[0].offset]), r) for r, q in self._queues.items() if q)

    def _take(self, rank: int, end: int, consumed: dict[int, int]) -> None:
        q = self._queues[rank][0]
        q.offset = end
        if end >= len(q.block):
            self._queues[rank].popleft()
            consumed[rank] = consumed.get(rank, 0) + 1

    def _trim(self, consumed: dict[int, int]) -> int:
        """Drop queued shots whose tag is not after the last delivered one; how many."""
        if self.last is None:
            return 0
        dropped = 0
        for rank, queue in self._queues.items():
            while queue:
                q = queue[0]
                end = int(np.searchsorted(q.block.tags, self.last, side="right"))
                if end <= q.offset:
                    break
                dropped += end - q.offset
                self._take(rank, end, consumed)
        return dropped
