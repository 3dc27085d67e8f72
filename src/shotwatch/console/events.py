"""What the screens ask of the App, as Textual messages (they bubble up to it).

A screen never calls the App's methods nor reaches its feed: it posts one of these, and the
App (which owns the feed thread and the notice history) acts on it. Down the tree it goes the
other way: the App hands the live screen a :class:`Picture` of what to paint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from textual.message import Message

from .model import Snapshot

__all__ = ["Ask", "Display", "Picture", "Say", "Severity"]

Severity = Literal["information", "warning", "error"]


@dataclass
class Ask(Message):
    """Send a control request to the recorder (from the feed thread; the reply comes back as
    a notice, and a refused ``set_roi`` is forgotten by the screen)."""

    op: str
    args: dict[str, Any] = field(default_factory=dict)
    timeout: float = 2.0


@dataclass
class Say(Message):
    """A notice for the operator: a toast, and a line in the history (``l``)."""

    text: str
    severity: Severity = "information"


@dataclass(frozen=True)
class Picture:
    """What the live screen paints: the newest snapshot and the feed's state."""

    snapshot: Snapshot | None = None
    connected: bool = True
    skipped: int = 0
    paused: bool = False
    read_only: bool = False
    """The feed refuses requests that change anything (no token): the forms do not open."""


@dataclass(frozen=True)
class Display:
    """How the console paints, fixed for its life (``make_app``'s arguments)."""

    refresh_hz: float = 1.0
    low_bandwidth: bool = False
    plot_every: float = 5.0
    image_every: float = 10.0
    clock: Callable[[], float] = time.time
    source_label: str | None = None
    user: str = ""
    """``user@host`` of this console: who set an analysis version."""
