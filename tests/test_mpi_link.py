"""Messages between the ranks of ``record --mpi`` (``recorder/mpi_link.py``): buffers only.

What one rank packs the other unpacks exactly (a block: cutouts, points and full frames);
anything else, truncated, padded, with an unknown kind, a dtype off the whitelist, a shape
larger than the message or bools that are not 0/1, is a one-line LinkError, never unpickled.
"""

from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest

pytest.importorskip("mpi4py")

from shotwatch.recorder.mpi_link import (
    Envelope,
    LinkError,
    block_envelope,
    open_block,
    pack,
    unpack,
    versions_fields,
    versions_from_fields,
)
from shotwatch.schemas import Cutout, Frames, RoiVersion, ShotBlock


def sample_block() -> ShotBlock:
    tags = np.array([10, 12, 14], np.int64)
    pixels = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    frames = Frames(np.ones((2, 8, 6), np.uint16), np.array([0, 2]))
    return ShotBlock(tags, tags * 0.5, {"p": np.array([1.0, np.nan, 3.0])},
                     {"r/v1": Cutout(pixels, np.array([True, False, True]), "det")}, frames={"det": frames})


def test_a_block_crosses_exactly() -> None:
    block = sample_block()
    env = unpack(pack(block_envelope(block, {"frontier": 15})), 1)
    got = open_block(env)
    assert env.fields["frontier"] == 15
    np.testing.assert_array_equal(got.tags, block.tags)
    np.testing.assert_array_equal(got.points["p"], block.points["p"])
    np.testing.assert_array_equal(got.cutouts["r/v1"].pixels, block.cutouts["r/v1"].pixels)
    np.testing.assert_array_equal(got.cutouts["r/v1"].valid, block.cutouts["r/v1"].valid)
    np.testing.assert_array_equal(got.frames["det"].pixels, block.frames["det"].pixels)
    np.testing.assert_array_equal(got.frames["det"].shot, block.frames["det"].shot)


def test_roi_versions_cross_and_bad_ones_are_refused() -> None:
    v = {"bragg/v2": RoiVersion("bragg", 2, "det", (1, 5), (2, 9), 0, 0)}
    assert versions_from_fields(versions_fields(v)) == v
    bad = versions_fields(v)
    bad["bragg/v2"]["x"] = [5, 1]
    with pytest.raises(LinkError, match=r"rois\['bragg/v2'\]"):
        versions_from_fields(bad)
    with pytest.raises(LinkError, match="bragg/v2"):
        versions_from_fields({"bragg/v3": versions_fields(v)["bragg/v2"]})


def raw(head: object, body: bytes = b"") -> np.ndarray:
    h = msgpack.packb(head)
    pad = (-(8 + len(h))) % 8
    return np.frombuffer(struct.pack("<Q", len(h)) + h + b"\0" * pad + body, np.uint8)


@pytest.mark.parametrize(("buf", "says"), [
    (np.zeros(3, np.uint8), "at least 8 bytes"),
    (np.frombuffer(struct.pack("<Q", 1 << 40), np.uint8), "a header of 1 to"),
    (raw({"kind": "evil", "fields": {}, "arrays": []}), "a known kind"),
    (raw({"kind": "tick", "fields": {}}), "kind, fields and arrays"),
    (raw({"kind": "tick", "fields": {}, "arrays": [["|O", [1]]]}, b"\0" * 8), "known dtype"),
    (raw({"kind": "tick", "fields": {}, "arrays": [["<f8", [1 << 30]]]}), "within the"),
    (raw({"kind": "tick", "fields": {}, "arrays": [["<f8", [1]]]}, b"\0" * 16), "message for its header"),
    (raw({"kind": "tick", "fields": {}, "arrays": [["|b1", [2]]]}, b"\x01\x07" + b"\0" * 6), "bools as bytes 0/1"),
    (np.frombuffer(struct.pack("<Q", 2) + b"\xc1\xc1" + b"\0" * 6, np.uint8), "msgpack header"),
])
def test_malformed_messages_are_one_line_errors(buf: np.ndarray, says: str) -> None:
    with pytest.raises(LinkError, match=says) as info:
        unpack(buf, 3)
    assert str(info.value).startswith("rank 3") or "bools" in str(info.value)
    assert "\n" not in str(info.value)


def test_only_whitelisted_dtypes_and_kinds_are_sent() -> None:
    with pytest.raises(LinkError, match="dtype"):
        pack(Envelope("tick", {}, (np.array([object()], dtype=object),)))
    with pytest.raises(LinkError, match="kind"):
        pack(Envelope("evil", {}))
    big = unpack(pack(Envelope("tick", {"a": 1}, (np.arange(3, dtype=">i4"),))), 0)
    np.testing.assert_array_equal(big.arrays[0], [0, 1, 2])  # big-endian sent little-endian
