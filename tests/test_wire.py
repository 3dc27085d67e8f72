"""Wire format: round trips of every message, and rejection of malformed frames."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import synth
from shotwatch.link import wire
from shotwatch.link.messages import BlockMsg, ImageMsg, NoticeMsg, Reply, RoisMsg, Status, StatusMsg
from shotwatch.schemas import Cutout, Roi, RoiVersion, ShotBlock


def assert_blocks_equal(a: ShotBlock, b: ShotBlock) -> None:
    np.testing.assert_array_equal(a.tags, b.tags)
    np.testing.assert_array_equal(a.time, b.time)
    assert list(a.points) == list(b.points)
    for name, values in a.points.items():
        np.testing.assert_array_equal(values, b.points[name])  # NaN == NaN here
        assert b.points[name].dtype == np.float64
    assert list(a.cutouts) == list(b.cutouts)
    for key, cut in a.cutouts.items():
        got = b.cutouts[key]
        assert got.pixels.dtype == cut.pixels.dtype and got.pixels.shape == cut.pixels.shape
        np.testing.assert_array_equal(got.pixels, cut.pixels)
        np.testing.assert_array_equal(got.valid, cut.valid)
        assert got.detector == cut.detector
    assert (a.run, a.hightag) == (b.run, b.hightag)
    assert b.frames == {}


def roundtrip(msg: Any) -> Any:
    frames = wire.encode(msg)
    # what zmq delivers: independent bytes per frame
    return wire.decode([bytes(f) for f in frames])


rois = st.dictionaries(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,8}/v[1-9]", fullmatch=True),
    st.tuples(st.integers(1, 9), st.integers(1, 9)), max_size=3,
)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 80), rois=rois,
       dtype=st.sampled_from(["uint16", "float32", "int32", "uint8", "float64"]),
       nan=st.floats(0, 1), extra=st.integers(0, 6), seq=st.integers(0, 2**62))
def test_block_roundtrip(seed: int, n: int, rois: dict[str, tuple[int, int]], dtype: str, nan: float,
                         extra: int, seq: int) -> None:
    rng = np.random.default_rng(seed)
    block = synth.block(rng, first_tag=2 * seed + 1, n=n, rois=rois, dtype=dtype, nan_fraction=nan,
                        extra_points=extra, frame_every=3)
    got = roundtrip(BlockMsg(seq, block))
    assert isinstance(got, BlockMsg) and got.seq == seq
    assert_blocks_equal(block, got.block)


def test_block_stream_roundtrip_and_zero_copy() -> None:
    for block in synth.stream(7, [0, 1, 50, 300]):
        frames = wire.encode(BlockMsg(1, block))
        got = wire.decode(frames)
        assert_blocks_equal(block, got.block)  # type: ignore[union-attr]
    # big buffers travel as views of the array memory, not copies
    cut = next(iter(block.cutouts.values()))
    assert any(isinstance(f, memoryview) and f.obj is not None and np.shares_memory(np.asarray(f), cut.pixels)
               for f in frames[2:])


def test_block_odd_layouts_are_normalised() -> None:
    rng = np.random.default_rng(3)
    block = synth.block(rng, first_tag=10, n=20)
    pixels = np.asfortranarray(block.cutouts["roi/v1"].pixels.astype(">u2"))  # big-endian, not C order
    odd = block.with_(cutouts={"roi/v1": Cutout(pixels, block.cutouts["roi/v1"].valid, "det")},
                      points={"p": block.points[synth.I0][::-1].copy()[::-1]})
    got = roundtrip(BlockMsg(0, odd)).block
    assert got.cutouts["roi/v1"].pixels.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(got.cutouts["roi/v1"].pixels, pixels)


def test_other_messages_roundtrip() -> None:
    status = Status(time=1.5, source="sim", rate_hz=float("nan"), missing={"a/b": 3}, counters={"x": 1}, seq=9)
    got = roundtrip(StatusMsg(status))
    assert got.status.model_dump(exclude={"rate_hz"}) == status.model_dump(exclude={"rate_hz"})
    assert np.isnan(got.status.rate_hz)
    assert roundtrip(NoticeMsg(2.0, "détecteur absent", "error")) == NoticeMsg(2.0, "détecteur absent", "error")
    versions = (RoiVersion("bragg", 1, "MPCCD", (0, 10), (5, 9), 0, 100, 50), RoiVersion("bragg", 2, "MPCCD", (1, 10), (5, 9), 50, 200))
    assert roundtrip(RoisMsg(versions)) == RoisMsg(versions)
    image = np.arange(12, dtype=np.float64).reshape(3, 4)
    got = roundtrip(ImageMsg("MPCCD", image, 10, "grab"))  # type: ignore[arg-type]
    assert got.image.dtype == np.float32 and (got.detector, got.count, got.kind) == ("MPCCD", 10, "grab")
    np.testing.assert_array_equal(got.image, image)


def test_requests_and_replies() -> None:
    req = wire.decode_request(wire.encode_request("set_roi", token="t" * 32, timeout=2.0, name="a",
                                                  detector="d", x=[0, 4], y=[1, 2]))
    assert req.op == "set_roi" and req.token == "t" * 32 and req.timeout == 2.0
    assert req.args == Roi(name="a", detector="d", x=(0, 4), y=(1, 2))
    assert wire.decode_request(wire.encode_request("hello")).token is None
    assert wire.decode_request(wire.encode_request("grab", token="x", detector="d", n=10)).args.n == 10  # type: ignore[attr-defined]
    reply = Reply(True, None, {"n": np.int64(3), "arr": np.arange(2), "t": (1, 2), "roi": Roi(name="a", detector="d", x=(0, 1), y=(0, 1))})
    got = wire.decode_reply(wire.encode_reply(reply))
    arr = got.data.pop("arr")  # arrays travel as arrays (a raw frame each)
    assert arr.dtype == np.int64 and arr.tolist() == [0, 1]
    assert got.data == {"n": 3, "t": [1, 2], "roi": {"name": "a", "detector": "d", "x": [0, 1], "y": [0, 1]}}
    assert wire.decode_reply(wire.encode_reply(Reply(False, "nope"))) == Reply(False, "nope", {})


@pytest.mark.parametrize(("op", "args", "expect"), [
    ("launch", {}, "request.op"),
    ("grab", {"detector": "d", "n": 0}, "grab.n"),
    ("grab", {"detector": "d", "n": "3"}, "grab.n"),
    ("set_roi", {"name": "a", "detector": "d", "x": [4, 1], "y": [0, 1]}, "x0 < x1"),
    ("set_roi", {"name": "bad name", "detector": "d", "x": [0, 1], "y": [0, 1]}, "set_roi.name"),
    ("delete_roi", {}, "delete_roi.name"),
    ("hello", {"extra": 1}, "hello.extra"),
    ("mark", {"text": "x" * 2000}, "mark.text"),
])
def test_bad_requests_say_what_is_wrong(op: str, args: dict[str, Any], expect: str) -> None:
    with pytest.raises(wire.WireError, match=expect):
        wire.encode_request(op, **args)


def _header(frames: list[Any]) -> dict[str, Any]:
    return msgpack.unpackb(frames[1])  # type: ignore[no-any-return]


def _with_header(frames: list[Any], **changes: Any) -> list[Any]:
    head = _header(frames)
    head.update(changes)
    return [frames[0], msgpack.packb(head), *frames[2:]]


def _valid() -> list[Any]:
    rng = np.random.default_rng(0)
    return [bytes(f) for f in wire.encode(BlockMsg(5, synth.block(rng, first_tag=100, n=10)))]


def _mutations() -> dict[str, list[Any]]:
    v = _valid()
    head = _header(v)
    arrays = head["arrays"]
    tags_i = head["fields"]["tags"]
    out: dict[str, list[Any]] = {
        "no frames": [], "topic only": v[:1], "missing buffer": v[:-1], "extra buffer": [*v, b"\0" * 8],
        "truncated buffer": [*v[:2], v[2][:-1], *v[3:]], "truncated header": [v[0], v[1][:-3], *v[2:]],
        "wrong topic": [b"status", *v[1:]], "not msgpack": [v[0], b"\xc1\xc1", *v[2:]],
        "header is a list": [v[0], msgpack.packb([1, 2]), *v[2:]],
        "version 2": _with_header(v, version=2), "unknown type": _with_header(v, type="frames"),
        "extra key": _with_header(v, evil=1),
        "huge header": [v[0], msgpack.packb({"pad": "x" * (wire.MAX_HEADER_BYTES + 1)}), *v[2:]],
    }
    for name, change in {
        "object dtype": {"dtype": "|O"}, "big-endian": {"dtype": ">f8"}, "complex": {"dtype": "<c16"},
        "shape mismatch": {"shape": [11]}, "4-d": {"shape": [1, 1, 1, 10]}, "negative shape": {"shape": [-10]},
        "oversized": {"shape": [2**40, 2**20]}, "buffer index out of range": {"buf": 99},
    }.items():
        bad = [dict(a) for a in arrays]
        bad[tags_i] = {**bad[tags_i], **change}
        out[name] = _with_header(v, arrays=bad)
    fields = head["fields"]
    out["array used twice"] = _with_header(v, fields={**fields, "time": fields["tags"]})
    out["negative seq"] = _with_header(v, fields={**fields, "seq": -1})
    out["string seq"] = _with_header(v, fields={**fields, "seq": "5"})
    out["bad roi key"] = _with_header(v, fields={**fields, "cutouts": {"roi": fields["cutouts"]["roi/v1"]}})
    out["bad roi name"] = _with_header(v, fields={**fields, "cutouts": {"r oi/v1": fields["cutouts"]["roi/v1"]}})
    tags = np.frombuffer(v[2 + arrays[tags_i]["buf"]], np.int64).copy()
    tags[3] = tags[2]
    out["tags not increasing"] = [*v[:2 + arrays[tags_i]["buf"]], tags.tobytes(), *v[3 + arrays[tags_i]["buf"]:]]
    valid_i = arrays[fields["cutouts"]["roi/v1"]["valid"]]["buf"]
    out["bool not 0/1"] = [*v[:2 + valid_i], b"\x02" * 10, *v[3 + valid_i:]]
    return out


@pytest.mark.parametrize("name", list(_mutations()))
def test_decode_rejects_malformed(name: str) -> None:
    with pytest.raises(wire.WireError) as info:
        wire.decode(_mutations()[name])
    assert str(info.value)  # says something


def test_decode_rejects_wrong_array_kinds() -> None:
    rng = np.random.default_rng(1)
    good = synth.block(rng, first_tag=0, n=4)
    with pytest.raises(wire.WireError, match="image"):
        wire.decode(wire.encode(ImageMsg("d", np.zeros((2, 2, 2), np.float32), 1)))
    frames = wire.encode(NoticeMsg(0.0, "x"))
    with pytest.raises(wire.WireError, match="no arrays"):
        wire.decode([*frames[:1], msgpack.packb({**_header(frames), "arrays": [{"dtype": "|u1", "shape": [1], "buf": 0}]}), b"\0"])
    with pytest.raises(wire.WireError, match="dtype"):
        wire.encode(BlockMsg(0, good.with_(cutouts={"a/v1": Cutout(np.zeros((4, 1, 1), object), np.ones(4, bool))})))
    with pytest.raises(wire.WireError):
        wire.encode("not a message")  # type: ignore[arg-type]
