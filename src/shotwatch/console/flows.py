"""What the operator asks for on the one-line row: the analysis form (``a``), a dark (``D``), a
recomputation (``R``), and the values the correlation (``c``) and histogram (``h``) views show.

:class:`Flows` belongs to the live screen: it opens the row (:class:`~.widgets.LineForm`) and
turns what was typed into requests (the screen posts them to the App as :class:`~.events.Ask`),
and it hears the recorder's replies back: the analysis form stays open until the recorder
accepted it, and a refusal is one line under it; a dark refused because the beam is on asks
y/n and is sent again with ``force``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..link.messages import Reply
from .analysisform import FormError, analysis_fields, analysis_sections
from .events import Severity
from .lineform import Field
from .model import Snapshot
from .tuning import DARK_FRAMES, NAMED_I0
from .views import Choice
from .widgets import LineForm

__all__ = ["Flows"]

ANALYSIS, DARK, FORCE, CORR_Y, CORR_X, HIST = "analysis", "dark", "dark-force", "corr-y", "corr-x", "hist"
_DARK_ANSWER_S = 3.0
"""How long the feed thread waits for the ``dark`` reply. The recorder refuses at the next
block boundary (<= 0.5 s), but answers a dark it takes only once its N frames are in (20 s for
600 at 30 Hz), and the feed thread, which also reads the data, must not wait that long: a dark
under way is told by the recorder's own notices, its DarkMsg and its analysis version."""
_NO_ANSWER_YET = ("did not answer within", "timed out after")
"""The feeds' words (NetFeed, LocalFeed) for a request not answered within its timeout."""
_BEAM_ON = "beam on"
"""The words of the recorder's refusal that a forced dark may override (PHASE2's ``dark`` op)."""


class Flows:
    """The row's questions and the replies to what they sent.

    Args:
        line: the row.
        ask: send a control request (op, timeout, arguments).
        say: a notice for the operator.
        show: switch the view (after a choice).
        user: ``user@host`` of this console, the ``by`` of an analysis change.
    """

    def __init__(self, line: LineForm, *, ask: Callable[..., None], say: Callable[[str, Severity], None],
                 show: Callable[[str], None], user: str) -> None:
        self.line, self._ask, self._say, self._show, self.user = line, ask, say, show, user
        self.choice = Choice()
        self._pending_y: str | None = None
        self._corr_x: str | None = None
        self._corr_names: list[str] = []
        self._dark: dict[str, Any] = {}
        self._waiting = False
        self._opened: dict[str, str] = {}
        """The analysis form's values when it opened (what the operator changed is sent)."""

    # --- opening -------------------------------------------------------------------------

    def analysis(self, snap: Snapshot | None, *, read_only: bool) -> None:
        """``a``: the analysis form on the analysis in force, I0's minimum selected."""
        if read_only:
            self._say("analysis form: this console is read-only (it cannot change the analysis)", "warning")
            return
        if snap is None or snap.config is None:
            self._say("analysis form: no analysis from the recorder yet", "warning")
            return
        self._waiting = False
        fields = analysis_fields(snap.config)
        self._opened = {f.key: f.value.strip() for f in fields}
        self.line.open_form(ANALYSIS, "analysis", fields)

    def dark(self, detector: str | None, *, read_only: bool) -> None:
        """``D``: how many frames to average into a dark of ``detector``."""
        if read_only:
            self._say("dark: this console is read-only", "warning")
            return
        if detector is None:
            self._say("dark: no array detector known yet", "warning")
            return
        self._dark = {"detector": detector}
        self.line.open_form(DARK, f"dark of {detector}:", [Field("n", "frames", str(DARK_FRAMES), 6,
                            hint="frames to average with the beam off (mean and std per pixel)")])

    def recompute(self) -> None:
        """``R``: the whole recording so far again, under the analysis in force."""
        self._ask("recompute", timeout=5.0)

    def choose_correlation(self, names: list[str], selected: str | None) -> None:
        """``c``: the vertical value, then the horizontal one."""
        if not names:
            self._say("correlation: no values yet", "warning")
            return
        x, y = self.choice.corr or (NAMED_I0, selected or names[0])
        self._pending_y, self._corr_x, self._corr_names = None, x, names
        self.line.open_chooser(CORR_Y, "correlation y", names, current=y)

    def choose_histogram(self, names: list[str]) -> None:
        """``h``: the value to histogram (I0 first)."""
        if not names:
            self._say("histogram: no values yet", "warning")
            return
        self.line.open_chooser(HIST, "histogram of", names, current=self.choice.hist or NAMED_I0)

    # --- what the row says back ---------------------------------------------------------------

    def submitted(self, purpose: str, values: dict[str, str], snap: Snapshot | None) -> None:
        if purpose == ANALYSIS and snap is not None and snap.config is not None:
            self._send_analysis(values, snap)
        elif purpose == DARK:
            text = values.get("n", "")
            if not text.isdigit() or int(text) < 1:
                self.line.error(f"frames: expected a whole number >= 1, found {text!r}")
                return
            self._dark["n"] = int(text)
            self.line.close()
            self._send_dark(force=False)

    def _send_analysis(self, values: dict[str, str], snap: Snapshot) -> None:
        if self._waiting:
            self.line.error("sent already — waiting for the recorder's answer")
            return
        assert snap.config is not None
        # Only what the operator changed, onto the analysis in force now: another console's
        # change since the form opened is kept, not overwritten with the values shown then.
        changed = {k: v for k, v in values.items() if v != self._opened.get(k)}
        if not changed:
            self.line.error("nothing changed — esc closes the form; R recomputes without a change")
            return
        try:
            sections = analysis_sections(snap.config, changed)
        except FormError as exc:
            self.line.error(str(exc), key=exc.key)
            return
        self._waiting = True
        self.line.error("sent — waiting for the recorder…")
        self._ask("set_analysis", timeout=5.0, analysis=sections, by=self.user)

    def _send_dark(self, *, force: bool) -> None:
        self._ask("dark", timeout=_DARK_ANSWER_S, force=force, **self._dark)

    def chosen(self, purpose: str, item: str) -> None:
        if purpose == CORR_Y:
            self._pending_y = item
            self.line.open_chooser(CORR_X, f"correlation {item} vs x", self._corr_names, current=self._corr_x)
        elif purpose == CORR_X and self._pending_y is not None:
            self.choice.corr = (item, self._pending_y)
            self.line.close()
            self._show("correlation")
        elif purpose == HIST:
            self.choice.hist = item
            self.line.close()
            self._show("histogram")

    def answered(self, purpose: str, yes: bool) -> None:
        self.line.close()
        if purpose != FORCE:
            return
        if yes:
            self._send_dark(force=True)
        else:
            self._say(f"dark of {self._dark.get('detector')}: not taken (beam on)", "information")

    def cancelled(self, purpose: str) -> None:
        self._waiting = False
        self.line.close()

    # --- the recorder's replies ---------------------------------------------------------------

    def reply(self, op: str, reply: Reply, args: dict[str, Any]) -> bool:
        """A reply to one of our requests; False if it is not ours (the App notices it)."""
        if op == "set_analysis":
            self._analysis_reply(reply)
        elif op == "dark":
            self._dark_reply(reply, args)
        elif op == "recompute":
            if reply.ok:
                self._say("recomputation asked: the whole recording so far, under the analysis in force",
                          "information")
            else:
                self._say(f"recompute refused: {reply.error or 'no reason given'}", "warning")
        else:
            return False
        return True

    def _analysis_reply(self, reply: Reply) -> None:
        self._waiting = False
        if reply.ok:
            if self.line.purpose == ANALYSIS:
                self.line.close()
            version = reply.data.get("version")
            self._say(f"analysis v{version} set: recomputing the recording so far", "information")
        elif self.line.purpose == ANALYSIS:
            error = reply.error or "refused, no reason given"
            self.line.error(f"refused: {error}", key=error.partition(":")[0])
        else:
            self._say(f"set_analysis refused: {reply.error or 'no reason given'}", "warning")

    def _dark_reply(self, reply: Reply, args: dict[str, Any]) -> None:
        det, error = args.get("detector"), reply.error or "no reason given"
        if reply.ok:
            self._say(f"dark of {det}: {args.get('n')} frames averaged", "information")
        elif not args.get("force") and _BEAM_ON in error:
            self.line.ask(FORCE, f"{error} — take the dark of {det} anyway? y/n")
        elif any(words in error for words in _NO_ANSWER_YET):  # not refused: taking its frames
            self._say(f"dark of {det}: under way, {args.get('n')} frames (the recorder says when it is done)",
                      "information")
        else:
            self._say(f"dark refused: {error}", "warning")
