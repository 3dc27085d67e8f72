"""Service + NetFeed over real ZeroMQ sockets on 127.0.0.1, with a recorder in a thread.

Most tests run twice: against the real :class:`~shotwatch.recorder.acquire.Recorder` on the
simulator (no recording), and against :class:`StandIn`, a small object with the same request
methods, listener hooks and ``hello`` that publishes synthetic blocks (it can also hang
or publish as fast as the wire allows, which the real one cannot be told to do).
"""

from __future__ import annotations

import json
import os
import queue
import random
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

import synth
from shotwatch.link import runfile as rf
from shotwatch.link import wire
from shotwatch.link.messages import (
    BlockMsg,
    Hello,
    ImageMsg,
    Message,
    NoticeMsg,
    Reply,
    RoisMsg,
    Status,
    StatusMsg,
)
from shotwatch.link.netfeed import NetFeed
from shotwatch.link.wire import READ_ONLY_ERROR
from shotwatch.recorder.netchild import listen
from shotwatch.recorder.service import Service
from shotwatch.schemas import Config, Roi, RoiTable, UsageError, load_config
from shotwatch.schemas.source_info import DetectorInfo, SourceInfo

DET = synth.DET


class StandIn:
    """The Recorder's seams (requests → futures, listeners, hello) over synthetic blocks."""

    def __init__(self, *, period: float = 0.05, n: int = 20, hang: bool = False) -> None:
        self.listeners: list[Any] = []
        self.counters: list[Callable[[], Mapping[str, int]]] = []
        self.config = Config()
        self.info = SourceInfo(kind="sim", run=1, detectors={DET: DetectorInfo(shape=(64, 32), dtype="float32", ev_per_adu=3.65)})
        self.rois = RoiTable()
        self.rois.set(Roi(name="roi", detector=DET, x=(0, 8), y=(0, 8)), shot=0, tag=1_000_000)
        self.period, self.n, self.hang = period, n, hang
        self.seq = -1
        self.blocks_sent = 0
        self.last_status: Status | None = None
        self._requests: queue.Queue[tuple[Callable[[], Reply | None], Future[Reply]]] = queue.Queue()
        self._grabs: list[tuple[int, Future[Reply]]] = []
        self._stopping = threading.Event()

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener: Any) -> None:
        self.listeners.remove(listener)

    def add_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        self.counters.append(counters)

    def remove_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        self.counters.remove(counters)

    def set_roi(self, roi: Roi) -> Future[Reply]:
        return self._submit(lambda: self._set(roi))

    def delete_roi(self, name: str) -> Future[Reply]:
        return self._submit(lambda: Reply(self.rois.delete(name, shot=0) is not None, None))

    def mark(self, text: str) -> Future[Reply]:
        return self._submit(lambda: Reply(True, data={"mark": {"text": text}}))

    def grab(self, detector: str, n: int) -> Future[Reply]:
        fut: Future[Reply] = Future()
        self._grabs.append((n, fut))
        return fut

    def stop(self) -> Future[Reply]:
        self._stopping.set()
        fut: Future[Reply] = Future()
        fut.set_result(Reply(True))
        return fut

    def hello(self, *, publish: str, control: str) -> Hello:
        return Hello(publish=publish, control=control, config=self.config, source=self.info,
                     rois=self.rois.all(), version="test")

    def _submit(self, work: Callable[[], Reply | None]) -> Future[Reply]:
        fut: Future[Reply] = Future()
        if not self.hang:
            self._requests.put((work, fut))
        return fut

    def _set(self, roi: Roi) -> Reply:
        version = self.rois.set(roi, shot=0, tag=0)
        self._emit("on_rois", RoisMsg(tuple(self.rois.all())))
        return Reply(True, data={"changed": version is not None})

    def run(self, *, seconds: float | None = None) -> None:
        # a pool of blocks, cycled: the stand-in's own cost stays small next to publishing
        pool = [b.with_(frames={}) for b in synth.stream(1, [self.n] * 8)]
        t_status = 0.0
        end = time.monotonic() + (seconds or 1e9)
        while not self._stopping.is_set() and time.monotonic() < end:
            while not self._requests.empty():
                work, fut = self._requests.get()
                fut.set_result(work() or Reply(True))
            self.seq += 1
            self._emit("on_block", BlockMsg(self.seq, pool[self.seq % len(pool)]))
            self.blocks_sent += 1
            self._grab_tick()
            if time.monotonic() - t_status > 0.3:
                t_status = time.monotonic()
                counters = {k: n for more in self.counters for k, n in more().items()}
                self.last_status = Status(time=time.time(), source="sim", seq=self.seq, counters=counters)
                self._emit("on_status", StatusMsg(self.last_status))
            if self.period:
                time.sleep(self.period)

    def _grab_tick(self) -> None:
        for n, fut in list(self._grabs):
            self._grabs.remove((n, fut))
            self._emit("on_image", ImageMsg(DET, np.ones((64, 32), np.float32), n, "grab"))
            fut.set_result(Reply(True, data={"detector": DET, "count": n}))

    def _emit(self, hook: str, msg: Any) -> None:
        for listener in list(self.listeners):
            getattr(listener, hook)(msg)


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path / "shotwatch"


def real_recorder(rate: float = 60.0) -> Any:
    """The real Recorder on the demo configuration's simulator, not recording."""
    from shotwatch.recorder.acquire import Recorder

    config = load_config(None)
    config = config.model_copy(update={"source": config.source.model_copy(update={"rate": rate})})
    return Recorder(config, record=False)


def make(kind: str, **kwargs: Any) -> Any:
    return real_recorder(**kwargs) if kind == "real" else StandIn(**kwargs)


class Running:
    """A recorder running in a thread behind a Service."""

    def __init__(self, recorder: Any, **service_args: Any) -> None:
        self.recorder = recorder
        self.service = Service(recorder, **{"publish": "auto", "control": "auto", **service_args})
        self.thread = threading.Thread(target=recorder.run, daemon=True)

    def __enter__(self) -> Running:
        self.service.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.recorder.stop()
        self.thread.join(5)
        self.service.close()


@pytest.fixture(params=["real", "standin"])
def running(request: pytest.FixtureRequest) -> Iterator[Running]:
    with Running(make(request.param)) as r:
        yield r


def collect(feed: NetFeed, seconds: float, until: Callable[[list[Message]], bool] | None = None) -> list[Message]:
    out: list[Message] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out += feed.poll(timeout=0.05)
        if until is not None and until(out):
            break
    return out


# --- run file ------------------------------------------------------------------------------


def test_runfile_modes_and_discovery(runtime_dir: Path) -> None:
    a = rf.write_runfile(control="tcp://127.0.0.1:1", publish="tcp://127.0.0.1:2", token=rf.new_token())
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
    assert a.path is not None and stat.S_IMODE(a.path.stat().st_mode) == 0o600
    assert rf.read_runfile(a.path) == a
    time.sleep(0.01)
    b = rf.write_runfile(control="tcp://127.0.0.1:3", publish="tcp://127.0.0.1:4", token=rf.new_token())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = runtime_dir / "recorder-stale.json"
    stale.write_text(a.path.read_text().replace(f'"pid": {os.getpid()}', f'"pid": {int(dead.stdout)}')
                     .replace('"started": ', '"started": 1'))  # newest, but its recorder is gone
    (runtime_dir / "recorder-junk.json").write_text("{not json")
    assert rf.find_runfile() == b
    assert not stale.exists()  # cleaned
    assert rf.runfile_for("tcp://127.0.0.1:1") == a
    rf.remove_runfile(b.path)
    rf.remove_runfile(b.path)  # twice is fine
    assert rf.find_runfile() == a
    assert a.token != b.token and len(a.token) == 32


def test_stale_runfile_whose_pid_was_reused_is_not_alive(runtime_dir: Path) -> None:
    """Issue 7, item 7: a recorder crashed and its pid went to another process: not alive."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = rf.write_runfile(control="tcp://127.0.0.1:1", publish="tcp://127.0.0.1:2", token=rf.new_token())
        assert mine.path is not None and rf.find_runfile() == mine
        data = json.loads(mine.path.read_text())
        data["pid"] = other.pid  # a live process, but not the one that wrote the file
        stale = runtime_dir / "recorder-reused.json"
        stale.write_text(json.dumps(data))
        rf.remove_runfile(mine.path)
        assert rf.runfile_for("tcp://127.0.0.1:1") is None
        assert rf.find_runfile() is None and not stale.exists()  # ignored and cleaned
        assert mine.pid_start == rf.process_start(os.getpid()) is not None
        data["pid_start"] = None  # a run file of an older version: the pid is all there is
        stale.write_text(json.dumps(data))
        assert rf.find_runfile() is not None
    finally:
        other.kill()
        other.wait()


def test_runtime_dir_refuses_foreign_link(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RuntimeError, match="expected a directory owned"):
        rf.runtime_dir(tmp_path / "link")


def test_service_writes_and_removes_runfile(runtime_dir: Path) -> None:
    with Service(StandIn(), publish="auto", control="auto") as service:
        found = rf.find_runfile()
        assert found is not None and found.token == service.token
        assert (found.control, found.publish) == (service.addresses["control"], service.addresses["publish"])
        service.on_status(StatusMsg(Status(time=0, source="sim", recording="/data/r1.zarr")))
        assert rf.find_runfile().recording == "/data/r1.zarr"  # type: ignore[union-attr]
    assert rf.find_runfile() is None


def test_default_port_taken_gives_a_free_one() -> None:
    holder, port_address = listen("auto", "", "publish")
    try:
        sock, got = listen(None, port_address, "publish")
        sock.close()
        assert got.startswith("tcp://127.0.0.1:") and got != port_address
        with pytest.raises(UsageError, match="publish address"):
            listen(port_address, "", "publish")
        with pytest.raises(UsageError, match="expected a free address of the form tcp://HOST:PORT, found"):
            listen("udp://127.0.0.1:1", "", "publish")
        sock, got = listen("tcp://localhost:*", "", "control")
        sock.close()
        assert got.startswith("tcp://127.0.0.1:")
    finally:
        holder.close()


# --- control ------------------------------------------------------------------------------


def test_hello_and_tokens(running: Running) -> None:
    with NetFeed() as owner, NetFeed(read_only=True) as watcher:
        hello = owner.hello(timeout=2)
        assert hello is not None and hello.publish == running.service.addresses["publish"]
        assert hello.rois and hello.source.kind == "sim" and DET in hello.source.detectors
        assert not owner.read_only and watcher.read_only
        roi = Roi(name="bg", detector=DET, x=(10, 20), y=(0, 5))
        refused = watcher.request("set_roi", roi=roi)
        assert not refused.ok and refused.error == READ_ONLY_ERROR
        assert watcher.request("list_rois").ok  # listing needs no token
        assert owner.request("set_roi", roi=roi).ok
        assert "bg" in {v["name"] for v in watcher.request("list_rois").data["rois"]}
        assert owner.request("mark", text="sample changed").data["mark"]["text"] == "sample changed"
        assert owner.request("delete_roi", name="bg").ok
        bad = owner.request("grab", detector=DET, n=0)
        assert not bad.ok and "grab.n" in (bad.error or "")
    assert running.service.counters == {"refused requests (no token)": 1}


def test_grab_and_broadcast_to_two_clients(running: Running) -> None:
    with NetFeed() as a, NetFeed() as b:
        assert a.hello(timeout=2) and b.hello(timeout=2)
        collect(a, 1.0, lambda m: a.connected)
        collect(b, 1.0, lambda m: b.connected)
        reply = a.request("grab", detector=DET, n=10, timeout=3)
        assert reply.ok and reply.data["count"] == 10
        assert a.request("set_roi", name="new", detector=DET, x=[1, 3], y=[1, 3]).ok
        def done(got: list[Message]) -> bool:
            return (any(isinstance(m, ImageMsg) and m.kind == "grab" for m in got)
                    and any(isinstance(m, RoisMsg) for m in got)
                    and len({m.seq for m in got if isinstance(m, BlockMsg)}) >= 6)

        got_a = collect(a, 3.0, done)
        got_b = collect(b, 3.0, done)
    for got in (got_a, got_b):
        assert any(isinstance(m, ImageMsg) and m.kind == "grab" and m.count == 10 for m in got)
        assert any(isinstance(m, RoisMsg) and "new" in {v.name for v in m.versions} for m in got)
    seq_a = {m.seq for m in got_a if isinstance(m, BlockMsg)}
    seq_b = {m.seq for m in got_b if isinstance(m, BlockMsg)}
    assert len(seq_a & seq_b) >= 5  # both saw the same blocks
    same = next(iter(seq_a & seq_b))
    block_a = next(m.block for m in got_a if isinstance(m, BlockMsg) and m.seq == same)
    block_b = next(m.block for m in got_b if isinstance(m, BlockMsg) and m.seq == same)
    np.testing.assert_array_equal(block_a.tags, block_b.tags)


def test_stop_request_stops_the_recorder(running: Running) -> None:
    with NetFeed() as feed:
        assert feed.request("stop").ok
    running.thread.join(2)
    assert not running.thread.is_alive()


def test_request_timeout_keeps_recorder_running() -> None:
    with Running(StandIn(hang=True), request_timeout=0.3) as r, NetFeed() as feed:
        t0 = time.monotonic()
        reply = feed.request("mark", text="x", timeout=2)
        assert not reply.ok and "timed out after 0.3 s" in (reply.error or "")
        assert time.monotonic() - t0 < 1.5
        assert feed.request("list_rois").ok  # the control socket still answers
        before = r.recorder.blocks_sent
        time.sleep(0.2)
        assert r.recorder.blocks_sent > before
        assert r.service.counters["request timeouts"] == 1


def test_malformed_requests_are_answered_and_counted(running: Running) -> None:
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.setsockopt(zmq.RCVTIMEO, 2000)
    req.connect(running.service.addresses["control"])
    try:
        for frames in ([b"garbage"], [b"a", b"b"], [wire.encode_request("hello")[0][:-2]]):
            req.send_multipart(frames)
            reply = wire.decode_reply(req.recv_multipart())
            assert not reply.ok and (reply.error or "").startswith("malformed request: ")
    finally:
        req.close(0)
    assert running.service.counters["malformed requests"] == 3
    with NetFeed() as feed:  # the recorder's heartbeat carries them to every console
        got = collect(feed, 3.0, lambda m: any(isinstance(x, StatusMsg) for x in m))
        status = next(m.status for m in got if isinstance(m, StatusMsg))
        assert status.counters["malformed requests"] == 3


def test_no_recorder_no_hang(runtime_dir: Path) -> None:
    with NetFeed() as feed:
        t0 = time.monotonic()
        assert feed.hello(timeout=0.2) is None
        assert feed.request("mark", text="x").error.startswith("mark: no running recorder found")  # type: ignore[union-attr]
        assert feed.poll(timeout=0.1) == [] and not feed.connected
        assert time.monotonic() - t0 < 1
    with NetFeed("tcp://127.0.0.1:9") as feed:  # nobody there
        reply = feed.request("list_rois", timeout=0.2)
        assert not reply.ok and "did not answer within 0.2 s" in (reply.error or "")
        assert feed.read_only


# --- data ----------------------------------------------------------------------------------


def _publish_rate(recorder: StandIn, seconds: float) -> float:
    t0, sent0 = time.monotonic(), recorder.blocks_sent
    time.sleep(seconds)
    return (recorder.blocks_sent - sent0) / (time.monotonic() - t0)


def test_slow_client_skips_and_recorder_is_not_slowed() -> None:
    fast = StandIn(period=0, n=200)
    with Running(fast, sndhwm=8), NetFeed(max_blocks=4, rcvhwm=4) as slow, NetFeed() as stalled:
        alone = _publish_rate(fast, 0.5)
        assert slow.hello(timeout=2) and stalled.hello(timeout=2)
        stalled.poll(timeout=0.5)  # subscribed, then never reads again
        t0, sent0 = time.monotonic(), fast.blocks_sent
        got: list[Message] = []
        for _ in range(4):
            time.sleep(0.25)  # a console busy painting
            got += slow.poll(timeout=0.1)
        watched = (fast.blocks_sent - sent0) / (time.monotonic() - t0)
        blocks = [m for m in got if isinstance(m, BlockMsg)]
        assert blocks and slow.skipped > 0
        seqs = [m.seq for m in blocks]
        assert seqs == sorted(seqs)
        assert slow.skipped >= seqs[-1] - seqs[0] + 1 - len(seqs)  # every missing block counted
        assert slow.counts["drained"] + slow.counts["gaps"] == slow.skipped
    print(f"publish rate: {alone:.0f} blocks/s alone, {watched:.0f} with a slow and a stalled console")
    # a blocking PUB would stall at the stalled console's queue (8 + 4 messages)
    assert watched > 0.3 * alone, f"recorder slowed from {alone:.0f} to {watched:.0f} blocks/s"


def test_stalled_console_does_not_slow_the_real_recorder() -> None:
    recorder = real_recorder(rate=0)
    with Running(recorder, sndhwm=4) as r, NetFeed(max_blocks=1) as slow, NetFeed(rcvhwm=2) as stalled:
        assert slow.hello(timeout=5) and stalled.hello(timeout=5)
        collect(stalled, 2.0, lambda m: any(isinstance(x, BlockMsg) for x in m))  # then never again
        got = collect(slow, 2.0, lambda m: any(isinstance(x, BlockMsg) for x in m))
        shots0, t0 = recorder.health.shots, time.monotonic()
        time.sleep(1.5)
        got += slow.poll(timeout=0.5)  # several blocks waited: keeps the newest, counts the rest
        rate = (recorder.health.shots - shots0) / (time.monotonic() - t0)
        assert slow.skipped >= 1 and slow.counts["drained"] >= 1
        seqs = [m.seq for m in got if isinstance(m, BlockMsg)]
        assert seqs[-1] - seqs[0] + 1 <= len(seqs) + slow.skipped  # every block seen or counted
        assert r.thread.is_alive()
    print(f"real recorder at rate=0: {rate:.0f} shots/s with a stalled console")
    assert rate > 1000


@pytest.mark.parametrize("kind", ["real", "standin"])
def test_recorder_gone_and_back(kind: str) -> None:
    heartbeat = 3.0 if kind == "standin" else 1.0  # the default once; shorter to keep tests fast
    with NetFeed(heartbeat_timeout=heartbeat) as feed:
        with Running(make(kind)):
            collect(feed, 3.0, lambda m: feed.connected and any(isinstance(x, BlockMsg) for x in m))
            assert feed.connected
            t0 = time.monotonic()  # the heartbeat stops here (closing the service takes a moment more)
        collect(feed, 5.0, lambda m: not feed.connected)
        assert not feed.connected and heartbeat - 0.5 < time.monotonic() - t0 < heartbeat + 1.5
        with Running(make(kind)):  # a new recorder: new ports, new run file
            got = collect(feed, 4.0, lambda m: any(isinstance(x, BlockMsg) for x in m) and feed.connected)
            assert feed.connected
            assert any(isinstance(m, NoticeMsg) and "connected" in m.text for m in got)
            assert any(isinstance(m, RoisMsg) for m in got)
            assert feed.counts["reconnects"] == 1
            assert feed.request("mark", text="again").ok  # the new token was picked up


def _free_addresses() -> dict[str, str]:
    """Two ports that were free a moment ago (another process may take one: callers retry).

    Below Linux's ephemeral range (32768-60999): while nothing listens there, a client that
    keeps reconnecting to an ephemeral port may be given that very port as its own and connect
    to itself, and the port is then taken.
    """
    # plain sockets: their close is synchronous (a zmq socket's unbind happens later, on its
    # I/O thread, and the port was then still taken when the test bound it)
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < 2:
        port = rng.randrange(20000, 32000)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return {"publish": f"tcp://127.0.0.1:{ports[0]}", "control": f"tcp://127.0.0.1:{ports[1]}"}


def test_recorder_back_at_the_same_address() -> None:
    for _ in range(5):
        addresses = _free_addresses()
        try:
            with Running(StandIn(), **addresses):
                break  # the ports are ours; released again at once for the test proper
        except UsageError:
            continue
    with NetFeed(addresses["control"], heartbeat_timeout=1.0) as feed:
        with Running(StandIn(), **addresses):
            collect(feed, 3.0, lambda m: feed.connected and any(isinstance(x, BlockMsg) for x in m))
            assert feed.connected and not feed.read_only  # token found in the run file for that address
        collect(feed, 5.0, lambda m: not feed.connected)
        assert not feed.connected
        with Running(StandIn(), **addresses) as again:
            got = collect(feed, 4.0, lambda m: feed.connected and any(isinstance(x, BlockMsg) for x in m))
            assert feed.connected and any(isinstance(m, BlockMsg) for m in got)
            assert feed.token == again.service.token  # a new recorder, a new token
            assert feed.request("mark", text="back").ok


def test_killed_recorder_process(runtime_dir: Path, tmp_path: Path) -> None:
    script = (
        "import sys, time; sys.path.insert(0, 'tests');\n"
        "from test_service import real_recorder\n"
        "from shotwatch.recorder.service import Service\n"
        "r = real_recorder()\n"
        "r.open()\n"
        "with Service(r, publish='auto', control='auto'):\n"
        "    print('up', flush=True); r.run(seconds=30)\n"
    )
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir.parent)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[1])
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        with NetFeed(heartbeat_timeout=1.0) as feed:
            collect(feed, 5.0, lambda m: feed.connected and any(isinstance(x, BlockMsg) for x in m))
            assert feed.connected and not feed.read_only
            proc.kill()
            proc.wait()
            collect(feed, 5.0, lambda m: not feed.connected)
            assert not feed.connected
            assert rf.find_runfile() is None  # the dead recorder's run file is ignored and cleaned
    finally:
        proc.kill()
        proc.wait()


# --- the network processes ----------------------------------------------------------------


def test_every_op_is_one_table_entry_and_reaches_one_control_method() -> None:
    """wire.OPS lists every op; each one not answered locally reaches its Control method."""
    from shotwatch.link.control import forward

    examples: dict[str, dict[str, Any]] = {
        "set_roi": {"name": "r", "detector": DET, "x": [0, 4], "y": [0, 4]}, "delete_roi": {"name": "r"},
        "grab": {"detector": DET, "n": 2}, "mark": {"text": "m"}, "stop": {}, "pause": {"paused": True},
        "seek": {"seconds": 1.0}, "speed": {"speed": 2.0},
        "set_analysis": {"analysis": {}, "by": "a@b"}, "recompute": {}, "dark": {"detector": DET, "n": 2},
        "get_dark": {"detector": DET, "version": 1},
    }
    assert set(wire.OPS) >= {"hello", "list_rois", *examples}
    assert wire.CHANGING_OPS == {name for name, op in wire.OPS.items() if op.changes}
    reached: list[str] = []

    class Spy:
        def __getattr__(self, method: str) -> Any:
            def call(*args: Any, **kwargs: Any) -> Future[Reply]:
                reached.append(method)
                done: Future[Reply] = Future()
                done.set_result(Reply(True))
                return done
            return call

    for name, op in wire.OPS.items():
        assert op.per_s is None or (op.per_s > 0 and op.burst >= 1), name
        if op.local:
            assert not op.changes, name
            continue
        req = wire.decode_request(wire.encode_request(name, token="t", **examples[name]))
        reached.clear()
        assert forward(Spy(), req).result().ok  # type: ignore[arg-type]
        assert len(reached) == 1, (name, reached)


class Counting(StandIn):
    """A stand-in that counts hello snapshots and never finishes a grab."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.snapshots = 0

    def hello(self, *, publish: str, control: str) -> Hello:
        self.snapshots += 1
        return super().hello(publish=publish, control=control)

    def grab(self, detector: str, n: int) -> Future[Reply]:
        return Future()  # the frames never come


def _pipeline(address: str, frames: list[bytes], count: int) -> list[Reply]:
    """Send ``count`` requests without waiting, then collect every reply."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    try:
        for i in range(count):
            sock.send_multipart([b"", frames[i % len(frames)]])
        replies = []
        while len(replies) < count and sock.poll(5000):
            replies.append(wire.decode_reply(sock.recv_multipart()[1:]))
        return replies
    finally:
        sock.close(0)


def test_flood_of_hellos_costs_the_recorder_one_snapshot_a_second() -> None:
    """Anyone may ask hello and list_rois: their answers come from the control process's cache."""
    recorder = Counting()
    with Running(recorder) as r:
        frames = [wire.encode_request("hello")[0], wire.encode_request("list_rois")[0]]
        t0 = time.monotonic()
        replies = _pipeline(r.service.addresses["control"], frames, 3000)
        took = time.monotonic() - t0
    assert len(replies) == 3000 and all(rep.ok for rep in replies)
    # one snapshot per cached op and second (and one for each refresh after a change)
    assert recorder.snapshots <= 2 * (took + 2), (recorder.snapshots, took)


def test_grabs_held_by_the_recorder_are_bounded() -> None:
    """A grab holds a frame-sized sum until its frames came: at most two at a time, even timed out."""
    recorder = Counting()
    with Running(recorder, request_timeout=0.3) as r, NetFeed() as feed:
        replies = [feed.request("grab", detector=DET, n=100, timeout=2.0) for _ in range(4)]
        assert [rep.ok for rep in replies] == [False] * 4
        timed_out = [rep for rep in replies if "timed out" in (rep.error or "")]
        busy = [rep for rep in replies if "recorder busy (2 grab" in (rep.error or "")]
        assert len(timed_out) == 2 and len(busy) == 2, replies
        limited = feed.request("grab", detector=DET, n=100)
        assert "refused: more than 4 at once or 1 per second; try again in" in (limited.error or "")
        time.sleep(1.2)
        again = feed.request("grab", detector=DET, n=100)  # the rate allows one, the recorder holds two
        assert "recorder busy (2 grab" in (again.error or ""), again
        counters = r.service.counters
    assert counters["rate-limited requests"] == 1 and counters["busy replies"] == 3
    assert counters["request timeouts"] == 2


def test_roi_versions_per_recording_are_bounded() -> None:
    from shotwatch.recorder.control import MAX_ROI_VERSIONS

    recorder = StandIn()
    for i in range(MAX_ROI_VERSIONS - 1):
        recorder.rois.set(Roi(name="roi", detector=DET, x=(0, 2 + i % 5), y=(0, 8)), shot=i + 1, tag=i + 1)
    assert len(recorder.rois.all()) == MAX_ROI_VERSIONS
    with Running(recorder) as r:
        token = r.service.token
        reply = _pipeline(r.service.addresses["control"], [wire.encode_request(
            "set_roi", token=token, name="roi", detector=DET, x=[0, 9], y=[0, 8])[0]], 1)[0]
        assert not reply.ok and reply.error == (f"ROI 'roi': expected at most {MAX_ROI_VERSIONS} ROI versions in one "
                                                f"recording, found {MAX_ROI_VERSIONS}; start a new recording")
        active = next(v.roi for v in recorder.rois.all() if v.name == "roi" and v.end_shot is None)
        same = _pipeline(r.service.addresses["control"], [wire.encode_request(
            "set_roi", token=token, **active.model_dump(mode="json"))[0]], 1)[0]
        assert same.ok  # setting what is there is no new version


@pytest.mark.parametrize("role", ["pub", "ctl"])
def test_network_process_replaced_when_it_dies(role: str) -> None:
    """Killed (as the watchdog kills one that grew too big): replaced, same addresses, data flow again."""
    with Running(StandIn()) as r, NetFeed(heartbeat_timeout=1.0) as feed:
        assert feed.hello(timeout=5) is not None
        collect(feed, 3.0, lambda m: any(isinstance(x, BlockMsg) for x in m))
        child = r.service._children[role]
        assert child.proc is not None
        old = child.proc.pid
        os.kill(old, 9)
        t0 = time.monotonic()
        while (child.proc is None or child.proc.pid == old) and time.monotonic() - t0 < 20:
            time.sleep(0.05)
        assert child.proc is not None and child.proc.pid != old
        got = collect(feed, 10.0, lambda m: sum(isinstance(x, BlockMsg) for x in m) >= 3)
        assert sum(isinstance(m, BlockMsg) for m in got) >= 3
        assert feed.request("mark", text="still here", timeout=5.0).ok
        assert r.service.counters["network process restarts"] == 1
        assert r.thread.is_alive()
