"""The live screen's widgets, one concern each: status, ROI rows, the selected ROI, plots,
the detector thumbnail and the key bar.

Each is a :class:`~.widgets.Painted` (it repaints only when its content changed) and a thin
shell over a pure formatter; the screen hands each what it shows. The plot area and the
thumbnail are the expensive regions: they keep their own repaint period and repaint sooner
only when forced (a view switch, a ROI change) or, for the thumbnail, for a fresh grab.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text

from ..schemas import Roi
from . import format as fmt
from .events import Picture
from .keys import bar_text
from .model import Snapshot
from .plots import render_view
from .thumb import thumbnail
from .tuning import SPARK_MAX, SPARK_MAX_LOW
from .views import Choice, view_line
from .widgets import Painted

__all__ = ["DetectorView", "KeyBar", "PlotArea", "RoiRows", "SelectedLine", "StatusBar"]


class StatusBar(Painted):
    """Source, run, tag, rate and age of the newest shot; alarms, recorder state, analysis
    version, a recomputation's progress and received tags. Red while an alarm rings."""

    def show(self, picture: Picture, *, now: float, label: str | None) -> None:
        snap = picture.snapshot
        ringing = snap is not None and snap.status is not None and bool(snap.status.alarms)
        if ringing != self.has_class("-alarm"):
            self.set_class(ringing, "-alarm")  # red while any alarm rings (console.tcss)
        self.paint(fmt.status_text(
            snap.status if snap else None, connected=picture.connected, skipped=picture.skipped, now=now,
            tag_ranges=snap.tag_ranges if snap else (), paused=picture.paused, source_label=label,
            analysis=(snap.analysis_version, snap.recompute, snap.awaiting_state) if snap else None))


class RoiRows(Painted):
    """One row per ROI (sparkline, value, mean, norm, count), the I0 row, and the vetoes."""

    def show(self, snap: Snapshot, *, selected: str | None, low: bool) -> None:
        width = max(20, self.size.width or self.screen.size.width)
        st = snap.status
        missing = set(st.not_in_stream) if st is not None else set()
        rois = (snap.summary or {}).get("rois") or {}
        spark = SPARK_MAX_LOW if low else SPARK_MAX
        out = Text(no_wrap=True, overflow="ellipsis")
        for v in snap.rois:
            stats = rois.get(snap.result_keys.get(v.name, ""), {})
            ser = snap.series.get(v.name)
            out.append_text(fmt.roi_line(
                v.name, ser.values if ser is not None else (), width=width, mean=stats.get("mean"),
                norm=stats.get("norm"), count=stats.get("count") or 0, missing=v.detector in missing,
                selected=v.name == selected, spark_max=spark, plain=low))
            out.append("\n")
        cfg = snap.config
        if cfg is not None and cfg.i0 is not None:
            out.append_text(fmt.roi_line("I0", snap.i0, width=width, mean=snap.i0_mean, norm=None, count=None,
                                         missing=cfg.i0.name in missing, spark_max=spark, plain=low))
            out.append("\n")
        out.append(fmt.vetoes_text((snap.summary or {}).get("shots")))
        self.paint(out)


class SelectedLine(Painted):
    """The selected ROI as applied, a request not applied yet, the view; or a question, or
    what the open line form says (the active field's hint, a refusal)."""

    def show(self, applied: Roi | None, requested: Roi | None, *, selected: str | None, view: str,
             confirm_delete: str | None, note: str | None = None) -> None:
        if note is not None:  # the line form's hint, refusal or wait
            self.paint(note)
        elif confirm_delete is not None:
            self.paint(f"delete ROI {confirm_delete!r}? y = yes, any other key = no")
        else:
            self.paint(fmt.selected_text(applied, requested, selected=selected, view=view))


class PlotArea(Painted):
    """Views 1-4 of the selected ROI, drawn by ``plots.render_view`` every ``every`` seconds."""

    def __init__(self, *, every: float, id: str | None = None) -> None:
        super().__init__(id=id)
        self._every = every
        self._at = -1e9

    def show(self, snap: Snapshot, *, view: str, selected: str | None, now: float, force: bool,
             choice: Choice | None = None, low: bool = False) -> None:
        if low:  # --low-bandwidth: one line of text for the correlation and the histogram, no plot
            if view in ("correlation", "histogram") and (force or now - self._at >= self._every):
                self._at = now
                self.paint(view_line(view, snap, selected, choice, width=self.size.width or 80))
            return
        # A one-line "no data yet" message is cheap and should give way to the plot at once.
        placeholder = "\n" not in self.shown
        if not (force or placeholder) and now - self._at < self._every:
            return
        self._at = now
        self.paint(render_view(view, snap, selected, width=self.size.width, height=self.size.height, choice=choice))


class DetectorView(Painted):
    """The selected ROI's detector with the ROI rectangles (a thumbnail): its mean image, or
    the dark or the mask of the analysis in force (``layer``)."""

    def __init__(self, *, every: float, low: bool, id: str | None = None) -> None:
        super().__init__(id=id)
        self._every, self._low = every, low
        self._at = -1e9
        self._image_id: int | None = None
        self._layer_key: tuple[str, int] | None = None

    def show(self, snap: Snapshot, *, applied: Roi | None, selected: str | None, now: float, force: bool,
             layer: str = "image") -> None:
        det = applied.detector if applied else next(iter(snap.shapes), None)
        if layer != "image" and det is not None:
            self._show_layer(snap, det, layer, selected=selected, force=force)
            return
        self._layer_key = None
        img = snap.images.get(det) if det else None
        if self._low or img is None:
            note = "thumbnail off in --low-bandwidth" if self._low else "no image yet — g grabs"
            self.paint(Text(f"{det or 'no detector'}: {note}"))
            return
        new = id(img) != self._image_id
        # running images are repainted every few seconds; a grab the operator asked for at once
        fresh = new and (img.kind == "grab" or now - self._at >= self._every)
        if not (force or fresh):
            return
        self._at, self._image_id = now, id(img)
        head = Text(f"{det} · {img.kind} mean of {img.count} frames\n")
        rois = [v for v in snap.rois if v.detector == det]
        head.append_text(thumbnail(img.image, rois, width=self.size.width, height=max(3, self.size.height - 1),
                                   selected=selected))
        self.paint(head)

    def _show_layer(self, snap: Snapshot, det: str, layer: str, *, selected: str | None, force: bool) -> None:
        """The dark or the mask: repainted when it changes (a new analysis), not on a timer."""
        frame, mask = snap.darks.get(det), snap.masks.get(det)
        picture = (frame.mean if frame is not None else None) if layer == "dark" else mask
        key = (layer, id(picture))
        if key == self._layer_key and not force:
            return
        self._layer_key = key
        dark = snap.config.calibration.dark if snap.config is not None else None
        head = Text(fmt.layer_head(det, layer, frame=frame, mask=mask,
                                   version=dark.get(det) if isinstance(dark, dict) else None))
        if picture is not None and not self._low and (layer == "dark" or bool(mask is not None and mask.any())):
            head.append("\n")
            head.append_text(thumbnail(np.asarray(picture, np.float32), [v for v in snap.rois if v.detector == det],
                                       width=self.size.width, height=max(3, self.size.height - 1), selected=selected,
                                       mask=layer == "mask"))
        self.paint(head)


class KeyBar(Painted):
    """The keys that work now. Textual's Footer recomposes on every focus change (a Tab in the
    form repainted the whole screen, ~6 kB at 80x24); this line changes only with the mode."""

    def show(self, pairs: tuple[tuple[str, str], ...]) -> None:
        self.paint(bar_text(pairs, self.size.width or self.screen.size.width))
