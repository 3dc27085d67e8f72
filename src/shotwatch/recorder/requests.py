"""Requests from other threads, applied by the acquire loop at block boundaries.

A request is a piece of work and the future its caller waits on. The acquire thread runs
the work between two reads, so the recorder's state (ROI table, source, recording) is only
ever touched by that one thread.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from concurrent.futures import Future

from ..link.messages import Reply

__all__ = ["RequestQueue"]

log = logging.getLogger("shotwatch.recorder")


class RequestQueue:
    """Work for the acquire thread, each with its caller's future."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Reply | None], Future[Reply]]] = queue.SimpleQueue()

    def submit(self, work: Callable[[], Reply | None], future: Future[Reply] | None = None) -> Future[Reply]:
        """Queue ``work``; its reply resolves the future, unless it returns None (it will later)."""
        fut: Future[Reply] = future if future is not None else Future()
        self._queue.put((work, fut))
        return fut

    def apply(self) -> None:
        """Run everything queued (acquire thread); a failing request becomes its error reply."""
        while True:
            try:
                work, fut = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                reply = work()
            except Exception as exc:
                log.exception("request failed")
                reply = Reply(False, f"request failed: {exc}")
            if reply is not None and not fut.done():
                fut.set_result(reply)
