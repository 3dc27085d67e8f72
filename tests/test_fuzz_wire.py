"""Fuzzing the wire: garbage must be counted and dropped (data) or answered (control), never fatal."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

import synth
from shotwatch.link import wire
from shotwatch.link.messages import BlockMsg, ImageMsg, NoticeMsg, RoisMsg, Status, StatusMsg
from shotwatch.link.netfeed import NetFeed
from shotwatch.schemas import RoiVersion
from test_service import DET, Running, collect, make


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # never meet a real recorder's run file
    return tmp_path / "shotwatch"


def _samples() -> list[list[bytes]]:
    rng = np.random.default_rng(5)
    block = synth.block(rng, first_tag=10, n=12, rois={"a/v1": (3, 4), "b/v2": (2, 2)}, extra_points=2)
    msgs: list[Any] = [
        BlockMsg(3, block), StatusMsg(Status(time=1.0, source="sim", counters={"x": 1})),
        NoticeMsg(1.0, "hello"), RoisMsg((RoiVersion("a", 1, DET, (0, 4), (0, 3), 0, 10),)),
        ImageMsg(DET, np.ones((4, 4), np.float32), 2),
    ]
    from test_wire_analysis import analysis_msg, dark_msg, state_msg  # issue 10's messages too

    msgs += [analysis_msg(), state_msg(), dark_msg()]
    return [[bytes(f) for f in wire.encode(m)] for m in msgs]


SAMPLES = _samples()


def _mutate(frames: list[bytes], data: st.DataObject) -> list[bytes]:
    frames = list(frames)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "drop", "dup", "shuffle", "splice", "garbage"]))
        if not frames:
            frames = [b""]
        i = data.draw(st.integers(0, len(frames) - 1))
        if kind == "flip" and frames[i]:
            j = data.draw(st.integers(0, len(frames[i]) - 1))
            b = bytearray(frames[i])
            b[j] ^= 1 << data.draw(st.integers(0, 7))
            frames[i] = bytes(b)
        elif kind == "truncate":
            frames[i] = frames[i][: data.draw(st.integers(0, max(0, len(frames[i]) - 1)))]
        elif kind == "drop":
            del frames[i]
        elif kind == "dup":
            frames.insert(i, frames[i])
        elif kind == "shuffle":
            random.Random(data.draw(st.integers())).shuffle(frames)
        elif kind == "splice":
            other = data.draw(st.sampled_from(SAMPLES))
            frames[i] = other[data.draw(st.integers(0, len(other) - 1))]
        else:
            frames[i] = data.draw(st.binary(max_size=64))
    return frames


@given(data=st.data())
def test_decode_mutated_messages_raise_only_wire_error(data: st.DataObject) -> None:
    frames = _mutate(data.draw(st.sampled_from(SAMPLES)), data)
    try:
        msg = wire.decode(frames)
    except wire.WireError:
        return
    # whatever survived is a well-formed message
    if isinstance(msg, BlockMsg):
        msg.block.validate()
        assert np.all(np.diff(msg.block.tags) > 0)


@given(frames=st.lists(st.binary(max_size=200), max_size=6))
def test_decode_random_bytes(frames: list[bytes]) -> None:
    for fn in (wire.decode, wire.decode_request, wire.decode_reply):
        try:
            fn(frames)
        except wire.WireError:
            pass


@given(data=st.data())
def test_decode_request_mutated(data: st.DataObject) -> None:
    frame = wire.encode_request("set_roi", token="t", name="a", detector="d", x=[0, 1], y=[0, 1])[0]
    try:
        wire.decode_request(_mutate([frame], data))
    except wire.WireError:
        pass


def _garbage(rng: random.Random, token: str) -> list[bytes]:
    valid = wire.encode_request("set_roi", token=token, name="a", detector=DET, x=[0, 1], y=[0, 1])[0]
    choice = rng.randrange(6)
    if choice == 5:
        return [valid]  # well formed: refused without the token, applied with it
    if choice == 0:
        return [rng.randbytes(rng.randrange(0, 300))]
    if choice == 1:
        return [valid[: rng.randrange(len(valid))]]
    if choice == 2:
        return [valid, valid]
    if choice == 3:
        frames = [valid, b"", rng.randbytes(10)]
        rng.shuffle(frames)
        return frames
    b = bytearray(valid)
    b[rng.randrange(len(b))] ^= 0xFF
    return [bytes(b)]


@pytest.mark.parametrize("kind", ["real", "standin"])
def test_control_socket_survives_fuzz(kind: str) -> None:
    rng = random.Random(11)
    ctx = zmq.Context.instance()
    with Running(make(kind)) as r:
        ctl = r.service.addresses["control"]
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.RCVTIMEO, 2000)
        req.connect(ctl)
        answered = 0
        for i in range(150):
            req.send_multipart(_garbage(rng, r.service.token if i % 2 else "wrong"))
            reply = wire.decode_reply(req.recv_multipart())  # every request gets an answer
            answered += 1
            assert reply.ok or reply.error
        req.close(0)
        raw = ctx.socket(zmq.DEALER)  # no REQ envelope at all: nobody to answer, still counted
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(ctl)
        for _ in range(50):
            raw.send_multipart([rng.randbytes(rng.randrange(1, 50)) for _ in range(rng.randrange(1, 4))])
        raw.send(b"x" * (1 << 17))  # over the size limit: zmq drops the peer
        time.sleep(0.3)
        raw.close(0)
        counters = r.service.counters
        assert answered == 150
        assert counters["malformed requests"] >= 100
        assert counters.get("refused requests (no token)", 0) >= 1
        with NetFeed() as feed:  # still fully working
            assert feed.hello(timeout=2) is not None
            assert feed.request("set_roi", name="ok", detector=DET, x=[0, 2], y=[0, 2]).ok
        assert r.thread.is_alive()


@pytest.mark.parametrize(("kind", "seed"), [("real", 1), ("standin", 2)])
def test_client_survives_garbage_on_pub(kind: str, seed: int) -> None:
    rng = random.Random(seed)
    # a roomy PUB queue: this test counts exactly, so high-water-mark drops must not blur it
    with Running(make(kind), sndhwm=10_000) as r, NetFeed() as feed:
        collect(feed, 3.0, lambda m: any(isinstance(x, StatusMsg) for x in m))  # subscribed
        expected = 0
        got: list[Any] = []
        for i in range(200):
            frames = rng.choice(SAMPLES)
            bad = [frames[0], *[rng.randbytes(rng.randrange(0, 40)) for _ in range(rng.randrange(0, 4))]]
            if rng.random() < 0.3:
                bad = list(frames)
                bad[1] = bad[1][: rng.randrange(len(bad[1]))]
            if rng.random() < 0.2:
                bad = list(reversed(frames))  # its first frame is no topic: filtered by zmq
            expected += bad[0] in {t.encode() for t in wire.TOPICS}
            r.service.send_frames(bad)
            if i % 10 == 9:
                got += feed.poll(timeout=0.01)
        got += collect(feed, 0.5)
        assert feed.malformed == expected
        assert any(isinstance(m, BlockMsg) for m in got)
        assert feed.connected


def _image_declaring(shape: list[int]) -> list[bytes]:
    head = {"version": wire.VERSION, "type": "image", "fields": {"detector": DET, "count": 1, "image": 0},
            "arrays": [{"dtype": "<f4", "shape": shape, "buf": 0}]}
    return [b"image", msgpack.packb(head), b""]


@pytest.mark.parametrize("shape", [[2**63, 0], [2**63 - 1, 0], [2**31, 2**31, 0], [0, 2**40], [2**62, 2**62, 0]])
def test_shape_2_63_by_0_is_a_wire_error(shape: list[int]) -> None:
    """Item 7 of issue 7: an empty array with an absurd side is malformed, not a ValueError."""
    with pytest.raises(wire.WireError, match="arrays"):
        wire.decode(_image_declaring(shape))


def test_shape_2_63_by_0_is_counted_and_the_batch_kept() -> None:
    """The console drops that one message and counts it; what came with it still arrives."""
    notices = [[bytes(f) for f in wire.encode(NoticeMsg(float(i), f"n{i}"))] for i in range(3)]
    with Running(make("standin"), sndhwm=10_000) as r, NetFeed() as feed:
        collect(feed, 3.0, lambda m: any(isinstance(x, StatusMsg) for x in m))  # subscribed
        for frames in (notices[0], _image_declaring([2**63, 0]), notices[1], _image_declaring([0, 2**40]),
                       notices[2]):
            r.service.send_frames(frames)
        got = collect(feed, 3.0, lambda m: sum(isinstance(x, NoticeMsg) for x in m) == 3)
    assert [m.text for m in got if isinstance(m, NoticeMsg)] == ["n0", "n1", "n2"]
    assert feed.malformed == 2
