"""What a source knows about itself: run, array detectors, point detectors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["DetectorInfo", "SourceInfo"]


class DetectorInfo(BaseModel):
    """One array detector as the source delivers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: tuple[int, int]
    """(H, W): rows, columns."""
    dtype: str
    """numpy dtype string of delivered pixels, e.g. ``"float32"``."""
    ev_per_adu: float
    """Energy per ADU (MPCCD: mp_absgain x 3.65)."""


class SourceInfo(BaseModel):
    """``Source.describe()``: what the recording's ``source``/``detectors`` attributes hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    """``sim``, ``replay``, ``sacla`` or ``karabo``."""
    run: int | None = None
    """Current run number."""
    hightag: int | None = None
    """SACLA high tag (or other epoch)."""
    detectors: dict[str, DetectorInfo] = {}
    """Array detectors available now (id -> info)."""
    points: list[str] = []
    """Point detectors available (facility names)."""
    attrs: dict[str, Any] = {}
    """Anything else worth recording: beamline, endpoint, simulator ground truth..."""
