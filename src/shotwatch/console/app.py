"""The console application: one factory (:func:`make_app`) for the command line and the tests.

The App holds the bindings that work everywhere, the feed thread, the notice history and the
colour depth; :class:`~shotwatch.console.live.LiveScreen` composes the widgets.

Colour depth, Textual 8: the App builds a Rich ``Console`` in ``App.__init__`` with
``color_system=textual.constants.COLOR_SYSTEM`` (the env var ``TEXTUAL_COLOR_SYSTEM``, read
once when ``textual`` is first imported, default ``"auto"``), and every frame is encoded by
``Strip.render`` with ``console._color_system``. ``App(ansi_color=...)`` is something else
(whether theme colours stay ANSI). So :func:`_limit_colors` caps ``console._color_system``
after ``App.__init__``: 256 colours by default, 16 with ``--low-bandwidth``, never truecolor,
and never more than the terminal was detected to have. An explicit ``TEXTUAL_COLOR_SYSTEM``
in the environment wins (an operator who asks for truecolor gets it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

from rich.color import ColorSystem
from textual.app import App
from textual.binding import Binding, BindingType

from ..link.protocols import Feed
from .feedloop import FeedLoop, FeedNotice, Greeted, RequestDone, SnapshotReady
from .live import LiveScreen
from .model import Snapshot
from .screens import HelpScreen, NoticesScreen

__all__ = ["ShotwatchApp", "make_app"]

_HISTORY = 500
"""Notices kept for ``l``."""


class ShotwatchApp(App[int]):
    """The shotwatch console. Build it with :func:`make_app`."""

    CSS_PATH = "console.tcss"
    TITLE = "shotwatch"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("l", "notices", "notices"),
        Binding("r", "reset", "reset avg"),
        Binding("p", "pause", "pause"),
        Binding("m", "mark", "mark", show=False),
    ]

    def __init__(self, feed: Feed, *, refresh_hz: float, low_bandwidth: bool, plot_every: float,
                 image_every: float, window: int, clock: Callable[[], float],
                 source_label: str | None) -> None:
        super().__init__()
        self.feed = feed
        self.refresh_hz = refresh_hz
        self.low_bandwidth = low_bandwidth
        self.plot_every = plot_every
        self.image_every = image_every
        self.clock = clock
        self.source_label = source_label
        self.snapshot: Snapshot | None = None
        self.connected = True
        self.skipped = 0
        self.hello: Any = None
        self.paused = False
        self.closing = False
        self.notices: list[tuple[float, str, str]] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        """Every control request sent (op, args), for the tests and the history."""
        self.live = LiveScreen(classes="-low" if low_bandwidth else None)
        # Snapshots come at least twice per paint (and every 0.5 s): a painted age is then at
        # most ~1 s behind, never a whole (2 s, --low-bandwidth) period, which read as STALE.
        self.loop = FeedLoop(feed, post=self.post_message, snapshot_every=min(0.5, 0.5 / refresh_hz),
                             window=window)
        _limit_colors(self, 16 if low_bandwidth else 256)

    def get_default_screen(self) -> LiveScreen:
        """Start on the live screen itself: pushing it over Textual's blank default screen
        painted the whole terminal twice (~6 kB each at 120x40), 13 s at 9600 baud."""
        return self.live

    def on_mount(self) -> None:
        self.loop.start()

    async def action_quit(self) -> None:
        """Stop painting, stop the feed thread, then leave (the caller closes the feed)."""
        self.closing = True
        self.exit(0)

    def on_unmount(self) -> None:
        self.closing = True
        self.loop.stop()

    # --- messages from the feed thread -------------------------------------------------

    def on_snapshot_ready(self, msg: SnapshotReady) -> None:
        first = self.snapshot is None and msg.snapshot is not None
        self.snapshot, self.connected, self.skipped = msg.snapshot, msg.connected, msg.skipped
        if first and not self.paused:
            self.live.tick()  # the first data go on screen now, not at the next tick

    def on_greeted(self, msg: Greeted) -> None:
        self.hello = msg.hello

    def on_feed_notice(self, msg: FeedNotice) -> None:
        severity = {"error": "error", "warning": "warning"}.get(msg.level, "information")
        self.notice(msg.text, severity=severity, when=msg.time)

    def on_request_done(self, msg: RequestDone) -> None:
        if not msg.reply.ok:
            self.notice(f"{msg.op} refused: {msg.reply.error or 'no reason given'}", severity="warning")
            if msg.op == "set_roi":
                self.live.forget_pending(str(msg.args.get("name")))
        elif msg.op == "grab":
            self.notice(f"grab: {msg.args.get('n')} frames averaged on {msg.args.get('detector')}")
        elif msg.op == "mark":
            self.notice(f"mark added: {msg.args.get('text')}")

    # --- services for the screens ------------------------------------------------------

    def notice(self, text: str, *, severity: str = "information", when: float | None = None) -> None:
        """Tell the operator (a toast) and keep it in the history (``l``)."""
        level = {"information": "info"}.get(severity, severity)
        self.notices.append((time.time() if when is None else when, level, text))
        del self.notices[:-_HISTORY]
        if not self.closing:
            self.notify(text, severity=severity, timeout=4 if severity == "information" else 8,  # type: ignore[arg-type]
                        markup=False)

    def send(self, op: str, *, timeout: float = 2.0, **args: Any) -> bool:
        """A control request via the feed thread; refused at once on a read-only feed."""
        if self.feed.read_only:
            self.notice(f"{op} refused: this console is read-only", severity="warning")
            return False
        self.requests.append((op, args))
        self.loop.request(op, timeout=timeout, **args)
        return True

    # --- actions that work on every screen ---------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_notices(self) -> None:
        if not isinstance(self.screen, NoticesScreen):
            self.push_screen(NoticesScreen())

    def action_reset(self) -> None:
        self.loop.reset()
        self.notice("averages reset: received tag ranges start again")

    def action_pause(self) -> None:
        self.paused = not self.paused
        pause = getattr(self.feed, "set_paused", None)
        if pause is not None:  # a replay pauses too, not just the display
            state = self.paused
            self.loop.call(lambda: pause(state))
        self.notice("display paused (p resumes)" if self.paused else "display resumed")
        self.live.tick()  # say PAUSED now, not at the next tick

    def action_mark(self) -> None:
        screen = self.screen
        if isinstance(screen, LiveScreen):
            screen.open_mark_form()


def _limit_colors(app: App[Any], depth: int) -> None:
    """Cap the colour system at 16 or 256 colours (see the module docstring for why here)."""
    if "TEXTUAL_COLOR_SYSTEM" in os.environ:
        return
    cap = ColorSystem.STANDARD if depth <= 16 else ColorSystem.EIGHT_BIT
    current = app.console._color_system
    if current is None or current == ColorSystem.WINDOWS:
        return  # no colour at all (NO_COLOR, dumb terminal): never add any
    app.console._color_system = min(current, cap)


def make_app(
    feed: Feed,
    *,
    refresh_hz: float | None = None,
    low_bandwidth: bool = False,
    plot_every: float = 5.0,
    image_every: float = 10.0,
    window: int = 2000,
    clock: Callable[[], float] = time.time,
    source_label: str | None = None,
) -> ShotwatchApp:
    """The console on ``feed``; the command line and the tests both build it here.

    Args:
        feed: live network client or replay (anything with the ``Feed`` protocol).
        refresh_hz: paint rate; default 1 Hz, 0.5 Hz with ``low_bandwidth``.
        low_bandwidth: 16 colours; status, sparklines and numbers only (no plots, no thumbnail).
        plot_every: seconds between plot repaints (plots are not repainted every tick).
        image_every: seconds between thumbnail repaints (plus on demand).
        window: shots kept for sparklines, histogram, correlation and trend.
        clock: wall clock (tests pass a fake one).
        source_label: what the status bar calls the source (default: the recorder's kind).
    """
    hz = refresh_hz if refresh_hz is not None else (0.5 if low_bandwidth else 1.0)
    if not hz > 0:
        raise ValueError(f"--refresh: expected a rate > 0 Hz, found {hz}")
    return ShotwatchApp(feed, refresh_hz=hz, low_bandwidth=low_bandwidth, plot_every=plot_every,
                        image_every=image_every, window=window, clock=clock, source_label=source_label)
