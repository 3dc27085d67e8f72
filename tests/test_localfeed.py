"""LocalFeed: the in-process Feed on a recorder (a bounded queue, no sockets)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future

import synth
from shotwatch.link.localfeed import LocalFeed
from shotwatch.link.messages import BlockMsg, Hello, NoticeMsg, Reply, Status, StatusMsg
from shotwatch.link.protocols import Listener
from shotwatch.schemas import Config, Roi, SourceInfo


class Control:
    """The Control protocol, answering from the test's thread (no recorder behind it)."""

    def __init__(self, *, answer: bool = True) -> None:
        self.listeners: list[Listener] = []
        self.calls: list[tuple[str, object]] = []
        self.answer = answer

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self.listeners.remove(listener)

    def add_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        pass

    def remove_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        pass

    def hello(self, *, publish: str, control: str) -> Hello:
        return Hello(publish=publish, control=control, config=Config(), source=SourceInfo(kind="sim"),
                     rois=[], version="test")

    def _reply(self, op: str, arg: object) -> Future[Reply]:
        self.calls.append((op, arg))
        fut: Future[Reply] = Future()
        if self.answer:
            fut.set_result(Reply(True, data={"op": op}))
        return fut

    def set_roi(self, roi: Roi) -> Future[Reply]:
        return self._reply("set_roi", roi)

    def delete_roi(self, name: str) -> Future[Reply]:
        return self._reply("delete_roi", name)

    def grab(self, detector: str, n: int) -> Future[Reply]:
        return self._reply("grab", (detector, n))

    def mark(self, text: str) -> Future[Reply]:
        return self._reply("mark", text)

    def stop(self) -> Future[Reply]:
        return self._reply("stop", None)

    def pause(self, paused: bool) -> Future[Reply]:
        return self._reply("pause", paused)

    def seek(self, *, seconds: float = 0.0, start: bool = False) -> Future[Reply]:
        return self._reply("seek", (seconds, start))

    def set_speed(self, speed: float) -> Future[Reply]:
        return self._reply("speed", speed)


def status() -> StatusMsg:
    return StatusMsg(Status(time=time.time(), source="sim"))


def test_a_slow_console_drops_whole_old_blocks_and_counts_them() -> None:
    control = Control()
    feed = LocalFeed(control, max_blocks=3)
    blocks = list(synth.stream(1, [5] * 8))
    for seq, block in enumerate(blocks):  # the recorder's thread, while the console is busy
        feed.on_block(BlockMsg(seq, block))
    feed.on_notice(NoticeMsg(0.0, "kept"))
    got = feed.poll(timeout=0.0)
    assert [m.seq for m in got if isinstance(m, BlockMsg)] == [5, 6, 7]  # the newest, whole
    assert feed.skipped == 5 and any(isinstance(m, NoticeMsg) for m in got)
    assert feed.poll(timeout=0.05) == []
    feed.close()
    assert control.listeners == [] and feed.poll(timeout=1.0) == []  # closed: never waits


def test_connected_follows_the_heartbeat() -> None:
    feed = LocalFeed(Control(), heartbeat_timeout=0.2)
    assert feed.connected
    time.sleep(0.3)
    assert not feed.connected  # the acquire thread stopped beating
    feed.on_status(status())
    assert feed.connected and feed.last_hello is None
    assert feed.hello(timeout=1) is feed.last_hello is not None


def test_requests_are_validated_like_the_wire_and_dispatched_typed() -> None:
    control = Control()
    feed = LocalFeed(control)
    assert feed.request("set_roi", roi=Roi(name="a", detector=synth.DET, x=(0, 4), y=(0, 4))).ok
    assert feed.request("seek", start=True).ok and feed.request("speed", speed=2).ok
    assert feed.request("pause", paused=True).ok and feed.request("grab", detector=synth.DET, n=10).ok
    assert [op for op, _ in control.calls] == ["set_roi", "seek", "speed", "pause", "grab"]
    assert control.calls[1][1] == (0.0, True)
    bad = feed.request("grab", detector=synth.DET, n=0)
    assert not bad.ok and "n" in (bad.error or "")
    unknown = feed.request("explode")
    assert not unknown.ok and "expected one of" in (unknown.error or "")
    assert feed.request("list_rois").data == {"rois": []}
    refused = LocalFeed(control, read_only=True).request("mark", text="x")
    assert not refused.ok and (refused.error or "").startswith("read-only")


def test_a_request_the_recorder_never_answers_times_out() -> None:
    feed = LocalFeed(Control(answer=False))
    t = time.monotonic()
    reply = feed.request("mark", text="x", timeout=0.2)
    assert not reply.ok and "timed out" in (reply.error or "") and time.monotonic() - t < 1.0
