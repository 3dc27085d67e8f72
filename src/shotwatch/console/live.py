"""The live screen: composes the widgets, routes the operator's keys, posts requests up.

Painting happens on a timer at the refresh rate, never per shot, from the :class:`Picture`
the App hands down; each widget (``panels.py``) repaints only when its content changed.
What the screen needs done it asks the App for with messages (:class:`Ask` for a request to
the recorder, :class:`Say` for a notice): it never reaches the App's feed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.events import Key
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widget import Widget

from ..link.messages import Reply
from ..schemas import Roi
from . import format as fmt
from .events import Ask, Display, Picture, Say, Severity
from .flows import Flows
from .keys import CHOOSER_BAR, CONFIRM_BAR, FORM_BAR, YES_NO_BAR, bar_text, bindings, main_bar
from .lineform import Chooser, FormState
from .panels import DetectorView, KeyBar, PlotArea, RoiRows, SelectedLine, StatusBar
from .roiedit import form_values, grown, moved, new_roi_values, parse_form
from .selection import Selection
from .tuning import GRAB_FRAMES
from .widgets import LineForm, RoiForm

__all__ = ["LiveScreen"]

Change = Callable[[Roi, tuple[int, int]], Roi]


class LiveScreen(Screen[None]):
    """Everything the operator watches while the beam is on."""

    BINDINGS: ClassVar[list[BindingType]] = bindings("live")

    focused: Reactive[Widget | None] = Reactive(None, repaint=False)
    """Textual's Screen repaints the whole screen on every focus change (4 kB at 80x24 for
    each Tab in the form); the focus styles are refreshed widget by widget anyway."""

    def __init__(self, settings: Display) -> None:
        super().__init__(classes="-low" if settings.low_bandwidth else None)  # a class added later repaints all
        self.settings = settings
        self.picture = Picture()
        """Set by the App whenever the feed or the pause state changes; painted on the tick."""
        self.view = "numbers" if settings.low_bandwidth else "scan"
        self.detector_layer = "image"
        """What the detector view shows: the mean image, the dark or the mask (``d`` cycles)."""
        self.selection = Selection()
        self.confirm_delete: str | None = None
        self._force = True
        self._painting = True
        self.flows: Flows | None = None
        """The one-line row's questions (the analysis form, D, R, the c and h choosers)."""

    @property
    def selected(self) -> str | None:
        return self.selection.selected

    def compose(self) -> ComposeResult:
        # Born with their first content: a first update after mounting re-laid-out and
        # repainted the whole screen a second time (~6 kB at 120x40).
        yield StatusBar(fmt.status_text(None, connected=True, skipped=0, now=0.0, tag_ranges=()), id="status")
        yield RoiRows(id="rois")
        yield SelectedLine(id="selected")  # apart from the rows: it rarely changes, they always do
        yield PlotArea(every=self.settings.plot_every, id="plot")
        detector = DetectorView(every=self.settings.image_every, low=self.settings.low_bandwidth, id="detector")
        detector.display = False
        yield detector
        yield RoiForm(id="form")
        line = LineForm(id="line")
        line.display = False
        yield line
        yield KeyBar(bar_text(main_bar(), self.app.size.width), id="keys")

    def on_mount(self) -> None:
        self.flows = Flows(self.query_one(LineForm), ask=self._ask, say=self._say, show=self.action_view,
                           user=self.settings.user)
        self.set_interval(1.0 / self.settings.refresh_hz, self.tick, name="paint")
        self.tick()

    def stop_painting(self) -> None:
        """The app is closing: a timer may still fire, and must paint nothing."""
        self._painting = False

    # --- painting ----------------------------------------------------------------------

    def tick(self) -> None:
        """Paint what changed."""
        if not self._painting or not self.is_attached or self.app.screen is not self:
            return
        pic = self.picture
        self.query_one(StatusBar).show(pic, now=self.settings.clock(), label=self.settings.source_label)
        self._paint_keys()
        snap = pic.snapshot
        if snap is None or pic.paused:
            return
        if self.selection.sync(snap):
            self._force = True
        sel = self.selection
        self.query_one(RoiRows).show(snap, selected=sel.selected, low=self.settings.low_bandwidth)
        self._paint_selected()
        now = self.settings.clock()
        if self.view == "detector":
            self.query_one(DetectorView).show(snap, applied=sel.applied(snap), selected=sel.selected, now=now,
                                              force=self._force, layer=self.detector_layer)
        else:
            choice = self.flows.choice if self.flows else None
            self.query_one(PlotArea).show(snap, view=self.view, selected=sel.selected, now=now, force=self._force,
                                          choice=choice, low=self.settings.low_bandwidth)
        self._force = False

    def _paint_selected(self) -> None:
        snap, sel = self.picture.snapshot, self.selection
        line = self.query_one(LineForm)
        note = line.message if line.is_open else None
        view = self.view if self.view != "detector" or self.detector_layer == "image" else f"detector ({self.detector_layer})"
        self.query_one(SelectedLine).show(sel.applied(snap), sel.requested(), selected=sel.selected, view=view,
                                          confirm_delete=self.confirm_delete, note=note)

    def _paint_keys(self) -> None:
        form_open = bool(self.query(RoiForm)) and self.query_one(RoiForm).is_open
        line = self.query_one(LineForm)
        pairs: tuple[tuple[str, str], ...]
        if line.is_open:
            state = line.state
            pairs = FORM_BAR if isinstance(state, FormState) else CHOOSER_BAR if isinstance(state, Chooser) else YES_NO_BAR
        else:
            pairs = CONFIRM_BAR if self.confirm_delete is not None else FORM_BAR if form_open else main_bar()
        self.query_one(KeyBar).show(pairs)

    def _rows(self) -> None:
        """The row shows the line form while it is open, else the ROI form; repaint the lines
        that say what the keys do now (at once: the operator waits for them)."""
        line = self.query_one(LineForm)
        self.query_one(RoiForm).display = not line.is_open
        self._paint_keys()
        self._paint_selected()

    def _repaint(self) -> None:
        self._force = True
        self.tick()

    # --- asking the App ----------------------------------------------------------------

    def _ask(self, op: str, *, timeout: float = 2.0, **args: object) -> None:
        self.post_message(Ask(op, dict(args), timeout))

    def _say(self, text: str, severity: Severity = "information") -> None:
        self.post_message(Say(text, severity))

    def forget_pending(self, name: str) -> None:
        """The App's word that a set_roi was refused."""
        self.selection.forget(name)
        self._force = True

    # --- views and selection -----------------------------------------------------------

    def action_view(self, view: str) -> None:
        if view == "detector" and self.view == "detector":  # d again: the dark, the mask, the image
            self.detector_layer = fmt.LAYERS[(fmt.LAYERS.index(self.detector_layer) + 1) % len(fmt.LAYERS)]
        elif view == "detector":
            self.detector_layer = "image"
        if self.settings.low_bandwidth and view not in ("detector", "correlation", "histogram"):
            # --low-bandwidth draws no plots: the numbers, the detector view's text, and one
            # line of text for the correlation and the histogram.
            self._say("plots are off in --low-bandwidth (numbers; c and h show one line)")
            view = "numbers"
            self.query_one(PlotArea).paint("")
        self.view = view
        self.query_one(PlotArea).display = view != "detector"
        self.query_one(DetectorView).display = view == "detector"
        self._repaint()

    def action_next_roi(self) -> None:
        if self.selection.next(self.picture.snapshot):
            self._repaint()

    def _shapes(self) -> dict[str, tuple[int, int]]:
        snap = self.picture.snapshot
        return dict(snap.shapes) if snap else {}

    # --- the form: edit, new, mark ----------------------------------------------------------

    def action_edit(self) -> None:
        roi = self.selection.current(self.picture.snapshot)
        if roi is None:
            self._say("no ROI selected — n adds one", "warning")
            return
        self.query_one(RoiForm).open("edit", form_values(roi), label=f"edit {roi.name}:")
        self._paint_keys()

    def action_new(self) -> None:
        shapes = self._shapes()
        snap = self.picture.snapshot
        roi = self.selection.current(snap)
        det = roi.detector if roi else next(iter(shapes), None)
        if det is None:
            self._say("no array detector known yet — cannot add a ROI", "warning")
            return
        taken = [v.name for v in snap.rois] if snap else []
        self.query_one(RoiForm).open("new", new_roi_values(taken, detector=det, shape=shapes[det]), label="new ROI:")
        self._paint_keys()

    def open_mark_form(self) -> None:
        self.query_one(RoiForm).open("mark", {"name": ""}, label="mark text:")
        self._paint_keys()

    @on(RoiForm.Submitted)
    def _form_submitted(self, msg: RoiForm.Submitted) -> None:
        form = self.query_one(RoiForm)
        if msg.mode == "mark":
            form.close()
            self._paint_keys()
            self._ask("mark", text=msg.values["name"] or "mark")
            return
        try:
            roi = parse_form(msg.values, shapes=self._shapes())
        except ValueError as exc:
            self._say(str(exc), "error")
            return  # the form stays open so the operator can correct the value
        form.close()
        self._paint_keys()
        self._set_roi(roi)

    @on(RoiForm.Cancelled)
    def _form_cancelled(self, msg: RoiForm.Cancelled) -> None:
        self.query_one(RoiForm).close()
        self._paint_keys()

    def _set_roi(self, roi: Roi) -> None:
        self.selection.request(roi)  # shown as requested until the recorder's broadcast
        self._ask("set_roi", roi=roi, name=roi.name)
        self._repaint()

    # --- delete, with its confirmation ------------------------------------------------------

    def action_delete(self) -> None:
        if self.selected is None:
            self._say("no ROI selected", "warning")
            return
        self.confirm_delete = self.selected
        self.query_one(RoiForm).prompt(f"delete {self.selected}? y/n")
        self._paint_keys()
        self._repaint()

    def on_key(self, event: Key) -> None:
        """Keys for the forms (all of them, in order while open) and the delete confirmation."""
        form, line = self.query_one(RoiForm), self.query_one(LineForm)
        if self.confirm_delete is None and (form.is_open or line.is_open):
            event.stop()  # an open form owns the keyboard until Enter or Esc
            event.prevent_default()
            if line.is_open:
                line.key(event.key, event.character)
                self._paint_selected()
            else:
                form.key(event.key, event.character)
            return
        if self.confirm_delete is None:
            # Keys that open a form act here, not as bindings: bindings run when the key
            # has bubbled to the app, after the screen has already passed on the keys typed
            # right behind it (a burst over a slow link), which must reach the form.
            opener = {"e": self.action_edit, "n": self.action_new, "m": self.open_mark_form, "a": self.action_analysis,
                      "D": self.action_dark, "c": self.action_choose_correlation,
                      "h": self.action_choose_histogram}.get(event.key)
            if opener is not None:
                event.stop()
                event.prevent_default()
                opener()
            return
        event.stop()
        event.prevent_default()
        name, self.confirm_delete = self.confirm_delete, None
        self.query_one(RoiForm).prompt("ROI")
        self._paint_keys()
        if event.key == "y":
            self._ask("delete_roi", name=name)
        else:
            self._say(f"delete {name}: cancelled")
        self._repaint()

    # --- moving, sizing, grabbing ---------------------------------------------------------

    def _change(self, change: Change) -> None:
        roi = self.selection.current(self.picture.snapshot)
        if roi is None:
            return
        try:
            new = change(roi, self._shapes()[roi.detector])
        except (ValueError, KeyError) as exc:
            self._say(str(exc), "warning")
            return
        self._set_roi(new)

    def action_nudge(self, dx: int, dy: int) -> None:
        if self.view != "detector":
            return  # arrows nudge only where the rectangle is in sight
        self._change(lambda r, shape: moved(r, dx, dy, shape=shape))

    def action_grow(self, d: int) -> None:
        self._change(lambda r, shape: grown(r, d, shape=shape))

    def action_grab(self) -> None:
        roi = self.selection.current(self.picture.snapshot)
        det = roi.detector if roi else next(iter(self._shapes()), None)
        if det is not None:
            self._ask("grab", timeout=10.0, detector=det, n=GRAB_FRAMES)
            self.action_view("detector")

    # --- a replaying recorder: seek and speed ---------------------------------------------------

    def _replaying(self, what: str) -> bool:
        snap = self.picture.snapshot
        if snap is None or not snap.playback:
            self._say(f"{what} works in replay only")
            return False
        return True

    def action_seek(self, seconds: float) -> None:
        # The recorder restarts every console's averages after it moved (a reset broadcast),
        # so the numbers still equal `reduce --tags` over the ranges shown.
        if self._replaying("seek"):
            self._ask("seek", seconds=float(seconds))

    def action_seek_start(self) -> None:
        if self._replaying("seek"):
            self._ask("seek", start=True)

    def action_speed(self, factor: float) -> None:
        snap = self.picture.snapshot
        if not self._replaying("speed") or snap is None:
            return
        now = snap.status.speed if snap.status is not None and snap.status.speed is not None else 1.0
        if now == 0 and factor > 1:
            self._say("the replay is already as fast as possible")
        else:  # from as fast as possible, slower is the recorded pace
            self._ask("speed", speed=now * factor if now else 1.0)

    # --- the one-line row: the analysis form, darks, recomputation, what c and h show ---------

    def _flows(self) -> Flows:
        assert self.flows is not None, "mounted"
        return self.flows

    def action_analysis(self) -> None:
        self._flows().analysis(self.picture.snapshot, read_only=self.picture.read_only)
        self._rows()

    def action_dark(self) -> None:
        roi = self.selection.current(self.picture.snapshot)
        self._flows().dark(roi.detector if roi else next(iter(self._shapes()), None), read_only=self.picture.read_only)
        self._rows()

    def action_recompute(self) -> None:
        self._flows().recompute()

    def _value_names(self) -> list[str]:
        snap = self.picture.snapshot
        return list(snap.named) if snap else []

    def action_choose_correlation(self) -> None:
        self._flows().choose_correlation(self._value_names(), self.selected)
        self._rows()

    def action_choose_histogram(self) -> None:
        self._flows().choose_histogram(self._value_names())
        self._rows()

    def on_line_form_submitted(self, msg: LineForm.Submitted) -> None:
        self._flows().submitted(msg.purpose, msg.values, self.picture.snapshot)
        self._rows()

    def on_line_form_chosen(self, msg: LineForm.Chosen) -> None:
        self._flows().chosen(msg.purpose, msg.item)
        self._rows()

    def on_line_form_answered(self, msg: LineForm.Answered) -> None:
        self._flows().answered(msg.purpose, msg.yes)
        self._rows()

    def on_line_form_cancelled(self, msg: LineForm.Cancelled) -> None:
        self._flows().cancelled(msg.purpose)
        self._rows()

    def request_done(self, op: str, reply: Reply, args: dict[str, object]) -> bool:
        """The App's word that a request came back; True if the row handled it."""
        if self.flows is None or not self.flows.reply(op, reply, dict(args)):
            return False
        self._rows()
        return True
