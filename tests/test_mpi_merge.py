"""Rank 0's merge of the worker ranks' shares (``recorder/mpi_merge.py``): pure, no MPI.

Whatever the block sizes and the order in which the ranks' blocks arrive, the merged stream
is the single stream in tag order, nothing is delivered before every live rank has passed
it, and a boundary (``before``) is never crossed.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shotwatch.recorder.mpi_merge import TagMerge
from shotwatch.schemas import Cutout, ShotBlock


def block(tags: list[int]) -> ShotBlock:
    t = np.asarray(tags, np.int64)
    pixels = (t[:, None, None] * np.ones((1, 2, 3))).astype(np.float32)
    return ShotBlock(t, t.astype(np.float64), {"p": t.astype(np.float64)},
                     {"r/v1": Cutout(pixels, np.ones(len(t), bool), "det")})


def shares(tags: list[int], ranks: int, unit: int) -> dict[int, list[int]]:
    return {r: [t for t in tags if (t // unit) % ranks == r - 1] for r in range(1, ranks + 1)}


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[int], int, list[tuple[int, list[int]]]]:
    """Tags, rank count, and the blocks in one possible arrival order."""
    tags = sorted(draw(st.sets(st.integers(0, 400), min_size=1, max_size=120)))
    ranks = draw(st.integers(1, 4))
    unit = draw(st.sampled_from([1, 3, 16]))
    per_rank: dict[int, list[list[int]]] = {}
    for r, mine in shares(tags, ranks, unit).items():
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(mine) - 1)), max_size=6))) if len(mine) > 1 else []
        bounds = [0, *cuts, len(mine)]
        per_rank[r] = [mine[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    order = draw(st.permutations([r for r, bl in per_rank.items() for _ in bl]))
    arrivals = [(r, per_rank[r].pop(0)) for r in order]
    return tags, ranks, arrivals


@settings(max_examples=150)
@given(scenario(), st.integers(0, 400))
def test_any_arrival_order_merges_into_the_single_stream(case: tuple[list[int], int, list[tuple[int, list[int]]]],
                                                         boundary: int) -> None:
    tags, ranks, arrivals = case
    merge = TagMerge(range(1, ranks + 1))
    got: list[int] = []
    for rank, tags_in in arrivals:
        merge.push(rank, block(tags_in))
        out = merge.pop(before=boundary)
        for part in out.parts:
            part.validate()
            np.testing.assert_array_equal(part.cutouts["r/v1"].pixels[:, 0, 0], part.tags)  # rows stay with tags
            got += part.tags.tolist()
        assert all(t < boundary for t in got)
        limit = merge.limit()
        assert limit is None or all(t <= limit for t in got)  # only what every rank has passed
        assert out.late == 0
    limit = merge.limit()
    assert got == [t for t in tags if t < boundary and limit is not None and t <= limit]  # all it could
    for r in range(1, ranks + 1):  # every rank is done: its frontier is past everything
        merge.advance(r, 10_000)
    for part in merge.pop().parts:
        got += part.tags.tolist()
    assert got == tags  # nothing lost, nothing doubled, in order


def test_a_dead_rank_is_no_longer_waited_for_and_its_late_shots_are_counted() -> None:
    merge = TagMerge([1, 2])
    merge.push(1, block([0, 1, 2, 10, 11]))
    assert merge.pop().parts == []  # rank 2 said nothing yet
    merge.push(2, block([3, 4]))
    assert [p.tags.tolist() for p in merge.pop().parts] == [[0, 1, 2], [3, 4]]
    merge.drop(2)
    assert [p.tags.tolist() for p in merge.pop().parts] == [[10, 11]]
    merge.revive(2)
    merge.push(2, block([5, 12]))  # 5 comes after 11 was delivered: late
    merge.advance(1, 20)
    out = merge.pop()
    assert out.late == 1 and [p.tags.tolist() for p in out.parts] == [[12]]


def test_frontier_lets_shots_through_before_the_next_block() -> None:
    merge = TagMerge([1, 2])
    merge.push(1, block([0, 1]), frontier=5)  # rank 1's next unit starts after 5
    merge.push(2, block([2, 3, 4, 5]))
    assert sum(len(p) for p in merge.pop().parts) == 6
    assert merge.pop().consumed == {} and merge.next_tag() is None
