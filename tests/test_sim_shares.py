"""The simulator's shot is a pure function of (seed, tag): shares, block sizes, bursts across chunks.

DESIGN.md, Scale: MPI ranks each generate a share of the stream, and the numbers must equal
the single-process ones. These tests build the single stream and the shares independently
and compare every point, flag, time, cutout pixel and kept frame.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shotwatch.schemas import Roi, ShotBlock, SimSource
from shotwatch.sources import sim_physics
from shotwatch.sources.sim import DETECTOR, POINTS, Share, Simulator
from shotwatch.sources.sim_physics import BEAM, SHUTTER, chunk_params, draw_truth

EPOCH = 1.7e9
# Small ROIs on what matters: the spot, and a corner with a hot pixel and the NaN patch.
ROIS = {
    "spot/v1": Roi(name="spot", detector=DETECTOR, x=(196, 204), y=(296, 304)),
    "bad/v1": Roi(name="bad", detector=DETECTOR, x=(400, 420), y=(810, 830)),
}


def stream(seed: int, *, share: Share | None = None, block: int = 1200, frames_every: int = 0,
           until_slot: int, rate: float = 0) -> ShotBlock:
    """Every shot of one share with a slot below ``until_slot``."""
    sim = Simulator(SimSource(seed=seed, rate=rate), frames_every=frames_every, rois=ROIS,
                    share=share, epoch=EPOCH, block_shots=block)
    sim.open()
    first_tag = sim.truth.first_tag
    blocks: list[ShotBlock] = []
    while not blocks or (blocks[-1].tags[-1] - first_tag) // 2 < until_slot - 1:
        got = sim.read(timeout=1.0)
        if got is not None:
            blocks.append(got.validate())
    sim.close()
    whole = ShotBlock.concat(blocks)
    return whole.select((whole.tags - first_tag) // 2 < until_slot)


def frames_by_tag(block: ShotBlock) -> dict[int, np.ndarray]:
    frames = block.frames.get(DETECTOR)
    if frames is None:
        return {}
    return {int(block.tags[s]): frames.pixels[k] for k, s in enumerate(frames.shot)}


def assert_union_is_the_stream(single: ShotBlock, shares: list[ShotBlock]) -> None:
    tags = np.sort(np.concatenate([s.tags for s in shares]))
    np.testing.assert_array_equal(tags, single.tags)  # nothing lost, nothing doubled
    want_frames = frames_by_tag(single)
    got_frames: dict[int, np.ndarray] = {}
    for part in shares:
        at = np.searchsorted(single.tags, part.tags)
        np.testing.assert_array_equal(part.time, single.time[at])
        for name in POINTS:
            np.testing.assert_array_equal(part.points[name], single.points[name][at])
        for key, cut in part.cutouts.items():
            np.testing.assert_array_equal(cut.valid, single.cutouts[key].valid[at])
            np.testing.assert_array_equal(cut.pixels, single.cutouts[key].pixels[at])  # NaN where NaN
        got_frames.update(frames_by_tag(part))
    assert sorted(got_frames) == sorted(want_frames)
    for tag, pixels in want_frames.items():
        np.testing.assert_array_equal(got_frames[tag], pixels)


@settings(max_examples=20)
@given(count=st.integers(1, 4), seed=st.integers(0, 2**62), single_block=st.integers(1, 500),
       share_block=st.integers(1, 500), frames_every=st.sampled_from([0, 0, 97]))
def test_shares_merge_into_the_single_stream(count: int, seed: int, single_block: int, share_block: int,
                                             frames_every: int) -> None:
    # Small chunks: many chunk boundaries, and bursts (up to 600 slots) that span several.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sim_physics, "CHUNK", 64)
        until = 64 * (count + 2) + 17
        single = stream(seed, block=single_block, frames_every=frames_every, until_slot=until)
        shares = [stream(seed, share=Share(k, count), block=share_block, frames_every=frames_every, until_slot=until)
                  for k in range(count)]
    assert_union_is_the_stream(single, shares)


def test_shares_at_the_real_chunk_size() -> None:
    until = 2 * sim_physics.CHUNK + 100
    single = stream(2019, until_slot=until, frames_every=300)
    shares = [stream(2019, share=Share(k, 2), block=333, frames_every=300, until_slot=until) for k in range(2)]
    assert all(len(s) for s in shares)
    assert_union_is_the_stream(single, shares)


def test_a_burst_across_a_chunk_boundary_is_seen_by_the_next_chunk_alone() -> None:
    """Chunk 1 computed first (as by another rank) knows of a beam-off burst begun in chunk 0."""
    n = sim_physics.CHUNK
    for seed in range(200):
        truth = draw_truth(seed)
        tail = chunk_params(truth, 0).points[BEAM][-1]
        if tail == 0:
            break
    else:
        pytest.fail("no seed below 200 has a beam-off burst crossing slot 1023")
    head = chunk_params(truth, 1)
    assert head.points[BEAM][0] == 0 and head.slots[0] < n + 10
    both = stream(seed, until_slot=2 * n)
    at = np.searchsorted(both.tags, head.tags)
    np.testing.assert_array_equal(both.points[BEAM][at], head.points[BEAM])
    np.testing.assert_array_equal(both.points[SHUTTER][at], head.points[SHUTTER])


def test_a_share_waits_for_its_own_chunks_at_rate() -> None:
    """Paced, share 1 of 2 delivers only chunk 1's slots, when they are due."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sim_physics, "CHUNK", 16)
        sim = Simulator(SimSource(seed=5, rate=200), frames_every=0, share=Share(1, 2), epoch=time.time())
        sim.open()
        slots: list[int] = []
        t = time.monotonic()
        while time.monotonic() - t < 0.5:
            block = sim.read(timeout=0.1)
            if block is not None:
                slots += ((block.tags - sim.truth.first_tag) // 2).tolist()
                assert block.time.max() <= time.time() + 0.01  # nothing before it is due
    assert slots and all((s // 16) % 2 == 1 for s in slots)


def test_share_must_be_one_of_count() -> None:
    with pytest.raises(ValueError, match="index 2 of 2"):
        Share(2, 2)
    assert [Share(1, 3).next_chunk(c) for c in range(6)] == [1, 1, 4, 4, 4, 7]
