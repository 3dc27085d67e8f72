"""Who hears the recorder: its listeners (the network service, an in-process feed, a progress
line) and the counters of other parts it shows in its status.

Called from the acquire thread only (adding and removing may come from any thread: the
lists are copied before each call). A failing listener is logged and otherwise ignored, so
one broken consumer never stops acquisition or the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Literal

from ..link.messages import NoticeMsg
from ..link.protocols import Listener

__all__ = ["Broadcast"]

log = logging.getLogger("shotwatch.recorder")

Level = Literal["info", "warning", "error"]


class Broadcast:
    """The recorder's listeners and counter sources."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._counters: list[Callable[[], Mapping[str, int]]] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def add_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        self._counters.append(counters)

    def remove_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        if counters in self._counters:
            self._counters.remove(counters)

    def counters(self) -> dict[str, int]:
        """Every other part's counted faults, merged."""
        out: dict[str, int] = {}
        for more in list(self._counters):
            out.update(more())
        return out

    @property
    def wants_blocks(self) -> bool:
        """Some listener takes blocks (else the recorder need not even join them)."""
        return any(listener.wants_blocks for listener in self._listeners)

    def emit(self, call: Callable[[Listener], None]) -> None:
        """``call`` each listener (a failing one is logged)."""
        for listener in list(self._listeners):
            try:
                call(listener)
            except Exception:
                log.exception("listener %r failed", listener)

    def notice(self, text: str | None, *, level: Level = "warning") -> None:
        """A one-line notice: to the log, and to every listener (None or empty: nothing)."""
        if not text:
            return
        log.log(logging.INFO if level == "info" else logging.WARNING, "%s", text)
        msg = NoticeMsg(time.time(), text, level)
        self.emit(lambda listener: listener.on_notice(msg))
