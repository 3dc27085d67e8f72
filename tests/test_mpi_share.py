"""Fine shares of the simulator (``Share.unit``) and the tag shares of other sources, for ``record --mpi``.

A worker rank delivers units of a few slots in turn with the others, so that rank 0's merge
never waits long for the next tag; the shares must still be exactly the single stream.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shotwatch.recorder.mpi_share import tag_owner
from shotwatch.sources import sim_physics
from shotwatch.sources.sim import Share
from test_sim_shares import assert_union_is_the_stream, stream


@settings(max_examples=10)
@given(count=st.integers(2, 4), seed=st.integers(0, 2**62), unit=st.sampled_from([1, 4, 16]),
       share_block=st.integers(1, 300), frames_every=st.sampled_from([0, 13]))
def test_fine_shares_merge_into_the_single_stream(count: int, seed: int, unit: int, share_block: int,
                                                  frames_every: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sim_physics, "CHUNK", 64)
        until = 64 * 3 + 17
        single = stream(seed, block=97, frames_every=frames_every, until_slot=until)
        shares = [stream(seed, share=Share(k, count, unit=unit), block=share_block, frames_every=frames_every,
                         until_slot=until) for k in range(count)]
    assert all(len(s) for s in shares)
    assert_union_is_the_stream(single, shares)
    for k, part in enumerate(shares):
        slots = (part.tags - single.tags[0]) // 2
        assert np.all((slots // unit) % count == k)


def test_next_slot_and_chunk_of_fine_shares() -> None:
    share = Share(1, 3, unit=256)  # 4 units per chunk of 1024
    assert [share.next_slot(s) for s in (0, 255, 256, 300, 512, 1023)] == [256, 256, 256, 300, 1024, 1024]
    assert [share.next_chunk(c) for c in range(4)] == [0, 1, 2, 3]
    assert [Share(2, 9, unit=512).next_chunk(c) for c in range(6)] == [1, 1, 5, 5, 5, 5]
    with pytest.raises(ValueError, match="unit dividing"):
        Share(0, 2, unit=100)


def test_every_tag_has_one_owner_and_shares_are_even_whatever_the_tag_step() -> None:
    """Where every rank reads the whole stream (SACLA, EuXFEL): tags stepping by 1, 2 or 6
    spread about evenly over the ranks, each tag kept by exactly one."""
    for step in (1, 2, 6):
        tags = np.arange(1_000_000_000, 1_000_000_000 + 6000 * step, step, dtype=np.int64)
        for count in (1, 2, 3):
            owner = tag_owner(tags, count)
            assert owner.min() >= 0 and owner.max() < count
            np.testing.assert_array_equal(owner, tag_owner(tags.copy(), count))  # a pure function of the tag
            shares = np.bincount(owner, minlength=count) / len(tags)
            assert np.all(np.abs(shares - 1 / count) < 0.03), (step, count, shares)
