"""LocalFeed: a console's :class:`~.protocols.Feed` on a recorder in the same process.

The recorder's acquire thread puts what it emits into a bounded queue (this is a
:class:`~.protocols.Listener`); the console's feed thread takes it out. No sockets, no
encoding: ``shotwatch replay`` and ``shotwatch run`` watch their own recorder this way.
Like the network feed, a slow console never slows the recorder: past ``max_blocks`` blocks
waiting, the oldest are dropped whole and counted in :attr:`LocalFeed.skipped`, and a gap
in sequence numbers tells the console's model that its received tag range ended there.
Requests are validated with the wire's own models and dispatched like the network
service's (:func:`~.control.forward`), so an op means the same whichever way it came.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from . import wire
from .control import forward
from .messages import (
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
from .protocols import Control, Feed, Listener, NullListener
from .wire import READ_ONLY_ERROR, STARTING_ERROR

__all__ = ["LocalFeed"]

ADDRESS = "in-process"
"""What the hello says for the publish and control addresses of an in-process recorder."""
MAX_BLOCKS = 16
"""Blocks waiting at most (about 4 s of the recorder's 0.25 s publishing): like NetFeed's."""
MAX_MESSAGES = 512
"""Other messages waiting at most: minutes of heartbeats for a console that stopped reading."""
HEARTBEAT_TIMEOUT = 3.0
"""Seconds without a status before ``connected`` is false (the acquire thread died or hangs)."""


class LocalFeed(NullListener):
    """A Feed and a Listener in one (see the module docstring).

    Args:
        control: the recorder (it is listened to from construction until :meth:`close`).
        read_only: refuse requests that change anything, as a console without the token.
        max_blocks, max_messages: the queue's bounds.
        heartbeat_timeout: seconds without a status before ``connected`` turns false.
    """

    wants_blocks = True

    def __init__(self, control: Control, *, read_only: bool = False, max_blocks: int = MAX_BLOCKS,
                 max_messages: int = MAX_MESSAGES, heartbeat_timeout: float = HEARTBEAT_TIMEOUT) -> None:
        self.read_only = read_only
        self._control = control
        self._max_blocks, self._max_messages = max_blocks, max_messages
        self._heartbeat_timeout = heartbeat_timeout
        self._ready = threading.Condition()
        self._queue: deque[Message] = deque()
        self._blocks = 0
        self._skipped = 0
        self._last_status = time.monotonic()  # the recorder is right here: give it time
        self._hello: Hello | None = None
        self._closed = False
        control.add_listener(self)

    # --- Listener (the recorder's acquire thread) ------------------------------------------

    def on_block(self, msg: BlockMsg) -> None:
        self._put(msg)

    def on_status(self, msg: StatusMsg) -> None:
        self._last_status = time.monotonic()
        self._put(msg)

    def on_notice(self, msg: NoticeMsg) -> None:
        self._put(msg)

    def on_rois(self, msg: RoisMsg) -> None:
        self._put(msg)

    def on_image(self, msg: ImageMsg) -> None:
        self._put(msg)

    def on_reset(self, msg: ResetMsg) -> None:
        self._put(msg)

    def on_analysis(self, msg: AnalysisMsg) -> None:
        self._put(msg)

    def on_state(self, msg: StateMsg) -> None:
        self._put(msg)

    def on_dark(self, msg: DarkMsg) -> None:
        self._put(msg)

    def _put(self, msg: Message) -> None:
        with self._ready:
            if self._closed:
                return
            self._queue.append(msg)
            if isinstance(msg, BlockMsg):
                self._blocks += 1
                if self._blocks > self._max_blocks:
                    self._drop(lambda m: isinstance(m, BlockMsg))
            if len(self._queue) > self._max_messages:
                # heartbeats and images are superseded by newer ones; an AnalysisMsg or a
                # StateMsg goes only when nothing else can (the console then asks for hello)
                if not self._drop(lambda m: isinstance(m, StatusMsg | ImageMsg)):
                    self._drop(lambda m: not isinstance(m, BlockMsg))
            self._ready.notify()

    def _drop(self, which: Callable[[Message], bool]) -> bool:
        """Drop the oldest queued message ``which`` accepts (a block is counted as skipped);
        False if there was none."""
        for i, m in enumerate(self._queue):
            if which(m):
                del self._queue[i]
                if isinstance(m, BlockMsg):
                    self._blocks -= 1
                    self._skipped += 1
                return True
        return False

    # --- Feed (the console's feed thread) -------------------------------------------------

    @property
    def skipped(self) -> int:
        return self._skipped

    @property
    def connected(self) -> bool:
        return not self._closed and time.monotonic() - self._last_status <= self._heartbeat_timeout

    @property
    def last_hello(self) -> Hello | None:
        return self._hello

    def hello(self, *, timeout: float) -> Hello | None:
        """The recorder's hello, asking again until ``timeout`` while its source opens."""
        deadline = time.monotonic() + timeout
        while True:
            hello = self._control.hello(publish=ADDRESS, control=ADDRESS)
            if hello is not None:
                self._hello = hello
                self._last_status = max(self._last_status, time.monotonic())
                return hello
            if time.monotonic() + 0.05 >= deadline:
                return None
            time.sleep(0.05)

    def poll(self, *, timeout: float) -> list[Message]:
        with self._ready:
            if not self._queue and not self._closed:
                self._ready.wait(max(0.0, timeout))
            out = list(self._queue)
            self._queue.clear()
            self._blocks = 0
        return out

    def request(self, op: str, *, timeout: float = 2.0, **args: Any) -> Reply:
        """Validated with the wire's models, then the recorder's answer (within ``timeout``)."""
        roi = args.pop("roi", None)
        if roi is not None:
            args.update(roi if isinstance(roi, dict) else roi.model_dump(mode="json"))
        try:
            req = wire.decode_request(wire.encode_request(op, timeout=timeout, **args))
        except wire.WireError as exc:
            return Reply(False, f"{op}: {exc}")
        if op in ("hello", "list_rois"):
            hello = self.hello(timeout=timeout)
            if hello is None:
                return Reply(False, STARTING_ERROR)
            data = {"rois": [asdict(v) for v in hello.rois]} if op == "list_rois" else hello.model_dump(mode="json")
            return Reply(True, data=data)
        if self.read_only and op in wire.CHANGING_OPS:
            return Reply(False, READ_ONLY_ERROR)
        try:
            return forward(self._control, req).result(timeout=timeout)
        except FutureTimeout:
            return Reply(False, f"{op}: timed out after {timeout:g} s waiting for the recorder (it keeps running)")

    def close(self) -> None:
        """Stop listening; idempotent."""
        with self._ready:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            self._ready.notify_all()
        self._control.remove_listener(self)


if TYPE_CHECKING:
    def _conforms(feed: LocalFeed) -> tuple[Feed, Listener]:  # mypy checks both protocols
        return feed, feed
