"""The recorder's network face: PUB for blocks and status, a control socket for requests.

``Service(recorder)`` is a context manager. On entry it binds the PUB address (default
``tcp://127.0.0.1:5560``) and the control address (default ``:5561``; a taken default port
becomes a free one, ``"auto"`` always picks a free one), starts the network processes that
serve them, writes the run file, and registers itself as a listener of the recorder, so
blocks, status, notices, ROI changes and images are published from the recorder's acquire
thread.

No peer talks to the recorder's process (DESIGN.md, "What an untrusted peer cannot do"):
each socket a peer can reach lives in a network process of its own (:mod:`.netproc`), which
this module starts with the listening descriptor, watches (it is replaced when it dies or
grows beyond ``memory_limit``) and talks to over private sockets in a directory only this
user can enter. Published messages go out on a PUSH that never blocks (a slow or restarting
network process loses messages, counted; the recorder never waits). Requests that passed the
control process's checks (validation, token, rate) come in on a ROUTER; the service thread
hands them to the recorder (:class:`Served`, through :class:`~.control.Requests`) and answers
when the recorder's future is done or its deadline passed. Counted faults of all three
processes reach the status through :attr:`Service.counters`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import zmq

from ..link import wire
from ..link.messages import (
    AnalysisMsg,
    BlockMsg,
    DarkMsg,
    Hello,
    ImageMsg,
    Message,
    NoticeMsg,
    Reply,
    ResetMsg,
    RoisMsg,
    StateMsg,
    StatusMsg,
)
from ..link.protocols import Control, NullListener
from ..link.runfile import RunFile, new_token, remove_runfile, write_runfile
from ..link.wire import DEFAULT_CONTROL, DEFAULT_PUBLISH
from .control import Requests
from .netchild import NetChild, listen
from .netproc import BYE

__all__ = ["Served", "Service", "raise_nofile"]

log = logging.getLogger("shotwatch.recorder.service")

MEMORY_LIMIT = 128 << 20  # bytes a network process may grow (beyond its queues) before it is replaced
MAX_CONNECTIONS = 256  # per socket, in the network process
POLL_MS = 50  # the service thread watches the network process this often


Served = Control
"""What the service needs of a recorder: the link's :class:`~shotwatch.link.protocols.Control`."""


def raise_nofile() -> None:
    """Raise this process's descriptor limit to its hard limit (a busy writer opens many)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Service(NullListener):
    """Publishes a Recorder's output and serves its control requests, from its own process.

    Args:
        recorder: the :class:`~shotwatch.recorder.acquire.Recorder`, or anything else that is
            :class:`Served` (tests use a stand-in).
        publish: PUB address; None = the default (a free port if taken); ``"auto"`` = a free
            port on 127.0.0.1.
        control: control address, same rules.
        runfile: write the run file (``False`` in tests or an embedded recorder).
        request_timeout: longest a request waits for the recorder before an error reply.
        sndhwm: messages queued per slow console before the PUB drops (never blocks); also
            the queue to the network process.
        runtime_dir: run-file directory (default: the user's runtime directory).
        memory_limit: bytes the network process may grow before it is replaced.
        max_connections: connections per socket the network process accepts at once.
    """

    wants_blocks = True

    def __init__(self, recorder: Served, *, publish: str | None = None, control: str | None = None,
                 runfile: bool = True, request_timeout: float = 10.0, sndhwm: int = 16,
                 runtime_dir: str | None = None, memory_limit: int = MEMORY_LIMIT,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.recorder = recorder
        self.token = new_token()
        self.request_timeout = request_timeout
        self.runfile: RunFile | None = None
        self.addresses: dict[str, str] = {}
        self._want = {"publish": publish, "control": control}
        self._write_runfile = runfile
        self._runtime_dir = runtime_dir
        self._sndhwm = sndhwm
        self._limits = (memory_limit, max_connections)
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._push: zmq.Socket[bytes] | None = None
        self._push_lock = threading.Lock()  # the acquire thread publishes; close() ends it
        self._router: zmq.Socket[bytes] | None = None
        self._listening: list[Any] = []
        self._private: Path | None = None
        self._children: dict[str, NetChild] = {}
        self._largest = 0  # bytes of the largest message published so far
        self._counts: dict[str, int] = {}
        self._child_counts: dict[str, dict[str, int]] = {}  # each network process's, as it reported
        self._count_lock = threading.Lock()
        self._fresh = threading.Event()
        self._asked: set[str] = set()  # network processes asked for their counts, not answered yet
        self._query = 0  # number of the newest counts query
        self._want_counts = threading.Event()
        self._stale = threading.Event()  # the ROI table changed: the control process's cache is old
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._requests = Requests(recorder, token=self.token, request_timeout=request_timeout, hello=self.hello,
                                  count=self._count)

    # --- life cycle ----------------------------------------------------------------------

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        """Bind both addresses, start the network process, write the run file, serve.

        Raises:
            UsageError: an explicitly given address cannot be bound.
            ShotwatchRuntimeError: the network process did not start.
        """
        raise_nofile()
        try:
            self._start()
        except BaseException:
            self._teardown()
            raise
        if self._write_runfile:
            self.runfile = write_runfile(control=self.addresses["control"], publish=self.addresses["publish"],
                                         token=self.token, directory=self._runtime_dir)
        self._thread = threading.Thread(target=self._serve, args=(self._router,), name="shotwatch-control",
                                        daemon=True)
        self._thread.start()  # the ROUTER socket and the network process belong to that thread now
        self.recorder.add_listener(self)
        self.recorder.add_counters(self.counters_snapshot)

    def _start(self) -> None:
        pub, self.addresses["publish"] = listen(self._want["publish"], DEFAULT_PUBLISH, "publish")
        self._listening.append(pub)
        ctl, self.addresses["control"] = listen(self._want["control"], DEFAULT_CONTROL, "control")
        self._listening.append(ctl)
        # 0700: this user only; in /tmp where there is one, as an ipc path holds ~100 bytes at most
        self._private = Path(tempfile.mkdtemp(prefix="shotwatch-net-", dir="/tmp" if Path("/tmp").is_dir() else None))
        self._ctx = zmq.Context()
        push = self._ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, self._sndhwm)
        push.setsockopt(zmq.LINGER, 1000)  # the last messages and BYE reach the network process
        push.bind(f"ipc://{self._private}/feed")
        self._push = push
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted network process takes the name over
        router.setsockopt(zmq.LINGER, 0)
        router.bind(f"ipc://{self._private}/up")
        self._router = router
        memory_limit, max_connections = self._limits
        common = {"up": f"ipc://{self._private}/up", "max_connections": max_connections,
                  "memory_limit": memory_limit}
        self._children = {
            # the slowest console's queue may hold sndhwm of the largest messages, and a few in flight
            "pub": NetChild({**common, "role": "pub", "sndhwm": self._sndhwm, "feed": f"ipc://{self._private}/feed",
                             "publish": {"fd": pub.fileno(), "endpoint": self.addresses["publish"]}},
                            (pub.fileno(),), memory_limit, lambda: (self._sndhwm + 4) * self._largest),
            "ctl": NetChild({**common, "role": "ctl", "token": self.token, "request_timeout": self.request_timeout,
                             "control": {"fd": ctl.fileno(), "endpoint": self.addresses["control"]}},
                            (ctl.fileno(),), memory_limit),
        }
        for child in self._children.values():
            child.spawn()  # both import at once: half the wait
        for child in self._children.values():
            child.wait_ready()

    def close(self) -> None:
        """Stop serving, end the network process, remove the run file; idempotent."""
        self.recorder.remove_listener(self)
        self.recorder.remove_counters(self.counters_snapshot)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._teardown()

    def _teardown(self) -> None:
        with self._push_lock:
            push, self._push = self._push, None
            if push is not None:
                with contextlib.suppress(zmq.ZMQError):
                    push.send(BYE, zmq.NOBLOCK)  # after the last notice ("stopped"): deliver, then exit
                push.close()
        for role, child in self._children.items():
            child.stop(wait=2.0 if role == "pub" else 0.0)  # the PUB process leaves after BYE
        self._children = {}
        if self._ctx is not None:
            self._ctx.destroy(0)  # the ROUTER, if the service thread never ran
            self._ctx = None
        for sock in self._listening:
            sock.close()
        self._listening = []
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None
        if self.runfile is not None:
            remove_runfile(self.runfile.path)
            self.runfile = None

    # --- counters ----------------------------------------------------------------------

    def _count(self, what: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[what] = self._counts.get(what, 0) + n

    def counters_snapshot(self) -> dict[str, int]:
        """Counted faults so far of both processes (only those that happened), for the status."""
        with self._count_lock:
            out = dict(self._counts)
            for counts in self._child_counts.values():
                for what, n in counts.items():
                    out[what] = out.get(what, 0) + n
        return out

    @property
    def counters(self) -> dict[str, int]:
        """Like :meth:`counters_snapshot`, after asking the network process for its newest counts."""
        if self._thread is not None and self._thread.is_alive():
            self._fresh.clear()
            self._want_counts.set()
            self._fresh.wait(2.0)
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
        self._stale.set()
        self.publish(msg)

    def on_image(self, msg: ImageMsg) -> None:
        self.publish(msg)

    def on_reset(self, msg: ResetMsg) -> None:
        self.publish(msg)

    def on_analysis(self, msg: AnalysisMsg) -> None:
        self._stale.set()  # hello says the analysis in force and the epoch
        self.publish(msg)

    def on_state(self, msg: StateMsg) -> None:
        self.publish(msg)

    def on_dark(self, msg: DarkMsg) -> None:
        self._stale.set()  # hello lists the dark versions in force
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
        """Send raw frames towards the PUB socket (tests use it to publish garbage)."""
        size = sum(memoryview(f).nbytes for f in frames)
        with self._push_lock:
            if self._push is None:
                return
            self._largest = max(self._largest, size)
            try:
                self._push.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self._count("publish dropped")  # the network process is slow, or restarting
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

    def _serve(self, router: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if dict(poller.poll(10 if self._requests.pending else POLL_MS)):
                    self._receive(router)
                for rid, reply in self._requests.due():
                    self._answer(router, rid, reply)
                self._watch()
                if self._stale.is_set():
                    self._stale.clear()
                    self._to_child(router, "ctl", [b"stale"])
                if self._want_counts.is_set():
                    self._ask_counts(router)
        except Exception:  # the recorder must outlive its control thread
            log.exception("control thread failed")
            self._count("control thread failures")
        finally:
            router.close(0)

    def _ask_counts(self, router: zmq.Socket[bytes]) -> None:
        """Ask every network process for its counts; :attr:`counters` waits for the answers."""
        self._want_counts.clear()
        self._query += 1
        self._asked = {role for role, c in self._children.items() if c.proc is not None}
        for role in self._asked:
            self._to_child(router, role, [b"counters?", self._query.to_bytes(8, "big")])
        if not self._asked:
            self._fresh.set()

    def _watch(self) -> None:
        """Replace a network process that died or grew beyond its budget."""
        for role, child in self._children.items():
            why = child.check()
            if why is None:
                continue
            with self._count_lock:
                for what, n in self._child_counts.pop(role, {}).items():  # what it counted stays counted
                    self._counts[what] = self._counts.get(what, 0) + n
            self._count("network process restarts")
            self._asked.discard(role)
            what = "publish" if role == "pub" else "control"
            log.warning("network process (%s) restarted: %s; consoles reconnect by themselves", what, why)

    def _receive(self, router: zmq.Socket[bytes]) -> None:
        for _ in range(100):  # drain a burst, but keep replying to finished requests
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            role, kind = frames[0].decode(), frames[1] if len(frames) > 1 else b""
            if kind == b"counters" and len(frames) in (3, 4):
                with self._count_lock:
                    self._child_counts[role] = {str(k): int(v) for k, v in json.loads(frames[2]).items()}
                # an answer to the newest query, not a report sent before it
                if frames[3:] == [self._query.to_bytes(8, "big")] and role in self._asked:
                    self._asked.discard(role)
                    if not self._asked:
                        self._fresh.set()
            elif kind == b"req" and len(frames) == 4:
                reply = self._requests.handle(frames[2], frames[3])
                if reply is not None:
                    self._answer(router, frames[2], reply)

    def _answer(self, router: zmq.Socket[bytes], rid: bytes, reply: Reply) -> None:
        try:
            frames = wire.encode_reply(reply)
        except wire.WireError as exc:
            frames = wire.encode_reply(Reply(False, f"reply could not be encoded: {exc}"))
        self._to_child(router, "ctl", [b"ans", rid, *frames])

    def _to_child(self, router: zmq.Socket[bytes], role: str, frames: list[Any]) -> None:
        try:
            router.send_multipart([role.encode(), *frames], zmq.NOBLOCK)
        except zmq.ZMQError:
            self._count("replies dropped")  # no network process right now (restarting)

    def hello(self) -> Hello | None:
        """What a console needs to start (the reply to ``hello``); None while the source opens."""
        return self.recorder.hello(publish=self.addresses["publish"], control=self.addresses["control"])

