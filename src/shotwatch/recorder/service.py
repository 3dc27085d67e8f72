"""The recorder's network face: PUB for blocks and status, a control socket for requests.

``Service(recorder)`` is a context manager. On entry it binds a PUB socket (default
``tcp://127.0.0.1:5560``) and a control socket (default ``:5561``; a taken default port
becomes a free one, ``"auto"`` always picks a free one), writes the run file and starts the
control thread; it registers itself as a listener of the recorder, so blocks, status,
notices, ROI changes and images are published from the recorder's acquire thread.

The control socket is a ROUTER: it speaks to REQ clients exactly like a REP socket, but may
keep several requests waiting on the recorder's futures at once (a ``grab`` of many frames
does not make another console's ``hello`` wait). Requests that change anything need the
token from the run file; malformed requests get an error reply and are counted in
:attr:`Service.counters`, which the recorder adds to its status.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

import zmq

from ..link import wire
from ..link.control import forward
from ..link.messages import BlockMsg, Hello, ImageMsg, Message, NoticeMsg, Reply, ResetMsg, RoisMsg, StatusMsg
from ..link.protocols import Control, NullListener
from ..link.runfile import RunFile, new_token, remove_runfile, write_runfile
from ..link.wire import DEFAULT_CONTROL, DEFAULT_PUBLISH, READ_ONLY_ERROR, STARTING_ERROR
from ..schemas import UsageError

__all__ = ["Service"]

log = logging.getLogger("shotwatch.recorder.service")

MAX_PENDING = 64  # requests waiting on the recorder at once; beyond that, "busy"
MAX_REQUEST_BYTES = 1 << 16  # a request is a few hundred bytes; zmq drops larger peers
POLL_MS = 100  # the control thread notices close() within this


Served = Control
"""What the service needs of a recorder: the link's :class:`~shotwatch.link.protocols.Control`."""


@dataclass
class _Pending:
    envelope: list[bytes]
    op: str
    future: Future[Reply]
    deadline: float
    timeout: float


class Service(NullListener):
    """Publishes a Recorder's output and serves its control requests.

    Args:
        recorder: the :class:`~shotwatch.recorder.acquire.Recorder`, or anything else that is
            :class:`Served` (tests use a stand-in).
        publish: PUB address; None = the default (a free port if taken); ``"auto"`` = a free
            port on 127.0.0.1.
        control: control address, same rules.
        runfile: write the run file (``False`` in tests or an embedded recorder).
        request_timeout: longest a request waits for the recorder before an error reply.
        sndhwm: messages queued per slow console before the PUB drops (never blocks).
        runtime_dir: run-file directory (default: the user's runtime directory).
    """

    wants_blocks = True

    def __init__(self, recorder: Served, *, publish: str | None = None, control: str | None = None,
                 runfile: bool = True, request_timeout: float = 10.0, sndhwm: int = 16,
                 runtime_dir: str | None = None) -> None:
        self.recorder = recorder
        self.token = new_token()
        self.request_timeout = request_timeout
        self.runfile: RunFile | None = None
        self._want = {"publish": publish, "control": control}
        self._write_runfile = runfile
        self._runtime_dir = runtime_dir
        self._sndhwm = sndhwm
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._pub_lock = threading.Lock()  # the PUB socket moves between threads only under it
        self._counts: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list[_Pending] = []
        self.addresses: dict[str, str] = {}

    # --- life cycle ----------------------------------------------------------------------

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        """Bind both sockets, write the run file, start serving and publishing.

        Raises:
            UsageError: an explicitly given address cannot be bound.
        """
        self._ctx = zmq.Context()
        pub = self._ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, self._sndhwm)
        pub.setsockopt(zmq.LINGER, 500)  # let the last notice ("stopped") reach the consoles
        ctl = self._ctx.socket(zmq.ROUTER)
        ctl.setsockopt(zmq.LINGER, 0)
        ctl.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        try:
            self.addresses = {"publish": _bind(pub, self._want["publish"], DEFAULT_PUBLISH, "publish"),
                              "control": _bind(ctl, self._want["control"], DEFAULT_CONTROL, "control")}
        except BaseException:
            pub.close(0)
            ctl.close(0)
            self._ctx.term()
            raise
        self._pub = pub
        if self._write_runfile:
            self.runfile = write_runfile(control=self.addresses["control"], publish=self.addresses["publish"],
                                         token=self.token, directory=self._runtime_dir)
        self._thread = threading.Thread(target=self._serve, args=(ctl,), name="shotwatch-control", daemon=True)
        self._thread.start()  # the ROUTER socket belongs to that thread from here on
        self.recorder.add_listener(self)
        self.recorder.add_counters(self.counters_snapshot)

    def close(self) -> None:
        """Stop serving, close the sockets and remove the run file; idempotent."""
        self.recorder.remove_listener(self)
        self.recorder.remove_counters(self.counters_snapshot)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._pub_lock:
            if self._pub is not None:
                self._pub.close()
                self._pub = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        if self.runfile is not None:
            remove_runfile(self.runfile.path)
            self.runfile = None

    # --- counters ----------------------------------------------------------------------

    def _count(self, what: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[what] = self._counts.get(what, 0) + n

    def counters_snapshot(self) -> dict[str, int]:
        """Counted faults so far (only those that happened), for ``Status.counters``."""
        with self._count_lock:
            return dict(self._counts)

    @property
    def counters(self) -> dict[str, int]:
        """Same as :meth:`counters_snapshot`."""
        return self.counters_snapshot()

    # --- publishing (recorder's acquire thread) -----------------------------------------

    def on_block(self, msg: BlockMsg) -> None:
        self.publish(msg)

    def on_status(self, msg: StatusMsg) -> None:
        self._follow_recording(msg.status.recording)
        self.publish(msg)

    def on_notice(self, msg: NoticeMsg) -> None:
        self.publish(msg)

    def on_rois(self, msg: RoisMsg) -> None:
        self.publish(msg)

    def on_image(self, msg: ImageMsg) -> None:
        self.publish(msg)

    def on_reset(self, msg: ResetMsg) -> None:
        self.publish(msg)

    def publish(self, msg: Message) -> None:
        """Encode and send one message; never blocks and never raises (drops are counted)."""
        try:
            frames = wire.encode(msg)
        except wire.WireError as exc:
            self._count("unpublishable messages")
            log.warning("not published: %s", exc)
            return
        self.send_frames(frames)

    def send_frames(self, frames: list[Any]) -> None:
        """Send raw frames on the PUB socket (tests use it to publish garbage)."""
        with self._pub_lock:
            if self._pub is None:
                return
            try:
                # PUB drops for a subscriber past its SNDHWM instead of blocking; NOBLOCK
                # guards the rest (no ZMQ_CONFLATE: it aborts on multipart messages).
                self._pub.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self._count("publish dropped")
            except zmq.ZMQError as exc:
                self._count("publish errors")
                log.warning("publish failed: %s", exc)

    def _follow_recording(self, recording: str | None) -> None:
        """Keep the run file's ``recording`` current (a new run starts a new recording)."""
        rf = self.runfile
        if rf is None or rf.recording == recording:
            return
        try:
            self.runfile = write_runfile(control=rf.control, publish=rf.publish, token=rf.token,
                                         recording=recording, path=rf.path, started=rf.started)
        except OSError as exc:
            self._count("run file errors")
            log.warning("run file not updated: %s", exc)

    # --- control (service thread) --------------------------------------------------------

    def _serve(self, ctl: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(ctl, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(10 if self._pending else POLL_MS))
                for _ in range(100):  # drain a burst, but keep replying to finished requests
                    if ctl not in ready or not self._receive(ctl):
                        break
                self._flush(ctl)
        except Exception:  # the recorder must outlive its control thread
            log.exception("control thread failed")
            self._count("control thread failures")
        finally:
            ctl.close(0)

    def _receive(self, ctl: zmq.Socket[bytes]) -> bool:
        try:
            frames = ctl.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return False
        try:
            split = frames.index(b"")
        except ValueError:
            self._count("malformed requests")  # no REQ envelope: nobody to answer
            return True
        envelope, body = frames[: split + 1], frames[split + 1:]
        reply = self._handle(envelope, body)
        if reply is not None:
            self._reply(ctl, envelope, reply)
        return True

    def _handle(self, envelope: list[bytes], body: list[bytes]) -> Reply | None:
        try:
            req = wire.decode_request(body)
        except wire.WireError as exc:
            self._count("malformed requests")
            return Reply(False, f"malformed request: {exc}")
        if req.op in wire.CHANGING_OPS and not (
                req.token is not None and hmac.compare_digest(req.token.encode(), self.token.encode())):
            self._count("refused requests (no token)")
            return Reply(False, READ_ONLY_ERROR)
        if len(self._pending) >= MAX_PENDING:
            self._count("busy replies")
            return Reply(False, f"{req.op}: recorder busy ({MAX_PENDING} requests waiting); try again")
        try:
            if req.op == "hello":
                hello = self.hello()
                return Reply(True, data=hello.model_dump(mode="json")) if hello else Reply(False, STARTING_ERROR)
            if req.op == "list_rois":
                hello = self.hello()
                return Reply(True, data={"rois": [asdict(v) for v in hello.rois]}) if hello else Reply(False, STARTING_ERROR)
            future = forward(self.recorder, req)
        except Exception as exc:  # any failure becomes that request's error reply
            log.exception("%s failed", req.op)
            return Reply(False, f"{req.op} failed: {exc}")
        timeout = min(self.request_timeout, 0.8 * req.timeout if req.timeout else self.request_timeout)
        self._pending.append(_Pending(envelope, req.op, future, time.monotonic() + timeout, timeout))
        return None

    def _flush(self, ctl: zmq.Socket[bytes]) -> None:
        now = time.monotonic()
        keep = []
        for p in self._pending:
            if p.future.done():
                self._reply(ctl, p.envelope, _result(p.op, p.future))
            elif now >= p.deadline:
                self._count("request timeouts")
                self._reply(ctl, p.envelope, Reply(False, f"{p.op}: timed out after {p.timeout:.1f} s waiting "
                                                          "for the recorder (it keeps running)"))
            else:
                keep.append(p)
        self._pending = keep

    def _reply(self, ctl: zmq.Socket[bytes], envelope: list[bytes], reply: Reply) -> None:
        try:
            ctl.send_multipart([*envelope, *wire.encode_reply(reply)], flags=zmq.NOBLOCK)
        except zmq.Again:
            self._count("replies dropped")  # the client is gone and its queue is full
        except wire.WireError as exc:
            self._reply(ctl, envelope, Reply(False, f"reply could not be encoded: {exc}"))

    def hello(self) -> Hello | None:
        """What a console needs to start (the reply to ``hello``); None while the source opens."""
        return self.recorder.hello(publish=self.addresses["publish"], control=self.addresses["control"])


def _result(op: str, future: Future[Reply]) -> Reply:
    exc = future.exception()
    if exc is not None:
        return Reply(False, f"{op} failed: {exc}")
    reply = future.result()
    return reply if isinstance(reply, Reply) else Reply(True)


def _bind(sock: zmq.Socket[bytes], want: str | None, default: str, what: str) -> str:
    """Bind ``sock`` and return the address it got (explicit ports never move)."""
    if want == "auto":
        sock.bind("tcp://127.0.0.1:*")
    elif want is None:
        try:
            sock.bind(default)
        except zmq.ZMQError:
            sock.bind(default.rsplit(":", 1)[0] + ":*")  # default port taken: any free port
    else:
        try:
            sock.bind(want)
        except zmq.ZMQError as exc:
            raise UsageError(f"{what} address {want}: expected a free address of the form "
                             f"tcp://HOST:PORT, found {exc}") from None
    return str(sock.getsockopt_string(zmq.LAST_ENDPOINT))
