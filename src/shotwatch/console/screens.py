"""Full screens the operator opens briefly: key help (``?``) and the notice history (``l``).

Both are plain Screens, not ModalScreens: a dimmed background would keep repainting under
the dim while it is open (STYLE.md); these hide the live screen, which stops painting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from . import format as fmt

if TYPE_CHECKING:
    from .app import ShotwatchApp

__all__ = ["HELP", "HelpScreen", "NoticesScreen"]

HELP = """\
shotwatch console — keys

  1 2 3 4     plot: ROI/I0 vs scan (bins, SEM, on/off) · ROI vs I0 · histogram · trend vs tag
  d           detector: running-average thumbnail with the ROI rectangles
  g           grab a fresh 10-frame average of the selected ROI's detector
  tab         select the next ROI
  e           edit the selected ROI: x0 x1 y0 y1 (tab moves, enter applies, esc cancels)
  n           new ROI (name, detector, x0 x1 y0 y1)
  x           delete the selected ROI (asks y/n)
  arrows      move the selected ROI by 1 px (detector view); shift+arrows by 10 px
  + -         grow / shrink the selected ROI by 1 px on each side
  r           reset this console's averages (ROI changes reset that ROI's by themselves)
  p           pause the display (and a replay)
  m           add a mark to the recording
  [ ] home    replay: back / forward 10 s, back to the start
  l           notices and the tag ranges this console received
  q           quit (under `shotwatch run` this stops the recorder too)

Every number is over the shots this console received since its last reset; `l` lists their
tag ranges, so `shotwatch reduce REC --tags A:B` over them gives the same numbers.
ROI changes go to the recorder and show here when it broadcasts them.

esc, q or ? closes this page.
"""


class _Page(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "close"),
        Binding("q", "close", "close", show=False),
        Binding("question_mark", "close", show=False),
        Binding("l", "close", show=False),
    ]

    def action_close(self) -> None:
        self.app.pop_screen()


class HelpScreen(_Page):
    """Every key, what it does, and what the numbers mean."""

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(HELP, id="help")


class NoticesScreen(_Page):
    """Notice history (newest last) and the complete list of received tag ranges."""

    def compose(self) -> ComposeResult:
        app: ShotwatchApp = self.app  # type: ignore[assignment]
        snap = app.snapshot
        ranges = snap.tag_ranges if snap else ()
        status = snap.status if snap else None
        lines = [f"received tag ranges since reset ({len(ranges)}): "
                 + (" ".join(f"{a}:{b}" for a, b in ranges) or "none")]
        if status is not None and (status.missing or status.counters):
            counted = {**status.missing, **status.counters}
            lines.append("counted: " + ", ".join(f"{k} {v}" for k, v in counted.items()))
        lines += ["", "notices (newest last):", fmt.notice_lines(app.notices) or "none"]
        with VerticalScroll():
            yield Static("\n".join(lines), id="notices", markup=False)
