"""The network processes: the only processes of a recorder that a peer can reach.

DESIGN.md ("What an untrusted peer cannot do"): nothing a peer does (thousands of idle
connections, a multipart message that never ends, a frame that declares gigabytes, a flood
of requests, with or without the token) may cost the writer anything. libzmq bounds much of
it (frame size, queue lengths, a handshake deadline) but keeps an incomplete multipart
message without bound, on a PUB socket as on a ROUTER, and accepts connections until its
process has no descriptors left. So each socket a peer can reach lives in a child process of
its own, which :class:`~shotwatch.recorder.service.Service` starts, watches (memory) and
replaces; an attack on the control port leaves live data flowing from the PUB process.

- Both listen on sockets the recorder created and keeps (``ZMQ_USE_FD``): the ports stay the
  recorder's while a process restarts, and consoles reconnect by themselves.
- :class:`PubProc`: what the recorder publishes (a private PULL) goes out unchanged.
- :class:`CtlProc`: requests are validated, refused without the token and rate-limited
  (:data:`~shotwatch.link.wire.OPS`) here, and only then forwarded over a private DEALER to
  the recorder, which answers; ``hello`` and ``list_rois`` come from a cache at most
  :data:`CACHE_S` old, so that peers without the token cost the recorder nothing that grows
  with their number or their rate.
- Connections beyond a budget per socket are shut at once (:class:`Budget`).

The recorder writes one JSON line of settings to stdin and keeps stdin open; its end (the
recorder is gone, even by SIGKILL) ends the process, which answers with one line on stdout
when it serves. :class:`~shotwatch.recorder.netchild.NetChild` runs :func:`main`.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import json
import os
import resource
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..link import wire
from ..link.messages import Reply
from ..link.wire import READ_ONLY_ERROR

__all__ = ["BYE", "Budget", "Bucket", "CtlProc", "PubProc", "main"]

BYE = b"\x00bye"  # the recorder's last published "message": deliver what came before, then exit
CACHE_S = 1.0  # hello/list_rois answers are at most this old (and refreshed after any change)
MAX_PENDING = 64  # requests forwarded and not yet answered; beyond that, "busy"
MAX_WAITERS = 4096  # clients waiting for one cached answer (an envelope each: small)
MAX_REQUEST_BYTES = 1 << 16  # a request is a few hundred bytes; libzmq drops a peer sending more
MAX_SUBSCRIPTION_BYTES = 1 << 10  # what a SUB sends a PUB: topics of a few bytes
HANDSHAKE_MS = 5000  # a connection that has not spoken ZMTP by then is closed
HEARTBEAT_MS, HEARTBEAT_TIMEOUT_MS = 2000, 10000  # control peers that stop answering pings go
REPORT_EVERY = 0.2  # s between counter reports to the recorder (only when they changed)
RECONCILE_S = 5.0  # s between checks of a connection budget against the descriptors
DRAIN = 256  # messages handled per socket per turn, so no socket starves the others


class Bucket:
    """A token bucket: ``burst`` requests at once, ``per_s`` sustained."""

    def __init__(self, per_s: float, burst: int) -> None:
        self.per_s, self.burst = per_s, burst
        self.level = float(burst)
        self.at = time.monotonic()

    def take(self) -> float:
        """0 if a request may pass now (and counts it), else the seconds until one may."""
        now = time.monotonic()
        self.level = min(float(self.burst), self.level + (now - self.at) * self.per_s)
        self.at = now
        if self.level >= 1.0:
            self.level -= 1.0
            return 0.0
        return (1.0 - self.level) / self.per_s


class Budget:
    """At most ``limit`` connections on a listening zmq socket; newcomers beyond it are shut.

    libzmq accepts every connection and offers no limit, so a socket monitor reports each
    accepted descriptor and this shuts the surplus down at once (libzmq then sees the
    connection end and releases it). A peer beyond the budget sees its connection closed.
    """

    EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED

    def __init__(self, sock: zmq.Socket[bytes], limit: int, count: Any) -> None:
        self.limit = limit
        self.open: set[int] = set()
        self.monitor = sock.get_monitor_socket(self.EVENTS)
        self._count = count
        self._checked = time.monotonic()

    def events(self) -> None:
        if time.monotonic() - self._checked > RECONCILE_S:
            self._reconcile()
        for _ in range(DRAIN):
            try:
                event = parse_monitor_message(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                if len(self.open) < self.limit:
                    self.open.add(fd)
                else:
                    _shut(fd)
                    self._count("connections refused (over budget)")
            else:
                self.open.discard(fd)


    def _reconcile(self) -> None:
        """Forget descriptors that are no longer sockets: libzmq drops monitor events when
        their queue is full, and a lost 'disconnected' must not shrink the budget for good."""
        self._checked = time.monotonic()
        for fd in list(self.open):
            try:
                gone = not stat.S_ISSOCK(os.fstat(fd).st_mode)
            except OSError:
                gone = True
            if gone:
                self.open.discard(fd)


def _shut(fd: int) -> None:
    """Shut a connection libzmq owns down (it closes the descriptor itself when it notices)."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=fd)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.detach()


@dataclass
class _Pending:
    op: str
    deadline: float
    envelopes: list[list[bytes]] = field(default_factory=list)


Handler = Callable[[], None]


class _Proc:
    """What both network processes share: the private DEALER to the recorder, counters, the loop."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.counts: dict[str, int] = {}
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.up = self.ctx.socket(zmq.DEALER)
        self.up.setsockopt(zmq.ROUTING_ID, settings["role"].encode())
        self.up.setsockopt(zmq.LINGER, 0)
        self.up.setsockopt(zmq.SNDHWM, MAX_PENDING * 4)
        self.up.connect(settings["up"])
        self.budgets: list[Budget] = []
        self.handlers: dict[zmq.Socket[bytes], Handler] = {self.up: self._from_recorder}
        self._reported: dict[str, int] = {}
        self._report_at = 0.0
        self.done = False

    def listen(self, kind: int, where: dict[str, Any], maxmsgsize: int, *, sndhwm: int, linger: int,
               max_connections: int) -> zmq.Socket[bytes]:
        """A public socket on the recorder's listening descriptor, within a connection budget."""
        sock = self.ctx.socket(kind)
        for option, value in ((zmq.MAXMSGSIZE, maxmsgsize), (zmq.SNDHWM, sndhwm), (zmq.RCVHWM, 256),
                              (zmq.LINGER, linger), (zmq.HANDSHAKE_IVL, HANDSHAKE_MS),
                              (zmq.USE_FD, int(where["fd"]))):
            sock.setsockopt(option, value)
        budget = Budget(sock, max_connections, self.count)  # monitoring starts before the first peer
        sock.bind(where["endpoint"])  # the address only names it: the descriptor is the recorder's
        self.budgets.append(budget)
        self.handlers[budget.monitor] = budget.events
        return sock

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def run(self, stdin: int) -> None:
        poller = zmq.Poller()
        for sock in self.handlers:
            poller.register(sock, zmq.POLLIN)
        poller.register(stdin, zmq.POLLIN)
        while not self.done:
            ready = dict(poller.poll(100))
            if stdin in ready and not os.read(stdin, 4096):
                break  # the recorder is gone
            for sock, handler in self.handlers.items():
                if sock in ready:
                    handler()
            self.tick()
            self._report()
        self.close()

    def tick(self) -> None:
        """Work due by time rather than by a message."""

    def close(self) -> None:
        for sock in self.handlers:
            sock.close(0)
        self.ctx.term()

    def _from_recorder(self) -> None:
        for _ in range(DRAIN):
            try:
                frames = self.up.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if frames[0] == b"counters?":
                self._report(asked=frames[1:2])
            else:
                self.from_recorder(frames)

    def from_recorder(self, frames: list[bytes]) -> None:
        """A message of the recorder's other than a counters query."""

    def _report(self, *, asked: list[bytes] | None = None) -> None:
        """Counts to the recorder: when they changed (now and then), or asked (echoing the query)."""
        now = time.monotonic()
        if asked is None and (self.counts == self._reported or now - self._report_at < REPORT_EVERY):
            return
        try:
            self.up.send_multipart([b"counters", json.dumps(self.counts).encode(), *(asked or [])], zmq.NOBLOCK)
        except zmq.Again:
            return
        self._reported, self._report_at = dict(self.counts), now


class PubProc(_Proc):
    """The PUB socket: what the recorder publishes (a private PULL) goes out unchanged."""

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        hwm = int(settings["sndhwm"])
        self.pub = self.listen(zmq.PUB, settings["publish"], MAX_SUBSCRIPTION_BYTES, sndhwm=hwm, linger=500,
                               max_connections=int(settings["max_connections"]))
        self.feed = self.ctx.socket(zmq.PULL)
        self.feed.setsockopt(zmq.RCVHWM, hwm)
        self.feed.setsockopt(zmq.LINGER, 0)
        self.feed.connect(settings["feed"])
        self.handlers[self.feed] = self._published

    def close(self) -> None:
        self.handlers.pop(self.pub, None)
        for sock in self.handlers:
            sock.close(0)
        self.pub.close()  # lingers, so the recorder's last notice reaches the consoles
        self.ctx.term()

    def _published(self) -> None:
        for _ in range(DRAIN):
            try:
                frames = self.feed.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if frames[0].bytes == BYE:
                self.done = True
                return
            try:
                self.pub.send_multipart(frames, zmq.NOBLOCK, copy=False)
            except zmq.ZMQError:
                self.count("publish dropped")


class CtlProc(_Proc):
    """The control socket: requests checked here, forwarded to the recorder, answered."""

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.token: str = settings["token"]
        self.request_timeout = float(settings["request_timeout"])
        self.ctl = self.listen(zmq.ROUTER, settings["control"], MAX_REQUEST_BYTES, sndhwm=1000, linger=0,
                               max_connections=int(settings["max_connections"]))
        # a reply to a peer that does not read is dropped, and counted (ROUTER_MANDATORY says so)
        for option, value in ((zmq.HEARTBEAT_IVL, HEARTBEAT_MS), (zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS),
                              (zmq.ROUTER_MANDATORY, 1)):
            self.ctl.setsockopt(option, value)
        self.handlers[self.ctl] = self._requests
        self.buckets = {name: Bucket(op.per_s, op.burst) for name, op in wire.OPS.items() if op.per_s}
        self.pending: dict[bytes, _Pending] = {}
        self.fetching: dict[str, bytes] = {}  # cached op -> id of the request fetching it
        self.cache: dict[str, tuple[float, list[bytes]]] = {}
        self._ids = itertools.count()

    def _requests(self) -> None:
        for _ in range(DRAIN):
            try:
                frames = self.ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                split = frames.index(b"")
            except ValueError:
                self.count("malformed requests")  # no REQ envelope: nobody to answer
                continue
            self._request(frames[: split + 1], frames[split + 1:])

    def _request(self, envelope: list[bytes], body: list[bytes]) -> None:
        try:
            req = wire.decode_request(body)
        except wire.WireError as exc:
            self.count("malformed requests")
            self._reply(envelope, Reply(False, f"malformed request: {exc}"))
            return
        op = wire.OPS[req.op]
        if op.changes and not (req.token is not None
                               and hmac.compare_digest(req.token.encode(), self.token.encode())):
            self.count("refused requests (no token)")
            self._reply(envelope, Reply(False, READ_ONLY_ERROR))
            return
        if op.local:
            self._cached(envelope, req.op)
            return
        bucket = self.buckets.get(req.op)
        wait = bucket.take() if bucket is not None else 0.0
        if wait:
            self.count("rate-limited requests")
            self._reply(envelope, Reply(False, f"{req.op}: refused: more than {op.burst} at once or {op.per_s:g} "
                                               f"per second; try again in {wait:.1f} s"))
            return
        timeout = min(self.request_timeout, 0.8 * req.timeout if req.timeout else self.request_timeout)
        self._forward(req.op, body[0], timeout, envelope)

    def _forward(self, op: str, frame: bytes, timeout: float, envelope: list[bytes]) -> bytes | None:
        """Send a request to the recorder; its answer goes to ``envelope`` (and later waiters)."""
        if len(self.pending) >= MAX_PENDING:
            self.count("busy replies")
            self._reply(envelope, Reply(False, f"{op}: recorder busy ({MAX_PENDING} requests waiting); try again"))
            return None
        rid = next(self._ids).to_bytes(8, "big")
        try:
            self.up.send_multipart([b"req", rid, frame], zmq.NOBLOCK)
        except zmq.Again:
            self.count("busy replies")
            self._reply(envelope, Reply(False, f"{op}: recorder busy; try again"))
            return None
        # the recorder answers by its own deadline; this one only covers an answer that is lost
        self.pending[rid] = _Pending(op, time.monotonic() + timeout + 2.0, [envelope])
        return rid

    def _cached(self, envelope: list[bytes], op: str) -> None:
        hit = self.cache.get(op)
        if hit is not None and time.monotonic() - hit[0] < CACHE_S:
            self._send(envelope, hit[1])
            return
        rid = self.fetching.get(op)
        if rid is not None and rid in self.pending:
            waiting = self.pending[rid].envelopes
            if len(waiting) < MAX_WAITERS:
                waiting.append(envelope)
            else:
                self.count("busy replies")
                self._reply(envelope, Reply(False, f"{op}: recorder busy; try again"))
            return
        rid = self._forward(op, wire.encode_request(op)[0], self.request_timeout, envelope)
        if rid is not None:
            self.fetching[op] = rid

    def from_recorder(self, frames: list[bytes]) -> None:
        if frames[0] == b"stale":
            self.cache.clear()  # the ROI table changed
        elif frames[0] == b"ans" and len(frames) >= 3:
            self._answer(frames[1], frames[2:])  # a reply is a header and its arrays' frames

    def _answer(self, rid: bytes, frame: list[bytes]) -> None:
        pending = self.pending.pop(rid, None)
        if pending is None:
            return  # answered by its deadline already
        op = wire.OPS[pending.op]
        if op.changes:
            self.cache.clear()  # what hello and list_rois say may have changed
        elif op.local and self.fetching.get(pending.op) == rid:
            del self.fetching[pending.op]
            if wire.decode_reply(frame).ok:
                self.cache[pending.op] = (time.monotonic(), frame)
        for envelope in pending.envelopes:
            self._send(envelope, frame)

    def tick(self) -> None:
        now = time.monotonic()
        for rid, p in list(self.pending.items()):
            if now >= p.deadline:
                del self.pending[rid]
                self.count("request timeouts")
                for envelope in p.envelopes:
                    self._reply(envelope, Reply(False, f"{p.op}: timed out waiting for the recorder "
                                                       "(it keeps running)"))

    def _reply(self, envelope: list[bytes], reply: Reply) -> None:
        self._send(envelope, wire.encode_reply(reply))

    def _send(self, envelope: list[bytes], frame: list[Any]) -> None:
        try:
            self.ctl.send_multipart([*envelope, *frame], zmq.NOBLOCK)
        except zmq.ZMQError:
            self.count("replies dropped")  # the client is gone, or reads too slowly


def _limit_memory(budget: int) -> None:
    """A backstop for the recorder's watchdog: address space beyond today's + 3 x budget fails."""
    try:
        with open("/proc/self/statm") as fh:
            size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        want = size + 3 * budget
        if hard == resource.RLIM_INFINITY or want < hard:
            resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    except (OSError, ValueError):
        pass  # not Linux: the watchdog alone


def main() -> int:
    settings = json.loads(sys.stdin.buffer.readline())
    from .service import raise_nofile

    raise_nofile()
    net = PubProc(settings) if settings["role"] == "pub" else CtlProc(settings)
    if isinstance(net, CtlProc):  # the PUB process's queues may rightly hold large blocks
        _limit_memory(int(settings["memory_limit"]))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    net.run(sys.stdin.fileno())
    return 0

