"""The protocol of analysis changes (issue 10): AnalysisMsg, StateMsg, DarkMsg, Status and Hello
fields, trees with arrays, replies that carry arrays, and the ops set_analysis, recompute,
dark and get_dark, through the codec, LocalFeed, and a Service with NetFeed on real sockets."""

from __future__ import annotations

import math
import time
from concurrent.futures import Future
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shotwatch.link import wire
from shotwatch.link.control import forward
from shotwatch.link.localfeed import LocalFeed
from shotwatch.link.messages import (
    AnalysisMsg,
    DarkMsg,
    Hello,
    Progress,
    Reply,
    StateMsg,
    Status,
    StatusMsg,
)
from shotwatch.link.netfeed import NetFeed
from shotwatch.schemas import AnalysisVersion, DarkFrame, DarkVersion, load_config
from test_localfeed import Control
from test_service import DET, Running, StandIn, collect, runtime_dir  # noqa: F401 (fixture)


def roundtrip(msg: Any) -> Any:
    return wire.decode([bytes(f) for f in wire.encode(msg)])


def analysis_msg(epoch: int = 3) -> AnalysisMsg:
    config = load_config(None)
    version = AnalysisVersion(version=2, first_shot=120, first_tag=-1, time=1.5, by="ana@bl3",
                              config={"i0": {"name": "i0", "min": 0.1}})
    return AnalysisMsg(version, config, epoch, 120, None, "analysis version 2 set by ana@bl3")


def state_msg() -> StateMsg:
    states = {"summary": {"total": 5, "stats": {"a/v1": {"count": np.arange(6, dtype=np.int64).reshape(2, 3)}},
                          "vetoed": {"i0": 2}, "none": None, "flag": True, "x": 0.5},
              "window": {"tags": np.array([1, 3, 5]), "columns": {"i0": np.array([0.1, np.nan, 0.3])},
                         "names": ["i0"], "mask": np.array([True, False, True])}}
    return StateMsg(3, 2, 120, 120, 0.25, ((1, 100), (102, 241)), states)


def dark_msg() -> DarkMsg:
    rng = np.random.default_rng(1)
    mean, std = rng.normal(100, 3, (4, 6)).astype(np.float32), rng.random((4, 6)).astype(np.float32)
    return DarkMsg(DET, 2, DarkFrame(mean, std, 600, 10, 1208))


# --- messages -------------------------------------------------------------------------------


def test_analysis_state_and_dark_roundtrip() -> None:
    msg = analysis_msg()
    got = roundtrip(msg)
    assert isinstance(got, AnalysisMsg) and got == msg  # the Config, the version, the boundary
    s = state_msg()
    got_s = roundtrip(s)
    assert isinstance(got_s, StateMsg)
    assert (got_s.epoch, got_s.analysis_version, got_s.boundary_shot, got_s.shots, got_s.seconds, got_s.tag_ranges) \
        == (3, 2, 120, 120, 0.25, ((1, 100), (102, 241)))
    summary = got_s.states["summary"]
    assert summary["total"] == 5 and summary["none"] is None and summary["flag"] is True
    np.testing.assert_array_equal(summary["stats"]["a/v1"]["count"], np.arange(6).reshape(2, 3))
    window = got_s.states["window"]
    np.testing.assert_array_equal(window["columns"]["i0"], [0.1, np.nan, 0.3])
    assert window["mask"].dtype == np.bool_ and window["names"] == ["i0"]
    d = dark_msg()
    got_d = roundtrip(d)
    assert isinstance(got_d, DarkMsg) and (got_d.detector, got_d.version) == (DET, 2)
    np.testing.assert_array_equal(got_d.frame.mean, d.frame.mean)
    np.testing.assert_array_equal(got_d.frame.std, d.frame.std)
    assert (got_d.frame.frames, got_d.frame.first_tag, got_d.frame.last_tag) == (600, 10, 1208)


def test_status_and_hello_carry_version_epoch_alarms_progress_darks() -> None:
    status = Status(time=1.0, source="sim", analysis_version=4, epoch=7, alarms=["beam lost: veto beam failing for 2 s"],
                    recompute=Progress(done=10, total=100, epoch=7))
    got = roundtrip(StatusMsg(status)).status
    assert got == status
    assert Status(time=1.0, source="sim").analysis_version == 1 and Status(time=1.0, source="sim").recompute is None
    hello = StandIn().hello(publish="p", control="c")
    darks = [DarkVersion(detector=DET, version=1, frames=600, first_tag=2, last_tag=1200)]
    full = hello.model_copy(update={"analysis_version": 3, "epoch": 5, "darks": darks})
    assert Hello.model_validate(full.model_dump(mode="json")) == full


def _state_frames() -> list[bytes]:
    return [bytes(f) for f in wire.encode(state_msg())]


def _with_fields(frames: list[bytes], **changes: Any) -> list[bytes]:
    head = msgpack.unpackb(frames[1], strict_map_key=True)
    head["fields"] = {**head["fields"], **changes}
    return [frames[0], msgpack.packb(head), *frames[2:]]


def _bad_states() -> dict[str, list[bytes]]:
    v = _state_frames()
    head = msgpack.unpackb(v[1], strict_map_key=True)
    states = head["fields"]["states"]
    ext = msgpack.ExtType
    return {
        "unknown extension": _with_fields(v, states={**states, "x": ext(7, b"\0\0\0\0")}),
        "short reference": _with_fields(v, states={**states, "x": ext(1, b"\0")}),
        "reference out of range": _with_fields(v, states={**states, "x": ext(1, (99).to_bytes(4, "big"))}),
        "array used twice": _with_fields(v, states={**states, "x": states["window"]["tags"]}),
        "array unused": _with_fields(v, states={"summary": states["summary"]}),
        "too deep": _with_fields(v, states={"x": _nested(40)}),
        "ranges overlap": _with_fields(v, tag_ranges=[[1, 100], [50, 200]]),
        "empty range": _with_fields(v, tag_ranges=[[5, 5]]),
        "range of 3": _with_fields(v, tag_ranges=[[1, 2, 3]]),
        "negative epoch": _with_fields(v, epoch=-1),
        "float shots": _with_fields(v, shots=1.5),
        "analysis config wrong": [b"analysis", *_analysis_with(config={"i0": {"name": "x", "min": -1}})[1:]],
        "analysis version wrong": [b"analysis", *_analysis_with(version={"version": 0})[1:]],
        "dark shapes differ": _dark_with_std(np.zeros((3, 6), np.float32)),
        "dark float64": _dark_with_std(np.zeros((4, 6), np.float64)),
    }


def _nested(depth: int) -> Any:
    node: Any = 1
    for _ in range(depth):
        node = [node]
    return node


def _analysis_with(**changes: Any) -> list[bytes]:
    return _with_fields([bytes(f) for f in wire.encode(analysis_msg())], **changes)


def _dark_with_std(std: np.ndarray) -> list[bytes]:
    d = dark_msg()
    frames = [bytes(f) for f in wire.encode(d)]
    head = msgpack.unpackb(frames[1], strict_map_key=True)
    i = head["fields"]["std"]
    head["arrays"][i] = {"dtype": std.dtype.str, "shape": list(std.shape), "buf": head["arrays"][i]["buf"]}
    bufs = frames[2:]
    bufs[head["arrays"][i]["buf"]] = std.tobytes()
    return [frames[0], msgpack.packb(head), *bufs]


@pytest.mark.parametrize("name", list(_bad_states()))
def test_malformed_analysis_messages_are_wire_errors(name: str) -> None:
    with pytest.raises(wire.WireError) as info:
        wire.decode(_bad_states()[name])
    assert str(info.value)


# --- trees ----------------------------------------------------------------------------------

_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=8),
    st.builds(lambda n, s, k: np.arange(n * s, dtype=k).reshape(n, s), st.integers(0, 4), st.integers(1, 3),
              st.sampled_from(["<f8", "<f4", "<i8", "|u1", "<u2"])),
)
_trees = st.recursive(_leaves, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids,
                                                                                         max_size=4), max_leaves=20)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)))


@settings(max_examples=60, deadline=None)
@given(tree=_trees)
def test_trees_with_arrays_roundtrip(tree: Any) -> None:
    assert _same(tree, wire.decode_tree([bytes(f) for f in wire.encode_tree(tree)]))


def test_tree_encoding_refuses_what_is_not_a_tree() -> None:
    with pytest.raises(wire.WireError, match="tree"):
        wire.encode_tree({"x": object()})
    with pytest.raises(wire.WireError, match="dtype"):
        wire.encode_tree([np.zeros(2, object)])
    with pytest.raises(wire.WireError, match="dimensions"):
        wire.encode_tree([np.zeros((1, 1, 1, 1))])
    with pytest.raises(wire.WireError, match="deep"):
        wire.encode_tree(_nested(40))
    frames = [bytes(f) for f in wire.encode_tree({"a": np.ones(1000)})]
    with pytest.raises(wire.WireError, match="at most 100 bytes"):
        wire.decode_tree(frames, max_bytes=100)


# --- ops, requests and replies --------------------------------------------------------------


def test_new_ops_validate_their_arguments() -> None:
    req = wire.decode_request(wire.encode_request("set_analysis", token="t", analysis={"i0": {"name": "x", "min": 1}},
                                                  by="ana@bl3"))
    assert isinstance(req.args, wire.SetAnalysisArgs) and req.args.by == "ana@bl3"
    assert wire.OPS["set_analysis"].changes and not wire.OPS["recompute"].changes
    assert wire.OPS["dark"].changes and not wire.OPS["get_dark"].changes
    assert wire.OPS["recompute"].in_flight == 1 and wire.OPS["recompute"].per_s
    for op, args, expect in [
        ("set_analysis", {"analysis": {}}, "set_analysis.by"),
        ("set_analysis", {"analysis": [], "by": "x"}, "set_analysis.analysis"),
        ("recompute", {"now": True}, "recompute.now"),
        ("dark", {"detector": DET, "n": 0}, "dark.n"),
        ("dark", {"detector": DET, "n": 10, "force": "yes"}, "dark.force"),
        ("get_dark", {"detector": DET, "version": 0}, "get_dark.version"),
        ("get_dark", {"detector": "", "version": 1}, "get_dark.detector"),
    ]:
        with pytest.raises(wire.WireError, match=expect):
            wire.encode_request(op, **args)
    crafted = msgpack.packb({"version": 1, "type": "request", "op": "set_analysis", "token": "t",
                             "args": {"analysis": {"i0": msgpack.ExtType(1, b"\0\0\0\0")}, "by": "x"}})
    with pytest.raises(wire.WireError, match="unused array|array"):
        wire.decode_request([crafted])


def test_replies_carry_arrays_within_bounds() -> None:
    mean = np.arange(12, dtype=np.float32).reshape(3, 4)
    reply = Reply(True, None, {"detector": DET, "version": 1, "mean": mean, "std": mean + 1, "n": np.int64(3),
                               "t": (1, 2)})
    frames = wire.encode_reply(reply)
    assert len(frames) == 3  # the header and the two arrays as raw frames
    got = wire.decode_reply([bytes(f) for f in frames])
    assert got.ok and got.data["n"] == 3 and got.data["t"] == [1, 2]
    np.testing.assert_array_equal(got.data["std"], mean + 1)
    assert got.data["mean"].dtype == np.float32
    with pytest.raises(wire.WireError, match="bytes of arrays"):
        wire.encode_reply(Reply(True, None, {"big": np.zeros(wire.MAX_REPLY_BYTES // 8 + 1)}))
    with pytest.raises(wire.WireError, match="bytes of arrays"):
        wire.decode_reply([frames[0], b"\0" * (wire.MAX_REPLY_BYTES + 1)])
    with pytest.raises(wire.WireError, match="unused"):
        wire.decode_reply([msgpack.packb({"version": 1, "type": "reply", "ok": True, "data": {},
                                          "arrays": [{"dtype": "|u1", "shape": [1], "buf": 0}]}), b"\0"])


class _Analysing(Control):
    """test_localfeed's Control with the ops of analysis changes."""

    def set_analysis(self, analysis: dict[str, Any], *, by: str) -> Future[Reply]:
        return self._reply("set_analysis", (analysis, by))

    def recompute(self) -> Future[Reply]:
        return self._reply("recompute", None)

    def dark(self, detector: str, n: int, *, force: bool = False) -> Future[Reply]:
        return self._reply("dark", (detector, n, force))

    def get_dark(self, detector: str, version: int) -> Future[Reply]:
        return self._reply("get_dark", (detector, version))


def test_forward_and_localfeed_dispatch_the_new_ops_and_pass_the_new_messages() -> None:
    control = _Analysing()
    req = wire.decode_request(wire.encode_request("dark", token="t", detector=DET, n=5, force=True))
    assert forward(control, req).result().ok and control.calls[-1] == ("dark", (DET, 5, True))
    feed = LocalFeed(control)
    assert feed.request("set_analysis", analysis={"i0": None}, by="a@b").ok
    assert feed.request("recompute").ok and feed.request("get_dark", detector=DET, version=2).ok
    assert [op for op, _ in control.calls[1:]] == ["set_analysis", "recompute", "get_dark"]
    assert LocalFeed(control, read_only=True).request("recompute").ok  # no token needed
    refused = LocalFeed(control, read_only=True).request("set_analysis", analysis={}, by="x")
    assert not refused.ok and (refused.error or "").startswith("read-only")
    msgs = [analysis_msg(), state_msg(), dark_msg()]
    feed.on_analysis(msgs[0])
    feed.on_state(msgs[1])
    feed.on_dark(msgs[2])
    assert feed.poll(timeout=0) == msgs


def test_localfeed_keeps_analysis_messages_when_its_queue_overflows() -> None:
    feed = LocalFeed(_Analysing(), max_messages=4)
    feed.on_analysis(analysis_msg())
    for _ in range(6):
        feed.on_status(StatusMsg(Status(time=time.time(), source="sim")))
    feed.on_state(state_msg())
    got = feed.poll(timeout=0)
    assert len(got) == 4 and isinstance(got[0], AnalysisMsg) and isinstance(got[-1], StateMsg)


# --- over real sockets ----------------------------------------------------------------------


class _StandInAnalysing(StandIn):
    """test_service's StandIn answering get_dark with arrays and broadcasting the new messages."""

    def set_analysis(self, analysis: dict[str, Any], *, by: str) -> Future[Reply]:
        def work() -> Reply:
            self._emit("on_analysis", analysis_msg())
            self._emit("on_state", state_msg())
            self._emit("on_dark", dark_msg())
            return Reply(True, data={"version": 2, "epoch": 3})
        return self._submit(work)

    def recompute(self) -> Future[Reply]:
        return self._submit(lambda: Reply(True, data={"version": 2, "epoch": 4}))

    def dark(self, detector: str, n: int, *, force: bool = False) -> Future[Reply]:
        return self._submit(lambda: Reply(False, "dark: beam on"))

    def get_dark(self, detector: str, version: int) -> Future[Reply]:
        frame = dark_msg().frame
        return self._submit(lambda: Reply(True, data={"detector": detector, "version": version,
                                                      "mean": frame.mean, "std": frame.std}))


def test_netfeed_gets_the_new_messages_and_array_replies_over_real_sockets() -> None:
    with Running(_StandInAnalysing()), NetFeed() as feed:
        assert feed.hello(timeout=5) is not None
        collect(feed, 3.0, lambda m: any(isinstance(x, StatusMsg) for x in m))  # subscribed
        reply = feed.request("set_analysis", analysis={"i0": {"name": "x", "min": 1}}, by="a@b", timeout=5)
        assert reply.ok and reply.data == {"version": 2, "epoch": 3}
        got = collect(feed, 5.0, lambda m: any(isinstance(x, DarkMsg) for x in m))
        kinds = [type(m) for m in got if isinstance(m, AnalysisMsg | StateMsg | DarkMsg)]
        assert kinds == [AnalysisMsg, StateMsg, DarkMsg] and feed.malformed == 0
        state = next(m for m in got if isinstance(m, StateMsg))
        np.testing.assert_array_equal(state.states["window"]["tags"], [1, 3, 5])
        dark = feed.request("get_dark", detector=DET, version=2, timeout=5)
        assert dark.ok and dark.data["version"] == 2
        np.testing.assert_array_equal(dark.data["mean"], dark_msg().frame.mean)
        assert feed.request("recompute", timeout=5).data["epoch"] == 4
        assert feed.request("dark", detector=DET, n=3, timeout=5).error == "dark: beam on"
