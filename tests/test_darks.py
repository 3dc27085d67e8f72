"""Darks: the per-pixel moments reducer, ``shotwatch dark``, and darks applied live.

The reference for the reducer is numpy's ``nanmean``/``nanstd`` over the frames, computed
here, never by the code under test.
"""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from shotwatch.reducers.pixels import PixelMoments, PixelReducer
from shotwatch.schemas import Frames, ShotBlock

DET = "D"


def _frames(seed: int, k: int, shape: tuple[int, int] = (5, 7)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(350.0, 6.0, (k, *shape)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    x[:, 0, 0] = np.nan  # never finite: its dark is NaN, nothing else is
    return x


def _block(pixels: np.ndarray, first_tag: int) -> ShotBlock:
    k = pixels.shape[0]
    tags = first_tag + 2 * np.arange(k, dtype=np.int64)
    return ShotBlock(tags, np.full(k, np.nan), {}, {}, {DET: Frames(pixels, np.arange(k, dtype=np.int64))})


@given(seed=st.integers(0, 2**31), cuts=st.lists(st.integers(1, 39), max_size=4, unique=True))
def test_pixel_moments_any_split_equals_nanmean_nanstd(seed: int, cuts: list[int]) -> None:
    x = _frames(seed, 40)
    red = PixelReducer(DET)
    edges = [0, *sorted(cuts), 40]
    parts = [red.update(red.init(), _block(x[a:b], 100 + 2 * a)) for a, b in zip(edges, edges[1:], strict=False)]
    # merged in a tree other than left to right
    while len(parts) > 1:
        parts = [red.merge(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    dark = red.result(parts[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-NaN pixel
        want_mean, want_std = np.nanmean(x.astype(np.float64), axis=0), np.nanstd(x.astype(np.float64), axis=0)
    assert dark.mean.dtype == np.float32 and dark.std.dtype == np.float32
    np.testing.assert_allclose(dark.mean, want_mean, rtol=1e-6)
    np.testing.assert_allclose(dark.std, want_std, rtol=1e-4, atol=1e-4)
    assert np.isnan(dark.mean[0, 0]) and np.isfinite(dark.mean[1:, :]).all()
    assert (dark.frames, dark.first_tag, dark.last_tag) == (40, 100, 178)


def test_pixel_reducer_stops_at_its_limit() -> None:
    x = _frames(1, 30)
    red = PixelReducer(DET, limit=25)
    state = red.update(red.init(), _block(x[:20], 0))
    assert not red.done(state)
    state = red.update(state, _block(x[20:], 40))
    assert red.done(state) and state.frames == 25 and state.last_tag == 48
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(red.result(state).mean[1:], np.nanmean(x[:25].astype(np.float64), axis=0)[1:],
                                   rtol=1e-6)
    assert PixelMoments.empty().shape == ()
