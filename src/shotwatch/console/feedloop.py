"""The feed thread: every call on the feed, and all reduction, happens here, off the UI thread.

One thread owns the feed (so a feed need not be thread-safe) and the :class:`LiveModel`. The UI
hands it work through :meth:`FeedLoop.call` (a queue of callables) and hears back only through
``post`` (Textual's thread-safe ``post_message``): snapshots, notices and request replies.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.message import Message

from ..link.messages import Hello, NoticeMsg, Reply, ResetMsg, StatusMsg
from ..link.protocols import Feed
from .darks import dark_from_reply
from .model import LiveModel, Snapshot
from .tuning import FEED_POLL_S, HELLO_RETRY_S, HELLO_TIMEOUT_S, LOOP_ERROR_PAUSE_S, WINDOW_SHOTS

__all__ = ["FeedLoop", "FeedNotice", "Greeted", "RequestDone", "SnapshotReady"]

DARK_RETRY_S = 5.0
"""A dark that could not be fetched is asked for again after this long."""
DARK_TIMEOUT_S = 10.0
"""A dark is two float32 frames (4 MB for an MPCCD sensor): 10 s even over a slow link."""
REHELLO_S = 1.0
"""Least seconds between two hellos asked for because the model's epoch is stale (a hello
answered from the control process's cache may still be the old one)."""

@dataclass
class SnapshotReady(Message):
    """A new picture of the model (posted at most at the paint rate)."""

    snapshot: Snapshot
    connected: bool
    skipped: int


@dataclass
class Greeted(Message):
    """The recorder answered hello: configuration, detectors, ROIs."""

    hello: Hello


@dataclass
class FeedNotice(Message):
    """A notice for the operator (from the recorder, or the feed thread's own trouble)."""

    time: float
    level: str
    text: str


@dataclass
class RequestDone(Message):
    """A control request came back (``reply.ok`` false: refused or failed)."""

    op: str
    reply: Reply
    args: dict[str, Any]


class FeedLoop:
    """Drives a feed on a daemon thread.

    Args:
        feed: what to read from.
        post: thread-safe delivery to the UI (``App.post_message``).
        snapshot_every: least interval between snapshots, seconds (the paint period).
        window: shots the model keeps for sparklines and plots.
    """

    def __init__(self, feed: Feed, *, post: Callable[[Message], object], snapshot_every: float,
                 window: int = WINDOW_SHOTS) -> None:
        self.feed = feed
        self._post = post
        self._every = snapshot_every
        self._window = window
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shotwatch-feed", daemon=True)
        self.model: LiveModel | None = None
        self._hello: Hello | None = None
        self._dark_asked: dict[tuple[str, int], float] = {}  # when each missing dark was last asked for
        self._rehello_at = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, timeout: float = 3.0) -> None:
        """Ask the thread to finish and wait for it (so the caller may close the feed)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the feed thread, between two polls."""
        self._inbox.put(fn)

    def reset(self) -> None:
        """Restart this console's averages (``r``; a replay seek restarts every console's)."""
        self.call(lambda: self.model.reset() if self.model else None)

    def request(self, op: str, *, timeout: float = 2.0, **args: Any) -> None:
        """Send a control request from the feed thread; the reply comes back as RequestDone."""
        def send() -> None:
            try:
                reply = self.feed.request(op, timeout=timeout, **args)
            except Exception as exc:  # a feed must not raise, but a notice beats a dead thread
                reply = Reply(ok=False, error=f"{type(exc).__name__}: {exc}")
            self._post(RequestDone(op, reply, args))
        self.call(send)

    def _run(self) -> None:
        last_post, last_key = 0.0, None
        while not self._stop.is_set():
            try:
                self._drain_inbox()
                if self.model is None and not self._greet():
                    continue
                self._poll()
                self._fetch_darks()
                key = (self.model.version if self.model else -1, self.feed.connected, self.feed.skipped)
                now = time.monotonic()
                if self.model is not None and key != last_key and now - last_post >= self._every:
                    self._post(SnapshotReady(self.model.snapshot(), key[1], key[2]))
                    last_post, last_key = now, key
            except Exception as exc:  # shown as a notice; the loop keeps going
                self._post(FeedNotice(time.time(), "error", f"console feed: {type(exc).__name__}: {exc}"))
                self._stop.wait(LOOP_ERROR_PAUSE_S)

    def _drain_inbox(self) -> None:
        while True:
            try:
                fn = self._inbox.get_nowait()
            except queue.Empty:
                return
            fn()

    def _greet(self) -> bool:
        hello = self.feed.hello(timeout=HELLO_TIMEOUT_S)
        if hello is None:
            self._stop.wait(HELLO_RETRY_S)
            return False
        self._adopt(hello)
        return True

    def _adopt(self, hello: Hello) -> None:
        self.model = LiveModel(hello, window=self._window)
        self._hello = hello
        self._post(Greeted(hello))

    def _fetch_darks(self) -> None:
        """Ask the recorder for the dark frames the analysis names that the model lacks
        (a console that joined after a dark was taken); again every few seconds until it has them."""
        assert self.model is not None
        now = time.monotonic()
        for det, k in self.model.missing_darks:
            asked = self._dark_asked.get((det, k))
            if asked is not None and now - asked < DARK_RETRY_S:
                continue
            if asked is None:
                self._post(FeedNotice(time.time(), "warning", f"dark of {det} v{k}: fetching it from the recorder; "
                                                              "ROI values are not shown until it is here"))
            self._dark_asked[(det, k)] = now
            reply = self.feed.request("get_dark", timeout=DARK_TIMEOUT_S, detector=det, version=k)
            try:
                frame = dark_from_reply(reply, detector=det, version=k, shapes=self.model.shapes)
            except ValueError as exc:
                self._post(FeedNotice(time.time(), "error", f"{exc}: ROI values are not shown until it is here"))
                continue
            self.model.add_dark(det, k, frame)

    def _check_new_recorder(self) -> None:
        """A recorder restarted with another configuration: its numbers need a new model."""
        hello = self.feed.last_hello
        if hello is None or hello is self._hello:
            return
        old = self._hello
        self._hello = hello
        model = self.model
        if old is not None and model is not None and hello.epoch == model.epoch \
                and (hello.config, hello.source.detectors) == (model.config, old.source.detectors):
            return  # same analysis: the averages simply continue
        self._adopt(hello)
        self._post(FeedNotice(time.time(), "warning", "the recorder's configuration changed: averages restarted"))

    def _poll(self) -> None:
        assert self.model is not None
        msgs = self.feed.poll(timeout=FEED_POLL_S)
        self._check_new_recorder()
        for msg in msgs:
            if isinstance(msg, NoticeMsg):
                self._post(FeedNotice(msg.time, msg.level, msg.text))
                continue
            self.model.apply(msg)
            if isinstance(msg, ResetMsg):  # the recorder restarted every console's averages
                self._post(FeedNotice(msg.time, "info", msg.reason))
            # Only a heartbeat says an epoch was missed: right after an AnalysisMsg the status
            # in hand is still the one before it (a hello then, at every change, restarted the
            # averages with a "missed" warning).
            if isinstance(msg, StatusMsg) and self.model.stale:
                self._catch_up()

    def _catch_up(self) -> None:
        """An analysis change was missed (the status's epoch is not the model's): start over from
        a new hello; the messages after this status belong to it (at most once a second)."""
        now = time.monotonic()
        if now - self._rehello_at < REHELLO_S:
            return
        self._rehello_at = now
        hello = self.feed.hello(timeout=HELLO_TIMEOUT_S)
        if hello is None:
            return
        self._adopt(hello)
        self._post(FeedNotice(time.time(), "warning", f"missed an analysis change: now under analysis version "
                                                      f"{hello.analysis_version} (epoch {hello.epoch}), averages restarted"))
