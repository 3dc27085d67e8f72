"""Every key of the console, declared once: its bindings, its key-bar entry and its help lines.

The App's and the live screen's ``BINDINGS``, the key bar (:func:`bar_text`) and the help page
(:data:`HELP`) are all generated from :data:`KEYS`, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rich.text import Text
from textual.binding import Binding, BindingType

from .tuning import DARK_FRAMES, GRAB_FRAMES, SEEK_STEP_S

__all__ = ["BAR_LINES", "CHOOSER_BAR", "CONFIRM_BAR", "FORM_BAR", "HELP", "KEYS", "PAGE_CLOSE", "YES_NO_BAR", "Keys", "bar_text",
           "bindings", "main_bar", "page_bindings"]

Scope = Literal["app", "live"]


@dataclass(frozen=True)
class Keys:
    """One entry of the key table.

    Attributes:
        scope: ``app`` (works on every screen) or ``live`` (the live screen's).
        bindings: (key, action) pairs, Textual key names and action strings.
        bar: (keys as shown, what) on the key bar, or None to keep it off the bar.
        help: (keys as shown, what) lines of the help page.
    """

    scope: Scope
    bindings: tuple[tuple[str, str], ...]
    bar: tuple[str, str] | None
    help: tuple[tuple[str, str], ...]


def _arrows(step: int, prefix: str = "") -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{key}", f"nudge({dx * step}, {dy * step})")
                 for key, dx, dy in (("left", -1, 0), ("right", 1, 0), ("up", 0, -1), ("down", 0, 1)))


_STEP = int(SEEK_STEP_S)

KEYS: tuple[Keys, ...] = (
    Keys("live", (("1", "view('scan')"), ("2", "view('correlation')"), ("3", "view('histogram')"),
                  ("4", "view('trend')")), ("1-4", "plots"),
         (("1 2 3 4", "plot: ROI/I0 vs scan (bins, SEM, on/off) · correlation (c chooses) · histogram (h chooses) "
                      "· trend vs tag"),)),
    Keys("live", (("c", "choose_correlation"),), ("c", "corr"),
         (("c", "correlation of any two values (I0, ROIs, channels, aliases, points): type to filter, "
                "arrows, enter; y first, then x"),)),
    Keys("live", (("h", "choose_histogram"),), ("h", "hist"),
         (("h", "histogram of I0 or any value since reset, with its accepted window (I0 or veto bounds)"),)),
    Keys("live", (("d", "view('detector')"),), ("d", "image"),
         (("d", "detector: running-average thumbnail with the ROI rectangles; d again: the dark, the mask "
                "(white: pixels that never count), the image"),)),
    Keys("live", (("tab", "next_roi"),), ("tab", "ROI"), (("tab", "select the next ROI"),)),
    Keys("live", (("e", "edit"),), ("e", "edit"),
         (("e", "edit the selected ROI: x0 x1 y0 y1 (tab moves, enter applies, esc cancels)"),)),
    Keys("live", (("n", "new"),), ("n", "new"), (("n", "new ROI (name, detector, x0 x1 y0 y1)"),)),
    Keys("live", (("x", "delete"),), ("x", "del"), (("x", "delete the selected ROI (asks y/n)"),)),
    Keys("live", (*_arrows(1), *_arrows(10, "shift+"), ("plus", "grow(1)"), ("minus", "grow(-1)")),
         ("←↑→↓+-", "move"),
         (("arrows", "move the selected ROI by 1 px (detector view); shift+arrows by 10 px"),
          ("+ -", "grow / shrink the selected ROI by 1 px on each side"))),
    Keys("live", (("g", "grab"),), ("g", "grab"),
         (("g", f"grab a fresh {GRAB_FRAMES}-frame average of the selected ROI's detector"),)),
    Keys("live", (("a", "analysis"),), ("a", "analysis"),
         (("a", "analysis form: I0 window, veto bounds, scan scale/offset/edges, pump-probe, threshold, photon "
                "energy, channels (tab moves, pages follow; enter applies and the whole run is recomputed)"),)),
    Keys("live", (("D", "dark"),), ("D", "dark"),
         (("D", f"take a dark of the selected ROI's detector now (asks N, default {DARK_FRAMES}; y/n while the "
                "beam is on)"),)),
    Keys("live", (("R", "recompute"),), ("R", "recompute"),
         (("R", "recompute the whole recording so far under the analysis in force"),)),
    Keys("app", (("r", "reset"),), ("r", "reset"),
         (("r", "reset this console's averages (ROI changes reset that ROI's by themselves)"),)),
    Keys("app", (("p", "pause"),), ("p", "pause"), (("p", "pause the display (and a replay)"),)),
    Keys("app", (("m", "mark"),), ("m", "mark"), (("m", "add a mark to the recording"),)),
    Keys("live", (("left_square_bracket", f"seek({-_STEP})"), ("right_square_bracket", f"seek({_STEP})"),
                  ("home", "seek_start")), None,
         (("[ ] home", f"replay: back / forward {_STEP} s, back to the start (every console restarts)"),)),
    Keys("live", (("less_than_sign", "speed(0.5)"), ("greater_than_sign", "speed(2.0)")), None,
         (("< >", "replay: half / twice the speed"),)),
    Keys("app", (("l", "notices"),), ("l", "log"), (("l", "notices and the tag ranges this console received"),)),
    Keys("app", (("question_mark", "help"),), ("?", "help"), (("?", "this page"),)),
    Keys("app", (("q", "quit"),), ("q", "quit"),
         (("q", "quit (under `shotwatch run` this stops the recorder too)"),)),
)

PAGE_CLOSE = (("escape", "esc"), ("q", "q"), ("question_mark", "?"), ("l", "l"))
"""Keys that close the help and notices pages (Textual name, as shown)."""

FORM_BAR = (("enter", "apply"), ("esc", "cancel"), ("tab", "next field"))
"""The key bar while a form is open (its keys go to the form, not to bindings)."""
CHOOSER_BAR = (("type", "filter"), ("←→↑↓", "move"), ("enter", "choose"), ("esc", "cancel"))
"""The key bar while a value is chosen from a filtered list (``c``, ``h``)."""
YES_NO_BAR = (("y", "yes"), ("any other key", "no"))
"""The key bar while a y/n question waits (a dark with the beam on)."""
CONFIRM_BAR = (("y", "delete"), ("any other key", "keep"))
"""The key bar while a delete waits for its confirmation."""


def bindings(scope: Scope) -> list[BindingType]:
    """The Textual bindings of ``scope`` (shown by our own key bar, never by a Footer)."""
    out: list[BindingType] = []
    for entry in KEYS:
        if entry.scope == scope:
            what = entry.bar[1] if entry.bar else entry.help[0][1]
            out += [Binding(key, action, what, show=False) for key, action in entry.bindings]
    return out


def page_bindings() -> list[BindingType]:
    """The bindings of the help and notices pages: each closes the page."""
    return [Binding(key, "close", "close", show=False) for key, _ in PAGE_CLOSE]


def main_bar() -> tuple[tuple[str, str], ...]:
    """The key bar of the live screen: every entry that has one, ``?`` first (whatever a
    narrow terminal cuts off, help stays in sight), then in table order."""
    pairs = [entry.bar for entry in KEYS if entry.bar is not None]
    return tuple(sorted(pairs, key=lambda p: p[0] != "?"))


BAR_LINES = 2
"""Lines of the key bar: every key of the live screen fits 2 x 80 columns."""


def bar_text(pairs: tuple[tuple[str, str], ...], width: int | None = None) -> Text:
    """``key what`` pairs, keys in reverse video; wrapped between pairs onto at most
    :data:`BAR_LINES` lines of ``width`` (None: one line), the rest cut with an ellipsis."""
    text = Text(no_wrap=True, overflow="ellipsis")
    lines, used = 1, 0
    for key, what in pairs:
        cell = len(key) + len(what) + 2
        if width is not None and used and used + cell > width and lines < BAR_LINES:
            text.append("\n")
            lines, used = lines + 1, 0
        text.append(key, style="bold reverse")
        text.append(f" {what} ")
        used += cell
    return text


def _help() -> str:
    lines = [f"  {keys:<11} {what}" for entry in KEYS for keys, what in entry.help]
    return "\n".join([
        "shotwatch console — keys", "", *lines, "",
        "Every number is over the shots this console received since its last reset (after an analysis",
        "change, a dark or R: the whole recording so far, recomputed); `l` lists their tag ranges, so",
        "`shotwatch reduce REC --tags A:B` over them gives the same numbers.",
        "ROI changes go to the recorder and show here when it broadcasts them.", "",
        f"{', '.join(shown for _, shown in PAGE_CLOSE)} close this page.", "",
    ])


HELP = _help()
"""The help page (``?``)."""
