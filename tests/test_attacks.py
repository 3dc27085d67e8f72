"""A hostile neighbour against a real `shotwatch record` on loopback (issue 7, items 2 and 3,
and DESIGN.md's rule beyond them: no peer, with or without the token, makes the recorder
lose data).

Each test starts the recorder on the demo simulator at 30 Hz (its own runtime directory, and
for the descriptor attack ``ulimit -n 1024``), attacks for a few seconds with bounded
counts, and checks the outcome: commits keep coming during the attack, the resident memory
of the recorder's process tree stays within +256 MB, a console attached to the PUB socket
keeps receiving data where the attack is on the control socket, the attacker gets a refusal
or nothing, and the recorder then stops cleanly with every committed shot in a closed
recording. Whether the recorder kept the beam's pace is a matter of speed, which tests here
do not judge (a loaded machine would fail them): ``benchmarks/bench_attacks.py`` measures
the shot rate before and during each attack.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
import zmq

import attack
from shotwatch.link import wire
from shotwatch.link.messages import BlockMsg
from shotwatch.link.netfeed import NetFeed
from shotwatch.recording import RecordingReader

pytestmark = [pytest.mark.timeout(180)]

RSS_BUDGET = 256e6  # bytes the recorder's process tree may grow by under attack


def finish(rp: attack.RecorderProc) -> RecordingReader:
    """Stop the recorder (Ctrl-C) and check it closed everything it committed."""
    rc = rp.stop()
    assert rc == 0, rp.err
    lines = rp.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recorded ") and lines[0].endswith(f" shots to {rp.rec}"), rp.out
    reader = RecordingReader(rp.rec)
    assert reader.closed and reader.committed == int(lines[0].split()[1])
    assert "recording stopped" not in rp.err, rp.err
    return reader


def kept_recording(sample: attack.Sample) -> None:
    assert len(sample.commits) >= 3, f"commits during the attack: {sample.commits}"  # at least 2 new ones
    assert sample.rss_peak - sample.rss0 < RSS_BUDGET, sample


class Console:
    """A console's feed attached to the recorder before the attack: blocks it gets, by time."""

    def __init__(self, rp: attack.RecorderProc) -> None:
        self.feed = NetFeed(rp.control, runtime_dir=str(rp.runtime / "shotwatch"))
        assert self.feed.hello(timeout=10) is not None
        self.times: list[float] = []
        self.poll(1.0)

    def poll(self, seconds: float, *, blocks: int | None = None) -> None:
        """Read for ``seconds``, or until ``blocks`` more blocks arrived."""
        end = time.monotonic() + seconds
        want = None if blocks is None else len(self.times) + blocks
        while time.monotonic() < end and (want is None or len(self.times) < want):
            for msg in self.feed.poll(timeout=0.05):
                if isinstance(msg, BlockMsg):
                    self.times.append(time.monotonic())

    def between(self, t0: float, t1: float) -> int:
        return sum(t0 <= t < t1 for t in self.times)

    def close(self) -> None:
        self.feed.close()


def _still_open(held: list[socket.socket]) -> int:
    """How many of the attacker's connections the recorder's side has not closed."""
    alive = 0
    for s in held:
        s.setblocking(False)
        try:
            while s.recv(1 << 16):  # the greeting it got before being shut, if any
                pass
        except BlockingIOError:
            alive += 1  # nothing more to read, and no end: open
        except OSError:
            pass
        s.close()
    return alive


def test_descriptor_exhaustion_costs_the_writer_nothing(tmp_path: Path) -> None:
    """Item 2: ~1,100 idle connections to the control port under `ulimit -n 1024`."""
    from shotwatch.recorder.service import MAX_CONNECTIONS

    with attack.recorder(tmp_path, nofile=1024) as rp:
        console = Console(rp)

        def hold() -> tuple[int, int, bool]:
            held = attack.hold(rp.control, 1100, handshake=attack.greeting(b"DEALER"))
            held += attack.hold(rp.control, 100)  # and some that never speak ZMTP
            console.poll(3.0)
            with NetFeed(rp.control, runtime_dir=str(rp.runtime / "shotwatch")) as late:
                refused = late.hello(timeout=1.0) is None  # the budget is full: nothing for a newcomer
            return len(held), _still_open(held), refused

        t0 = time.monotonic()
        sample = rp.watch(6.0, hold)
        t1 = time.monotonic()
        opened, still_open, refused = sample.result
        kept_recording(sample)
        assert still_open <= MAX_CONNECTIONS, (opened, still_open)
        assert refused
        assert console.between(t0, t1) >= 10  # live data kept flowing (blocks go out every 0.25 s)
        with NetFeed(rp.control, runtime_dir=str(rp.runtime / "shotwatch")) as after:
            assert after.hello(timeout=10) is not None  # the attacker let go: served again
        console.close()
    finish(rp)


@pytest.mark.parametrize("port", ["control", "publish"])
def test_endless_multipart_message_is_bounded(tmp_path: Path, port: str) -> None:
    """Item 3: frames all flagged 'more', as fast as loopback takes them, for 3 s."""
    with attack.recorder(tmp_path) as rp:
        console = Console(rp)
        # parts as big as each socket takes (a PUB takes subscriptions: 1 KiB at most)
        endpoint, frame, kind = (rp.control, 60_000, b"DEALER") if port == "control" else (rp.publish, 1000, b"SUB")
        t0 = time.monotonic()
        sample = rp.watch(5.0, lambda: (attack.endless_multipart(endpoint, 3.0, frame, as_type=kind),
                                        console.poll(0.1)))
        t1 = time.monotonic()
        kept_recording(sample)
        console.poll(15.0, blocks=5)  # a replaced publish process: consoles reconnect by themselves
        if port == "control":
            assert console.between(t0, t1) >= 10  # live data never stopped
        assert console.between(t1, time.monotonic()) >= 5
        with NetFeed(rp.control, runtime_dir=str(rp.runtime / "shotwatch")) as after:
            assert after.hello(timeout=10) is not None
        console.close()
    finish(rp)
    # the attack did what it did before (grew the process that took it), and no more
    assert f"network process ({port}) restarted: it grew by" in rp.err, f"{sample.result[0] / 1e6:.0f} MB sent"


def test_huge_frame_on_pub_port_is_refused(tmp_path: Path) -> None:
    """Item 3: a peer of the PUB port declares a 1.5 GiB frame and streams it."""
    with attack.recorder(tmp_path) as rp:
        sample = rp.watch(5.0, lambda: attack.huge_frame(rp.publish, 3.0))
        kept_recording(sample)
    finish(rp)
    assert "restarted" not in rp.err  # refused at the frame's header: nothing to grow


def _blast(rp: attack.RecorderProc, seconds: float, make: Any, most: int = 3000) -> dict[str, int]:
    """A token holder pipelining requests as fast as it can (``most`` of them); replies by outcome."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(rp.control)
    sent, replies = 0, []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end and sent < most:
            for _ in range(50):
                sock.send_multipart([b"", make(sent)])
                sent += 1
            while sock.poll(0):
                replies.append(wire.decode_reply(sock.recv_multipart()[1:]))
        while sock.poll(3000) and len(replies) < sent:
            replies.append(wire.decode_reply(sock.recv_multipart()[1:]))
    finally:
        sock.close(0)
        ctx.term()
    out = {"sent": sent, "ok": sum(r.ok for r in replies), "replies": len(replies)}
    out["refused"] = sum("refused: more than" in (r.error or "") or "busy" in (r.error or "") for r in replies)
    return out


def test_flood_of_token_requests_costs_the_writer_nothing(tmp_path: Path) -> None:
    """Marks rewrite the root attributes, ROI versions grow the table, grabs hold frame sums."""
    with attack.recorder(tmp_path) as rp:
        token = rp.runfile["token"]
        det = "MPCCD-1N0-M06-004"
        floods = {
            "mark": lambda i: wire.encode_request("mark", token=token, timeout=1.0, text=f"flood {i}")[0],
            "set_roi": lambda i: wire.encode_request("set_roi", token=token, timeout=1.0, name="bragg", detector=det,
                                                     x=[100 + i % 50, 140 + i % 50], y=[284, 316])[0],
            "grab": lambda i: wire.encode_request("grab", token=token, timeout=1.0, detector=det, n=10_000)[0],
        }
        got: dict[str, dict[str, int]] = {}

        def flood() -> None:
            for op, make in floods.items():
                got[op] = _blast(rp, 1.0, make)

        sample = rp.watch(5.0, flood)
        kept_recording(sample)
    reader = finish(rp)
    seconds = 1.0 + 3  # a flood, and the replies it waited for
    for op, out in got.items():
        spec = wire.OPS[op]
        assert out["replies"] == out["sent"] > 500, (op, out)  # every request was answered
        assert spec.per_s is not None
        allowed = spec.burst + spec.per_s * seconds
        assert out["ok"] <= allowed and out["refused"] >= out["sent"] - allowed, (op, out)
    assert len(reader.marks) <= wire.OPS["mark"].burst + 0.5 * seconds
    versions = [v for v in reader.rois.all() if v.name == "bragg"]
    assert 2 <= len(versions) <= 1 + wire.OPS["set_roi"].burst + 5 * seconds
    assert got["grab"]["ok"] <= wire.OPS["grab"].in_flight  # each holds a frame sum until done
