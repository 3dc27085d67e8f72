"""The typed seams between the recorder and its consoles (DESIGN.md, link/).

:class:`Feed` is what a console reads from (the network client, or an in-process queue);
:class:`Listener` is what the recorder's acquire loop talks to (the network service, a
progress line, an in-process feed). mypy checks every implementation against these; nothing
looks a method up by name at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from .messages import BlockMsg, Hello, ImageMsg, Message, NoticeMsg, Reply, RoisMsg, StatusMsg

__all__ = ["Feed", "Listener", "NullListener"]


class Listener(Protocol):
    """Receives everything the recorder emits, on the recorder's acquire thread.

    Every method must return quickly and never block (a slow consumer drops, it never slows
    acquisition); an exception is logged by the recorder and otherwise ignored.
    """

    wants_blocks: bool
    """False for a listener that ignores :meth:`on_block`: with none that wants them, the
    recorder does not even join its pending blocks into one message."""

    def on_block(self, msg: BlockMsg) -> None:
        """A block of shots (cutouts and points, never full frames), sequence-numbered."""

    def on_status(self, msg: StatusMsg) -> None:
        """The heartbeat (>= 1 Hz)."""

    def on_notice(self, msg: NoticeMsg) -> None:
        """A one-line notice for the operator."""

    def on_rois(self, msg: RoisMsg) -> None:
        """The ROI table changed."""

    def on_image(self, msg: ImageMsg) -> None:
        """A mean detector image (running average or grab)."""

    def on_recording(self, path: Path) -> None:
        """A new recording was opened (the first, or one for a new run)."""


class NullListener:
    """A :class:`Listener` that ignores everything: subclass it and override what you need."""

    wants_blocks = False

    def on_block(self, msg: BlockMsg) -> None:
        """Ignored."""

    def on_status(self, msg: StatusMsg) -> None:
        """Ignored."""

    def on_notice(self, msg: NoticeMsg) -> None:
        """Ignored."""

    def on_rois(self, msg: RoisMsg) -> None:
        """Ignored."""

    def on_image(self, msg: ImageMsg) -> None:
        """Ignored."""

    def on_recording(self, path: Path) -> None:
        """Ignored."""


class Feed(Protocol):
    """What a console reads from: the live network client or a replay.

    Every method returns within its timeout; none raises for a vanished recorder (the feed
    reports it through ``connected`` and keeps trying).
    """

    read_only: bool
    """True when requests that change anything will be refused."""

    def hello(self, *, timeout: float) -> Hello | None:
        """The recorder's hello (None if it did not answer in time)."""

    def poll(self, *, timeout: float) -> list[Message]:
        """Messages that arrived, waiting at most ``timeout`` s for the first.

        A slow reader gets the newest data: the feed drops whole blocks and counts them
        in ``skipped``.
        """

    @property
    def skipped(self) -> int:
        """Blocks dropped (sequence gaps or drained backlog) so far."""

    @property
    def connected(self) -> bool:
        """False once the heartbeat has been missing for a few seconds."""

    def request(self, op: str, *, timeout: float = 2.0, **args: Any) -> Reply:
        """A control request: set_roi, delete_roi, list_rois, grab, mark, stop."""

    def close(self) -> None:
        """Release sockets/files; idempotent."""
