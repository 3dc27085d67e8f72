"""Which ROI the operator works on, and the rectangles asked for that the recorder has not
broadcast yet. Pure: snapshots in, answers out (no Textual).

The screen shows what the recorder applied; a request not yet broadcast is shown beside it,
and the next nudge builds on the requested rectangle, so fast keys accumulate.
"""

from __future__ import annotations

from ..schemas import Roi
from .model import Snapshot

__all__ = ["Selection"]


class Selection:
    """The selected ROI name and the pending requests, per ROI name."""

    def __init__(self) -> None:
        self.selected: str | None = None
        self.pending: dict[str, Roi] = {}

    def sync(self, snap: Snapshot) -> bool:
        """Follow the broadcast ROI table; True if what is shown must change."""
        changed = False
        names = [v.name for v in snap.rois]
        if self.selected not in names and self.selected not in self.pending:
            self.selected = names[0] if names else None
            changed = True
        for name, want in list(self.pending.items()):
            have = next((v for v in snap.rois if v.name == name), None)
            if have is not None and (have.x, have.y, have.detector) == (want.x, want.y, want.detector):
                del self.pending[name]  # the broadcast arrived: the recorder applied it
                changed = True
        return changed

    def next(self, snap: Snapshot | None) -> bool:
        """Select the next ROI in table order; False if there is none."""
        names = [v.name for v in snap.rois] if snap else []
        if not names:
            return False
        i = names.index(self.selected) if self.selected in names else -1
        self.selected = names[(i + 1) % len(names)]
        return True

    def applied(self, snap: Snapshot | None) -> Roi | None:
        """The selected ROI as the recorder last broadcast it."""
        v = next((v for v in snap.rois if v.name == self.selected), None) if snap else None
        return v.roi if v else None

    def requested(self) -> Roi | None:
        """The selected ROI's rectangle asked for and not broadcast yet."""
        return self.pending.get(self.selected or "")

    def current(self, snap: Snapshot | None) -> Roi | None:
        """The selected ROI as last requested by this console, else as broadcast."""
        if snap is None or self.selected is None:
            return None
        return self.requested() or self.applied(snap)

    def request(self, roi: Roi) -> None:
        """A set_roi was sent: show it as requested, and select it."""
        self.pending[roi.name] = roi
        self.selected = roi.name

    def forget(self, name: str) -> None:
        """A set_roi was refused: show the rectangle the recorder has, not the one asked for."""
        self.pending.pop(name, None)
