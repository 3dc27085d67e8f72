"""The ROI version table: which rectangle each ROI name had from which shot on.

Shared by the recorder (which versions are active, what cutout keys to produce), the
recording writer (version groups and their attributes) and the reader. Pure Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .config import Roi
from .shotblock import roi_key

__all__ = ["RoiTable", "RoiVersion"]


@dataclass(frozen=True)
class RoiVersion:
    """One version of one ROI: the rectangle from ``first_shot`` until ``end_shot`` (exclusive).

    ``end_shot`` is None while the version is active.
    """

    name: str
    version: int
    detector: str
    x: tuple[int, int]
    y: tuple[int, int]
    first_shot: int
    first_tag: int
    end_shot: int | None = None

    @property
    def key(self) -> str:
        return roi_key(self.name, self.version)

    @property
    def roi(self) -> Roi:
        return Roi(name=self.name, detector=self.detector, x=self.x, y=self.y)

    def attrs(self) -> dict[str, object]:
        """FORMAT.md attributes of the ``roi/<name>/v<k>`` group."""
        return {"name": self.name, "detector": self.detector, "x": list(self.x), "y": list(self.y),
                "first_shot": self.first_shot, "first_tag": self.first_tag}


@dataclass
class RoiTable:
    """All versions of all ROIs, in order; the newest open version of a name is active."""

    versions: dict[str, list[RoiVersion]] = field(default_factory=dict)

    @classmethod
    def from_versions(cls, versions: Iterable[RoiVersion]) -> RoiTable:
        table = cls()
        for v in sorted(versions, key=lambda v: (v.name, v.version)):
            table.versions.setdefault(v.name, []).append(v)
        return table

    def active(self) -> dict[str, RoiVersion]:
        """ROI key (``name/vK``) -> active version."""
        out = {}
        for versions in self.versions.values():
            last = versions[-1]
            if last.end_shot is None:
                out[last.key] = last
        return out

    def active_rois(self) -> dict[str, Roi]:
        """ROI name -> rectangle, for the active versions."""
        return {v.name: v.roi for v in self.active().values()}

    def all(self) -> list[RoiVersion]:
        return [v for versions in self.versions.values() for v in versions]

    def set(self, roi: Roi, *, shot: int, tag: int) -> RoiVersion | None:
        """Make ``roi`` active from ``shot`` on; returns the new version, or None if unchanged."""
        versions = self.versions.setdefault(roi.name, [])
        if versions:
            last = versions[-1]
            if last.end_shot is None:
                if (last.detector, last.x, last.y) == (roi.detector, roi.x, roi.y):
                    return None  # an identical set is no change
                versions[-1] = _ended(last, shot)
        new = RoiVersion(roi.name, len(versions) + 1, roi.detector, roi.x, roi.y, shot, tag)
        versions.append(new)
        return new

    def delete(self, name: str, *, shot: int) -> RoiVersion | None:
        """End the active version of ``name`` at ``shot``; returns it, or None if none was active."""
        versions = self.versions.get(name)
        if not versions or versions[-1].end_shot is not None:
            return None
        versions[-1] = _ended(versions[-1], shot)
        return versions[-1]

    def apply(self, rois: Mapping[str, Roi], *, shot: int, tag: int) -> list[RoiVersion]:
        """Make exactly ``rois`` (name -> Roi) active; returns the new versions."""
        for name in [n for n, vs in self.versions.items() if vs[-1].end_shot is None and n not in rois]:
            self.delete(name, shot=shot)
        return [v for roi in rois.values() if (v := self.set(roi, shot=shot, tag=tag)) is not None]


def _ended(v: RoiVersion, shot: int) -> RoiVersion:
    return RoiVersion(v.name, v.version, v.detector, v.x, v.y, v.first_shot, v.first_tag, shot)
