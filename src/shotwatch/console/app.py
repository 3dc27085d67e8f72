"""The console application: one factory (:func:`make_app`) for the command line and the tests.

The App holds the bindings that work everywhere, the feed thread, the notice history and the
colour depth; :class:`~shotwatch.console.live.LiveScreen` composes the widgets and asks the
App for requests and notices with messages (``events.py``).

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

import getpass
import os
import socket
import time
from collections.abc import Callable
from typing import Any, ClassVar

from rich.color import ColorSystem
from textual.app import App
from textual.binding import BindingType

from ..link.messages import Hello
from ..link.protocols import Feed
from ..link.wire import CHANGING_OPS
from .events import Ask, Display, Picture, Say, Severity
from .feedloop import FeedLoop, FeedNotice, Greeted, RequestDone, SnapshotReady
from .format import alarm_key, recomputed_text
from .keys import bindings
from .live import LiveScreen
from .model import Snapshot
from .screens import HelpScreen, NoticesScreen
from .tuning import (
    ERROR_TOAST_S,
    IMAGE_EVERY,
    INFO_TOAST_S,
    NOTICE_HISTORY,
    PLOT_EVERY,
    REFRESH_HZ,
    REFRESH_HZ_LOW,
    SNAPSHOT_EVERY,
    WINDOW_SHOTS,
)

__all__ = ["ShotwatchApp", "make_app"]


class ShotwatchApp(App[int]):
    """The shotwatch console. Build it with :func:`make_app`."""

    CSS_PATH = "console.tcss"
    TITLE = "shotwatch"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = bindings("app")

    def __init__(self, feed: Feed, *, settings: Display, window: int) -> None:
        super().__init__()
        self.feed = feed
        self.settings = settings
        self.refresh_hz = settings.refresh_hz
        self.low_bandwidth = settings.low_bandwidth
        self.snapshot: Snapshot | None = None
        self.connected = True
        self.skipped = 0
        self.hello: Hello | None = None
        self.paused = False
        self.closing = False
        self.notices: list[tuple[float, str, str]] = []
        self.ringing: set[str] = set()
        """The alarms ringing at the last snapshot (by kind), so each rings the bell once."""
        self.bells = 0
        self.requests: list[tuple[str, dict[str, Any]]] = []
        """Every control request sent (op, args), for the tests and the history."""
        self.live = LiveScreen(settings)
        # Snapshots come at least twice per paint (and every 0.5 s): a painted age is then at
        # most ~1 s behind, never a whole (2 s, --low-bandwidth) period, which read as STALE.
        self.loop = FeedLoop(feed, post=self.post_message, window=window,
                             snapshot_every=min(SNAPSHOT_EVERY, SNAPSHOT_EVERY / settings.refresh_hz))
        _limit_colors(self, 16 if settings.low_bandwidth else 256)

    def get_default_screen(self) -> LiveScreen:
        """Start on the live screen itself: pushing it over Textual's blank default screen
        painted the whole terminal twice (~6 kB each at 120x40), 13 s at 9600 baud."""
        return self.live

    def on_mount(self) -> None:
        self.loop.start()

    async def action_quit(self) -> None:
        """Stop painting, stop the feed thread, then leave (the caller closes the feed)."""
        self.closing = True
        self.live.stop_painting()
        self.exit(0)

    def on_unmount(self) -> None:
        self.closing = True
        self.live.stop_painting()
        self.loop.stop()

    def _show(self) -> None:
        """Hand the live screen what it paints at its next tick."""
        self.live.picture = Picture(self.snapshot, self.connected, self.skipped, self.paused, self.feed.read_only)

    # --- messages from the feed thread -------------------------------------------------

    def on_snapshot_ready(self, msg: SnapshotReady) -> None:
        first = self.snapshot is None and msg.snapshot is not None
        old, self.snapshot, self.connected, self.skipped = self.snapshot, msg.snapshot, msg.connected, msg.skipped
        self._ring(msg.snapshot)
        self._recomputed(old, msg.snapshot)
        self._show()
        if first and not self.paused:
            self.live.tick()  # the first data go on screen now, not at the next tick

    def _ring(self, snap: Snapshot | None) -> None:
        """The terminal bell, once, when an alarm starts (the recorder's notice says which;
        the status line stays red while any rings)."""
        status = snap.status if snap is not None else None
        if status is None:
            return
        ringing = {alarm_key(text) for text in status.alarms}
        if ringing - self.ringing and not self.closing:
            self.bell()
            self.bells += 1
        self.ringing = ringing

    def _recomputed(self, old: Snapshot | None, new: Snapshot | None) -> None:
        """A notice when a recomputed state was swapped in (the model says so once per epoch)."""
        if new is None or new.recomputed is None:
            return
        if old is not None and (old.epoch, old.recomputed) == (new.epoch, new.recomputed):
            return
        shots, seconds = new.recomputed
        self.notice(recomputed_text(shots, seconds) + f": on screen now, analysis v{new.analysis_version}")

    def on_greeted(self, msg: Greeted) -> None:
        self.hello = msg.hello

    def on_feed_notice(self, msg: FeedNotice) -> None:
        severity: Severity = "error" if msg.level == "error" else "warning" if msg.level == "warning" else "information"
        self.notice(msg.text, severity=severity, when=msg.time)

    def on_request_done(self, msg: RequestDone) -> None:
        if self.live.request_done(msg.op, msg.reply, msg.args):
            return
        if not msg.reply.ok:
            self.notice(f"{msg.op} refused: {msg.reply.error or 'no reason given'}", severity="warning")
            if msg.op == "set_roi":
                self.live.forget_pending(str(msg.args.get("name")))
        elif msg.op == "grab":
            self.notice(f"grab: {msg.args.get('n')} frames averaged on {msg.args.get('detector')}")
        elif msg.op == "mark":
            self.notice(f"mark added: {msg.args.get('text')}")

    # --- messages from the screens -----------------------------------------------------

    def on_ask(self, msg: Ask) -> None:
        if not self.send(msg.op, timeout=msg.timeout, **msg.args) and msg.op == "set_roi":
            self.live.forget_pending(str(msg.args.get("name")))

    def on_say(self, msg: Say) -> None:
        self.notice(msg.text, severity=msg.severity)

    # --- services ------------------------------------------------------------------------

    def notice(self, text: str, *, severity: Severity = "information", when: float | None = None) -> None:
        """Tell the operator (a toast) and keep it in the history (``l``)."""
        level = "info" if severity == "information" else severity
        self.notices.append((time.time() if when is None else when, level, text))
        del self.notices[:-NOTICE_HISTORY]
        if not self.closing:
            self.notify(text, severity=severity, markup=False,
                        timeout=INFO_TOAST_S if severity == "information" else ERROR_TOAST_S)

    def send(self, op: str, *, timeout: float = 2.0, **args: Any) -> bool:
        """A control request via the feed thread; one that changes anything is refused at once
        on a read-only feed (``recompute`` changes nothing stored: any console may ask)."""
        if self.feed.read_only and op in CHANGING_OPS:
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
            self.push_screen(NoticesScreen(self.snapshot, list(self.notices)))

    def action_reset(self) -> None:
        self.loop.reset()
        self.notice("averages reset: received tag ranges start again")

    def action_pause(self) -> None:
        self.paused = not self.paused
        snap = self.snapshot
        if snap is not None and snap.playback and not self.feed.read_only:
            self.send("pause", paused=self.paused)  # a replaying recorder pauses too
        self.notice("display paused (p resumes)" if self.paused else "display resumed")
        self._show()
        self.live.tick()  # say PAUSED now, not at the next tick

    def action_mark(self) -> None:
        if self.screen is self.live:
            self.live.open_mark_form()


def _limit_colors(app: App[Any], depth: int) -> None:
    """Cap the colour system at 16 or 256 colours (see the module docstring for why here)."""
    if "TEXTUAL_COLOR_SYSTEM" in os.environ:
        return
    cap = ColorSystem.STANDARD if depth <= 16 else ColorSystem.EIGHT_BIT
    current = app.console._color_system
    if current is None or current == ColorSystem.WINDOWS:
        return  # no colour at all (NO_COLOR, dumb terminal): never add any
    app.console._color_system = min(current, cap)


def _user() -> str:
    """``user@host``, as an analysis version records who set it."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        name = str(os.getuid())
    return f"{name}@{socket.gethostname()}"


def make_app(
    feed: Feed,
    *,
    refresh_hz: float | None = None,
    low_bandwidth: bool = False,
    plot_every: float = PLOT_EVERY,
    image_every: float = IMAGE_EVERY,
    window: int = WINDOW_SHOTS,
    clock: Callable[[], float] = time.time,
    source_label: str | None = None,
    user: str | None = None,
) -> ShotwatchApp:
    """The console on ``feed``; the command line and the tests both build it here.

    Args:
        feed: the network client of a recorder, or the in-process feed of one (``Feed``).
        refresh_hz: paint rate; default 1 Hz, 0.5 Hz with ``low_bandwidth``.
        low_bandwidth: 16 colours; status, sparklines and numbers only (no plots, no thumbnail).
        plot_every: seconds between plot repaints (plots are not repainted every tick).
        image_every: seconds between thumbnail repaints (plus on demand).
        window: shots kept for sparklines, histogram, correlation and trend.
        clock: wall clock (tests pass a fake one).
        source_label: what the status bar calls the source (default: the recorder's kind).
        user: who this console is, for the analysis versions it sets (default ``user@host``).
    """
    hz = refresh_hz if refresh_hz is not None else (REFRESH_HZ_LOW if low_bandwidth else REFRESH_HZ)
    if not hz > 0:
        raise ValueError(f"--refresh: expected a rate > 0 Hz, found {hz}")
    settings = Display(refresh_hz=hz, low_bandwidth=low_bandwidth, plot_every=plot_every, image_every=image_every,
                       clock=clock, source_label=source_label, user=user or _user())
    return ShotwatchApp(feed, settings=settings, window=window)
