"""Versioned things a recording holds besides shots: analysis versions and dark frames.

Shared by the recording package (which writes and reads them, FORMAT.md), the reducers (which
apply them) and the recorder (which creates them while recording). Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AnalysisVersion", "DarkFrame", "DarkVersion"]


class AnalysisVersion(BaseModel):
    """One entry of the recording's ``analysis`` list (FORMAT.md, INTERFACE.md "analysis versions").

    ``config`` holds the analysis sections (every section but ``source``, ``record`` and
    ``roi``) as JSON; in a recording, ``calibration.dark`` names dark versions
    (``{"<det>": k}``), never a file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    """Numbered from 1 (version 1 = the analysis sections of the recording's ``config``)."""
    first_shot: int = Field(ge=0)
    """First shot (index on the recording's shot axis) reduced under this version."""
    first_tag: int
    """Tag of that shot (-1 when not known yet)."""
    time: float | None = None
    """Unix seconds when the version was set."""
    by: str = ""
    """Who set it (``user@host`` of the console), empty for version 1."""
    config: dict[str, Any] = {}
    """The analysis sections as JSON."""


class DarkVersion(BaseModel):
    """Metadata of one dark version ``dark/<det>/v<k>`` (FORMAT.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detector: str
    """The detector (facility name)."""
    version: int = Field(ge=1)
    """Numbered from 1 per detector."""
    frames: int = Field(ge=1)
    """Frames averaged."""
    first_tag: int
    """Tag of the first frame used."""
    last_tag: int
    """Tag of the last frame used."""
    time: float | None = None
    """Unix seconds when it was taken."""


@dataclass(frozen=True)
class DarkFrame:
    """A detector's dark: per-pixel mean and standard deviation (float32, whole frame, [H, W]).

    Attributes:
        mean: ADU subtracted from every pixel before gain and threshold.
        std: per-pixel standard deviation (ADU); pixels above ``calibration.dark_noise_max_adu``
            are masked.
        frames: frames averaged.
        first_tag, last_tag: tags of the first and last frame used.
    """

    mean: npt.NDArray[np.float32]
    std: npt.NDArray[np.float32]
    frames: int
    first_tag: int
    last_tag: int
