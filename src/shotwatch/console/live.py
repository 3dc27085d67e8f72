"""The live screen: status, ROI rows with sparklines, the plot/detector area, the ROI form.

Painting happens on a timer at the app's refresh rate, never per shot; each widget repaints
only when its content changed; plots and the thumbnail are redrawn every few seconds or when
the operator asks (view switch, ROI change), because they are the expensive regions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.events import Key
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widget import Widget

from ..schemas import Roi
from . import format as fmt
from .model import Snapshot
from .plots import render_view
from .roiedit import form_values, grown, moved, new_roi_values, parse_form
from .thumb import thumbnail
from .widgets import Painted, RoiForm

if TYPE_CHECKING:
    from .app import ShotwatchApp

__all__ = ["LiveScreen"]

_GRAB_FRAMES = 10
"""Frames averaged by ``g`` (the 2019 toolkit's operator ROI used a 10-frame average)."""


class LiveScreen(Screen[None]):
    """Everything the operator watches while the beam is on."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "view('scan')", "scan"),
        Binding("2", "view('correlation')", "vs I0"),
        Binding("3", "view('histogram')", "hist"),
        Binding("4", "view('trend')", "trend"),
        Binding("d", "view('detector')", "detector"),
        Binding("tab", "next_roi", "next ROI"),
        Binding("e", "edit", "edit ROI"),
        Binding("n", "new", "new ROI"),
        Binding("x", "delete", "delete ROI"),
        Binding("g", "grab", "grab", show=False),
        Binding("plus", "grow(1)", "grow", show=False, key_display="+"),
        Binding("minus", "grow(-1)", "shrink", show=False, key_display="-"),
        Binding("left", "nudge(-1, 0)", show=False),
        Binding("right", "nudge(1, 0)", show=False),
        Binding("up", "nudge(0, -1)", show=False),
        Binding("down", "nudge(0, 1)", show=False),
        Binding("shift+left", "nudge(-10, 0)", show=False),
        Binding("shift+right", "nudge(10, 0)", show=False),
        Binding("shift+up", "nudge(0, -10)", show=False),
        Binding("shift+down", "nudge(0, 10)", show=False),
        Binding("left_square_bracket", "seek(-10)", show=False),
        Binding("right_square_bracket", "seek(10)", show=False),
        Binding("home", "seek_start", show=False),
    ]

    focused: Reactive[Widget | None] = Reactive(None, repaint=False)
    """Textual's Screen repaints the whole screen on every focus change (4 kB at 80x24 for
    each Tab in the form); the focus styles are refreshed widget by widget anyway."""

    def __init__(self, *, classes: str | None = None) -> None:
        super().__init__(classes=classes)  # "-low" from the start: a class added later repaints all
        self.view = "scan"
        self.selected: str | None = None
        self.confirm_delete: str | None = None
        self._pending: dict[str, Roi] = {}
        self._plot_at = -1e9
        self._image_at = -1e9
        self._image_id: int | None = None
        self._force = True

    @property
    def shell(self) -> ShotwatchApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        # Born with their first content: a first update after mounting re-laid-out and
        # repainted the whole screen a second time (~6 kB at 120x40).
        yield Painted(self._status_text(None), id="status")
        yield Painted(id="rois")
        yield Painted(id="selected")  # apart from the rows: it rarely changes, they always do
        yield Painted(id="plot")
        yield RoiForm(id="form")
        yield Painted(self._keys_text(), id="keys")

    def on_mount(self) -> None:
        if self.shell.low_bandwidth:
            self.view = "numbers"
        self.set_interval(1.0 / self.shell.refresh_hz, self.tick, name="paint")
        self.tick()

    # --- painting ----------------------------------------------------------------------

    def tick(self) -> None:
        """Paint what changed. Guarded: a timer may still fire while the app shuts down."""
        app = self.shell
        if app.closing or not self.is_attached or app.screen is not self:
            return
        snap = app.snapshot
        self._paint_status(snap)
        self._paint_keys()
        if snap is None or app.paused:
            return
        self._sync_selection(snap)
        self.query_one("#rois", Painted).paint(self._roi_rows(snap))
        self.query_one("#selected", Painted).paint(self._selected_text(snap))
        if not app.low_bandwidth or self.view == "detector":
            self._paint_area(snap)
        self._force = False

    def _paint_keys(self) -> None:
        self.query_one("#keys", Painted).paint(self._keys_text())

    def _keys_text(self) -> Text:
        """The key bar. Textual's Footer recomposes on every focus change (a Tab in the form
        repainted the whole screen, ~6 kB at 80x24); this line changes only with the mode."""
        form_open = bool(self.query(RoiForm)) and self.query_one(RoiForm).is_open
        if self.confirm_delete is not None:
            pairs = [("y", "delete"), ("any other key", "keep")]
        elif form_open:
            pairs = [("enter", "apply"), ("esc", "cancel"), ("tab", "next field")]
        else:
            pairs = [("1-4", "plots"), ("d", "detector"), ("tab", "next ROI"), ("e", "edit"), ("n", "new"),
                     ("x", "delete"), ("←↑→↓ +-", "move/size"), ("g", "grab"), ("r", "reset"),
                     ("p", "pause"), ("m", "mark"), ("l", "notices"), ("?", "help"), ("q", "quit")]
        text = Text(no_wrap=True, overflow="ellipsis")
        for key, what in pairs:
            text.append(key, style="bold reverse")
            text.append(f" {what} ")
        return text

    def _paint_status(self, snap: Snapshot | None) -> None:
        self.query_one("#status", Painted).paint(self._status_text(snap))

    def _status_text(self, snap: Snapshot | None) -> Text:
        app = self.shell
        return fmt.status_text(
            snap.status if snap else None, connected=app.connected, skipped=app.skipped,
            now=app.clock(), tag_ranges=snap.tag_ranges if snap else (), paused=app.paused,
            source_label=app.source_label,
        )

    def _sync_selection(self, snap: Snapshot) -> None:
        names = [v.name for v in snap.rois]
        if self.selected not in names and self.selected not in self._pending:
            self.selected = names[0] if names else None
            self._force = True
        for name, want in list(self._pending.items()):
            have = next((v for v in snap.rois if v.name == name), None)
            if have is not None and (have.x, have.y, have.detector) == (want.x, want.y, want.detector):
                del self._pending[name]  # the broadcast arrived: the recorder applied it
                self._force = True

    def _roi_rows(self, snap: Snapshot) -> Text:
        width = max(20, self.query_one("#rois", Painted).size.width or self.size.width)
        st = snap.status
        missing = set(st.not_in_stream) if st is not None else set()
        rois = (snap.summary or {}).get("rois") or {}
        low = self.shell.low_bandwidth
        spark = 16 if low else 48
        out = Text(no_wrap=True, overflow="ellipsis")
        for v in snap.rois:
            stats = rois.get(snap.result_keys.get(v.name, ""), {})
            ser = snap.series.get(v.name)
            out.append_text(fmt.roi_line(
                v.name, ser.values if ser is not None else (), width=width, mean=stats.get("mean"),
                norm=stats.get("norm"), count=stats.get("count") or 0, missing=v.detector in missing,
                selected=v.name == self.selected, spark_max=spark, plain=low))
            out.append("\n")
        cfg = snap.config
        if cfg is not None and cfg.i0 is not None:
            out.append_text(fmt.roi_line("I0", snap.i0, width=width, mean=snap.i0_mean, norm=None,
                                         count=None, missing=cfg.i0.name in missing, spark_max=spark,
                                         plain=low))
            out.append("\n")
        out.append(fmt.vetoes_text((snap.summary or {}).get("shots")))
        return out

    def _selected_text(self, snap: Snapshot) -> str:
        if self.confirm_delete is not None:
            return f"delete ROI {self.confirm_delete!r}? y = yes, any other key = no"
        roi = self._broadcast(snap)
        want = self._pending.get(self.selected or "")
        if roi is None and want is None:
            return "no ROI — n adds one"
        # The screen shows what the recorder applied; a request not yet broadcast is marked.
        text = f"▶ {_rect(roi)}" if roi is not None else f"▶ {self.selected}: not applied yet"
        if want is not None:
            text += f" → requested {_rect(want, name=False)}"
        return text + f" · view {self.view}"

    def _paint_area(self, snap: Snapshot) -> None:
        area = self.query_one("#plot", Painted)
        now = self.shell.clock()
        if self.view == "detector":
            self._paint_detector(area, snap, now)
            return
        # A one-line "no data yet" message is cheap and should give way to the plot at once.
        placeholder = "\n" not in area.shown
        if not (self._force or placeholder) and now - self._plot_at < self.shell.plot_every:
            return
        self._plot_at = now
        size = area.size
        area.paint(render_view(self.view, snap, self.selected, width=size.width, height=size.height))

    def _paint_detector(self, area: Painted, snap: Snapshot, now: float) -> None:
        roi = self._broadcast(snap)
        det = roi.detector if roi else next(iter(snap.shapes), None)
        img = snap.images.get(det) if det else None
        if self.shell.low_bandwidth or img is None:
            note = "thumbnail off in --low-bandwidth" if self.shell.low_bandwidth else "no image yet — g grabs"
            area.paint(Text(f"{det or 'no detector'}: {note}"))
            return
        new = id(img) != self._image_id
        # running images are repainted every few seconds; a grab the operator asked for at once
        fresh = new and (img.kind == "grab" or now - self._image_at >= self.shell.image_every)
        if not (self._force or fresh):
            return
        self._image_at, self._image_id = now, id(img)
        rois = [v for v in snap.rois if v.detector == det]
        head = Text(f"{det} · {img.kind} mean of {img.count} frames\n")
        size = area.size
        head.append_text(thumbnail(img.image, rois, width=size.width, height=max(3, size.height - 1),
                                   selected=self.selected))
        area.paint(head)

    # --- keys --------------------------------------------------------------------------

    def action_view(self, view: str) -> None:
        if self.shell.low_bandwidth and view != "detector":
            # --low-bandwidth draws no plots: only the detector view's text and the numbers.
            self.shell.notice("plots are off in --low-bandwidth (numbers only)")
            view = "numbers"
            self.query_one("#plot", Painted).paint("")
        self.view, self._force = view, True
        self.tick()

    def action_next_roi(self) -> None:
        snap = self.shell.snapshot
        names = [v.name for v in snap.rois] if snap else []
        if names:
            i = names.index(self.selected) if self.selected in names else -1
            self.selected, self._force = names[(i + 1) % len(names)], True
            self.tick()

    def _broadcast(self, snap: Snapshot) -> Roi | None:
        """The selected ROI as the recorder last broadcast it."""
        v = next((v for v in snap.rois if v.name == self.selected), None)
        return v.roi if v else None

    def _current(self, snap: Snapshot | None) -> Roi | None:
        """The selected ROI as last requested by this console, else as broadcast."""
        if snap is None or self.selected is None:
            return None
        if self.selected in self._pending:
            return self._pending[self.selected]
        v = next((v for v in snap.rois if v.name == self.selected), None)
        return v.roi if v else None

    def _shapes(self) -> dict[str, tuple[int, int]]:
        snap = self.shell.snapshot
        return dict(snap.shapes) if snap else {}

    def action_edit(self) -> None:
        roi = self._current(self.shell.snapshot)
        if roi is None:
            self.shell.notice("no ROI selected — n adds one", severity="warning")
            return
        self.query_one(RoiForm).open("edit", form_values(roi), label=f"edit {roi.name}:")
        self._paint_keys()

    def action_new(self) -> None:
        shapes = self._shapes()
        roi = self._current(self.shell.snapshot)
        det = roi.detector if roi else next(iter(shapes), None)
        if det is None:
            self.shell.notice("no array detector known yet — cannot add a ROI", severity="warning")
            return
        taken = [v.name for v in self.shell.snapshot.rois] if self.shell.snapshot else []
        self.query_one(RoiForm).open("new", new_roi_values(taken, detector=det, shape=shapes[det]),
                                     label="new ROI:")
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
            self.shell.send("mark", text=msg.values["name"] or "mark")
            return
        try:
            roi = parse_form(msg.values, shapes=self._shapes())
        except ValueError as exc:
            self.shell.notice(str(exc), severity="error")
            return  # the form stays open so the operator can correct the value
        form.close()
        self._paint_keys()
        self._set_roi(roi)

    @on(RoiForm.Cancelled)
    def _form_cancelled(self, msg: RoiForm.Cancelled) -> None:
        self.query_one(RoiForm).close()
        self._paint_keys()

    def forget_pending(self, name: str) -> None:
        """A set_roi was refused: show the rectangle the recorder has, not the one asked for."""
        self._pending.pop(name, None)
        self._force = True

    def _set_roi(self, roi: Roi) -> None:
        if self.shell.send("set_roi", roi=roi, name=roi.name):
            self._pending[roi.name] = roi
            self.selected, self._force = roi.name, True
            self.tick()

    def action_delete(self) -> None:
        if self.selected is None:
            self.shell.notice("no ROI selected", severity="warning")
            return
        self.confirm_delete = self.selected
        self.query_one(RoiForm).prompt(f"delete {self.selected}? y/n")
        self._paint_keys()
        self._force = True
        self.tick()

    def on_key(self, event: Key) -> None:
        """Keys for the form (all of them, in order while open) and the delete confirmation."""
        form = self.query_one(RoiForm)
        if self.confirm_delete is None and form.is_open:
            form.key(event.key, event.character)
            event.stop()  # an open form owns the keyboard until Enter or Esc
            event.prevent_default()
            return
        if self.confirm_delete is None:
            # Keys that open the form act here, not as bindings: bindings run when the key
            # has bubbled to the app, after the screen has already passed on the keys typed
            # right behind it (a burst over a slow link), which must reach the form.
            opener = {"e": self.action_edit, "n": self.action_new, "m": self.open_mark_form}.get(event.key)
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
            self.shell.send("delete_roi", name=name)
        else:
            self.shell.notice(f"delete {name}: cancelled")
        self._force = True
        self.tick()

    def _change(self, change: Any) -> None:
        roi = self._current(self.shell.snapshot)
        if roi is None:
            return
        try:
            new = change(roi, shape=self._shapes()[roi.detector])
        except (ValueError, KeyError) as exc:
            self.shell.notice(str(exc), severity="warning")
            return
        self._set_roi(new)

    def action_nudge(self, dx: int, dy: int) -> None:
        if self.view != "detector":
            return  # arrows nudge only where the rectangle is in sight
        self._change(lambda r, shape: moved(r, dx, dy, shape=shape))

    def action_grow(self, d: int) -> None:
        self._change(lambda r, shape: grown(r, d, shape=shape))

    def action_grab(self) -> None:
        roi = self._current(self.shell.snapshot)
        det = roi.detector if roi else next(iter(self._shapes()), None)
        if det is not None:
            self.shell.send("grab", timeout=10.0, detector=det, n=_GRAB_FRAMES)
            self.view, self._force = "detector", True

    def action_seek(self, seconds: float) -> None:
        self._seek(lambda feed: feed.seek(seconds))

    def action_seek_start(self) -> None:
        self._seek(lambda feed: feed.seek_start())

    def _seek(self, how: Any) -> None:
        feed = self.shell.feed
        if not hasattr(feed, "seek"):
            self.shell.notice("seek works in replay only")
            return
        # Re-reducing shots already seen would count them twice: a seek starts the averages
        # afresh, so the numbers still equal `reduce --tags` over the ranges shown.
        self.shell.loop.call(lambda: how(feed))
        self.shell.loop.reset()


def _rect(roi: Roi, *, name: bool = True) -> str:
    where = f"{roi.name} on {roi.detector}: " if name else ""
    return f"{where}x [{roi.x[0]}, {roi.x[1]}) y [{roi.y[0]}, {roi.y[1]})"

