"""The console's side of the wire: :class:`NetFeed`, a :class:`~.messages.Feed` over ZeroMQ.

It finds the recorder (an address, or the newest live run file), says hello over REQ, and
subscribes to the recorder's PUB. ``poll`` drains everything that arrived and keeps only the
newest blocks (a slow console skips whole blocks and counts them, by sequence number too);
garbage on the wire is counted and dropped, never raised. When the heartbeat stops for
3 s, ``connected`` turns false and the feed keeps probing (same address, or a newer run
file) until a recorder answers, then resubscribes and hands the console a fresh ROI table.

Threads: ``poll`` (and ``close``) from one thread, the console's worker; ``hello`` and
``request`` from any thread (the REQ socket is behind a lock).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import zmq
from pydantic import ValidationError

from . import runfile as rf
from . import wire
from .messages import BlockMsg, Hello, Message, NoticeMsg, Reply, RoisMsg, StatusMsg
from .protocols import Feed
from .wire import DEFAULT_CONTROL, STARTING_ERROR

__all__ = ["NetFeed"]

log = logging.getLogger("shotwatch.link.netfeed")

HEARTBEAT_TIMEOUT = 3.0  # s without a status before ``connected`` is false
PROBE_EVERY = 1.0  # s between hellos while disconnected
PROBE_TIMEOUT = 2.0  # s a probing hello may take
MAX_DRAIN = 10_000  # messages per poll, so a firehose cannot keep poll from returning


class NetFeed:
    """A console's feed from a live recorder.

    Args:
        control: the recorder's control address; None = the newest live run file
            (then also follows a restarted recorder to its new run file).
        read_only: never send the token (requests that change anything are refused).
        token: the control token, when it does not come from a run file.
        max_blocks: newest blocks kept per poll; older ones are dropped and counted.
        rcvhwm: messages the SUB socket queues (small: a slow console skips, not lags).
        topics: topics to subscribe to (default all of ``wire.TOPICS``).
        runtime_dir: run-file directory (default: the user's runtime directory).
        heartbeat_timeout: seconds without a status before ``connected`` turns false.
    """

    def __init__(self, control: str | None = None, *, read_only: bool = False, token: str | None = None,
                 max_blocks: int = 16, rcvhwm: int = 32, topics: tuple[str, ...] = wire.TOPICS,
                 runtime_dir: str | None = None, heartbeat_timeout: float = HEARTBEAT_TIMEOUT) -> None:
        self._follow_runfile = control is None
        self._runtime_dir = runtime_dir
        self._explicit_token = token
        self._read_only_wanted = read_only
        self._max_blocks = max_blocks
        self._heartbeat_timeout = heartbeat_timeout
        self._rcvhwm = rcvhwm
        self._topics = topics
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._req: zmq.Socket[bytes] | None = None
        self._req_lock = threading.Lock()
        self._probe_sock: zmq.Socket[bytes] | None = None  # a hello in flight, owned by poll
        self._sub: zmq.Socket[bytes] | None = None
        self._sub_address: str | None = None
        self._want_publish: str | None = None  # set by a hello, applied by poll (the SUB's thread)
        self._hello: Hello | None = None
        self._new_hello = False
        self._last_status = -1e9
        self._last_probe = -1e9
        self._last_seq: int | None = None
        self._lost = False  # heartbeat was lost since the last hello
        self._closed = False
        self.counts = {"skipped": 0, "gaps": 0, "drained": 0, "malformed": 0, "reconnects": 0}
        """skipped = gaps + drained (blocks dropped by the PUB, and by this feed); malformed
        data messages; reconnects after the heartbeat was lost."""
        self.control: str | None = control
        self.token: str | None = None
        self.read_only = True
        """True when requests that change anything will be refused (asked for, or no token)."""
        self._locate()

    # --- Feed protocol -------------------------------------------------------------------

    @property
    def skipped(self) -> int:
        """Blocks dropped so far (sequence gaps plus drained backlog)."""
        return self.counts["skipped"]

    @property
    def malformed(self) -> int:
        """Data messages that failed to decode (dropped)."""
        return self.counts["malformed"]

    @property
    def connected(self) -> bool:
        """False once no status arrived for ``heartbeat_timeout`` seconds (3 by default)."""
        return time.monotonic() - self._last_status <= self._heartbeat_timeout

    @property
    def last_hello(self) -> Hello | None:
        """The newest hello (after a reconnect, the new recorder's)."""
        return self._hello

    def hello(self, *, timeout: float) -> Hello | None:
        """Ask the recorder for its hello; the next ``poll`` subscribes where it says.

        A recorder still opening its source answers "starting"; this asks again until
        ``timeout``. Without a control address, the newest live run file is looked up first.
        """
        deadline = time.monotonic() + timeout
        while True:
            self._locate()
            if self.control is None:
                return None
            left = max(0.01, deadline - time.monotonic())
            reply = self._call(wire.encode_request("hello", timeout=left), left)
            if reply is not None and reply.ok:
                break
            if reply is None or reply.error != STARTING_ERROR or time.monotonic() + 0.1 >= deadline:
                return None
            time.sleep(0.1)
        try:
            hello = Hello.model_validate(reply.data)
        except ValidationError:
            self.counts["malformed"] += 1
            return None
        self._adopt(hello)
        return hello

    def request(self, op: str, *, timeout: float = 2.0, **args: Any) -> Reply:
        """A control request; never raises (a problem comes back as ``Reply(ok=False)``).

        ``set_roi`` takes ``roi=Roi(...)`` or its fields (name, detector, x, y).
        """
        roi = args.pop("roi", None)
        if roi is not None:
            args.update(roi if isinstance(roi, dict) else roi.model_dump(mode="json"))
        token = None if self._read_only_wanted else self.token
        try:
            frames = wire.encode_request(op, token=token, timeout=timeout, **args)
        except wire.WireError as exc:
            return Reply(False, f"{op}: {exc}")
        self._locate()
        if self.control is None:
            return Reply(False, f"{op}: no running recorder found (no live run file in {self._dir_text()})")
        reply = self._call(frames, timeout)
        if reply is None:
            return Reply(False, f"{op}: the recorder at {self.control} did not answer within {timeout:g} s")
        return reply

    def poll(self, *, timeout: float) -> list[Message]:
        """Messages that arrived, waiting at most ``timeout`` s for the first."""
        if self._closed:
            return []
        out: list[Message] = []
        self._apply_hello(out)
        if not self.connected:
            self._start_probe()
        poller = zmq.Poller()
        for sock in (self._sub, self._probe_sock):
            if sock is not None:
                poller.register(sock, zmq.POLLIN)
        ready = dict(poller.poll(int(max(0.0, timeout) * 1000))) if poller.sockets else {}
        if not poller.sockets:
            time.sleep(max(0.0, min(timeout, 0.05)))  # nothing to wait on yet; no busy loop
        if self._probe_sock is not None:
            self._finish_probe(self._probe_sock in ready)
            self._apply_hello(out)
        if self._sub is not None and self._sub in ready:
            out += self._drain(self._sub)
        return out

    def close(self) -> None:
        """Close the sockets; idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._req_lock:
            if self._req is not None:
                self._req.close(0)
                self._req = None
        for sock in (self._sub, self._probe_sock):
            if sock is not None:
                sock.close(0)
        self._sub = self._probe_sock = None
        self._ctx.term()

    def __enter__(self) -> NetFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- finding the recorder ----------------------------------------------------------

    def _locate(self) -> bool:
        """Pick the recorder (and its token) from the run files; True if one is known."""
        if self._follow_runfile:
            found = rf.find_runfile(self._runtime_dir)
            if found is None:
                return False
            if found.control != self.control:
                with self._req_lock:
                    self._reset_req()
            self.control = found.control
            self.token = found.token
        elif self._explicit_token is not None:
            self.token = self._explicit_token
        elif self.control is not None:
            known = rf.runfile_for(self.control, self._runtime_dir)
            self.token = known.token if known is not None else None  # not ours to read: watch only
        self.read_only = self._read_only_wanted or self.token is None
        return self.control is not None

    def _dir_text(self) -> str:
        try:
            return str(rf.runtime_dir(self._runtime_dir))
        except Exception:  # only for a message
            return "the runtime directory"

    def _start_probe(self) -> None:
        """While disconnected: every second, look again and send a hello (answered later)."""
        now = time.monotonic()
        if self._probe_sock is not None or now - self._last_probe < PROBE_EVERY:
            return
        self._last_probe = now
        self._lost = True  # the next hello may come from another recorder
        if not self._locate() or self.control is None:
            return
        sock = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_REPLY_BYTES)  # no frame of a reply is larger
        sock.connect(self.control)
        try:
            sock.send_multipart(wire.encode_request("hello", timeout=PROBE_TIMEOUT))
        except zmq.ZMQError:
            sock.close(0)
            return
        self._probe_sock = sock

    def _finish_probe(self, readable: bool) -> None:
        """Take the probe's answer, or give it up after :data:`PROBE_TIMEOUT` (lazy pirate)."""
        sock = self._probe_sock
        if sock is None:
            return
        if not readable and time.monotonic() - self._last_probe < PROBE_TIMEOUT:
            return
        self._probe_sock = None
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK) if readable else None
        except zmq.ZMQError:
            frames = None
        sock.close(0)
        if frames is None:
            return
        try:
            reply = wire.decode_reply(frames)
            hello = Hello.model_validate(reply.data) if reply.ok else None
        except (wire.WireError, ValidationError):
            self.counts["malformed"] += 1
            return
        if hello is not None:
            self._adopt(hello)

    def _adopt(self, hello: Hello) -> None:
        """Remember a hello; poll re-subscribes where it says and tells the console."""
        publish = _reachable(hello.publish, self.control or DEFAULT_CONTROL)
        self._hello = hello
        self._want_publish = publish
        self._new_hello = True
        self._last_status = time.monotonic()  # the recorder is there: give its heartbeat time

    def _apply_hello(self, out: list[Message]) -> None:
        if not self._new_hello or self._hello is None:
            return
        self._new_hello = False
        if self._want_publish != self._sub_address or self._sub is None:
            self._resubscribe(self._want_publish)
        if self._lost:
            self._lost = False
            if self._last_seq is not None:
                self.counts["reconnects"] += 1
                out.append(NoticeMsg(time.time(), f"connected to the recorder at {self.control}", "info"))
            self._last_seq = None  # perhaps a new recorder: its numbers are not comparable
        out.append(RoisMsg(tuple(self._hello.rois)))

    def _resubscribe(self, address: str | None) -> None:
        if self._sub is not None:
            self._sub.close(0)
            self._sub = None
        self._sub_address = address
        if address is None:
            return
        sub = self._ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, self._rcvhwm)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.MAXMSGSIZE, 1 << 31)  # generous, but a corrupt size cannot eat memory
        for topic in self._topics:
            sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        sub.connect(address)
        self._sub = sub

    # --- REQ: lazy pirate ----------------------------------------------------------------

    def _reset_req(self) -> None:
        if self._req is not None:
            self._req.close(0)
            self._req = None

    def _call(self, frames: list[bytes], timeout: float) -> Reply | None:
        """Send one request and wait for its reply; None on timeout (socket re-created)."""
        with self._req_lock:
            if self._req is None:
                self._req = self._ctx.socket(zmq.REQ)
                self._req.setsockopt(zmq.LINGER, 0)
                self._req.setsockopt(zmq.SNDTIMEO, 0)
                self._req.setsockopt(zmq.MAXMSGSIZE, wire.MAX_REPLY_BYTES)
                assert self.control is not None
                self._req.connect(self.control)
            req = self._req
            try:
                req.send_multipart(frames)
                if not req.poll(int(timeout * 1000), zmq.POLLIN):
                    self._reset_req()  # a REQ that missed its reply is stuck: start a new one
                    return None
                reply = req.recv_multipart()
            except zmq.ZMQError:
                self._reset_req()
                return None
        try:
            return wire.decode_reply(reply)
        except wire.WireError as exc:
            return Reply(False, f"malformed reply from {self.control}: {exc}")

    # --- SUB: drain, keep the newest ---------------------------------------------------

    def _drain(self, sub: zmq.Socket[bytes]) -> list[Message]:
        msgs: list[Message] = []
        for _ in range(MAX_DRAIN):
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                msg = wire.decode(frames)
            except wire.WireError as exc:
                self.counts["malformed"] += 1
                log.debug("dropped a malformed message: %s", exc)
                continue
            if isinstance(msg, BlockMsg):
                self._sequence(msg.seq)
            elif isinstance(msg, StatusMsg):
                self._last_status = time.monotonic()
            msgs.append(msg)
        return self._keep_newest(msgs)

    def _sequence(self, seq: int) -> None:
        last = self._last_seq
        if last is not None and seq > last + 1:
            gap = seq - last - 1
            self.counts["gaps"] += gap
            self.counts["skipped"] += gap
        # seq <= last: a restarted recorder at the same address numbers from 0 again
        self._last_seq = seq

    def _keep_newest(self, msgs: list[Message]) -> list[Message]:
        blocks = [i for i, m in enumerate(msgs) if isinstance(m, BlockMsg)]
        excess = len(blocks) - self._max_blocks
        if excess <= 0:
            return msgs
        drop = set(blocks[:excess])
        self.counts["drained"] += excess
        self.counts["skipped"] += excess
        return [m for i, m in enumerate(msgs) if i not in drop]


def _reachable(publish: str, control: str) -> str:
    """The publish address as seen from here: a wildcard host becomes the control host."""
    pub, ctl = urlsplit(publish), urlsplit(control)
    if pub.hostname in ("0.0.0.0", "*", "::", None) and ctl.hostname and pub.port is not None:
        return f"{pub.scheme}://{ctl.hostname}:{pub.port}"
    return publish


if TYPE_CHECKING:
    def _conforms(feed: NetFeed) -> Feed:  # mypy checks NetFeed against the Feed protocol
        return feed
