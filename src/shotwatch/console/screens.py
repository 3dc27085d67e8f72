"""Full screens the operator opens briefly: key help (``?``) and the notice history (``l``).

Both are plain Screens, not ModalScreens: a dimmed background would keep repainting under
the dim while it is open (STYLE.md); these hide the live screen, which stops painting.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from . import format as fmt
from .keys import HELP, page_bindings
from .model import Snapshot

__all__ = ["HelpScreen", "NoticesScreen"]


class _Page(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = page_bindings()

    def action_close(self) -> None:
        self.app.pop_screen()


class HelpScreen(_Page):
    """Every key, what it does, and what the numbers mean."""

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(HELP, id="help")


class NoticesScreen(_Page):
    """Notice history (newest last) and the complete list of received tag ranges."""

    def __init__(self, snapshot: Snapshot | None, notices: list[tuple[float, str, str]]) -> None:
        super().__init__()
        self._snapshot, self._notices = snapshot, notices

    def compose(self) -> ComposeResult:
        snap = self._snapshot
        ranges = snap.tag_ranges if snap else ()
        status = snap.status if snap else None
        lines = [f"received tag ranges since reset ({len(ranges)}): "
                 + (" ".join(f"{a}:{b}" for a, b in ranges) or "none")]
        if status is not None and (status.missing or status.counters):
            counted = {**status.missing, **status.counters}
            lines.append("counted: " + ", ".join(f"{k} {v}" for k, v in counted.items()))
        lines += ["", "notices (newest last):", fmt.notice_lines(self._notices) or "none"]
        with VerticalScroll():
            yield Static("\n".join(lines), id="notices", markup=False)
