"""Sources of ShotBlocks: simulator, replay, SACLA, European XFEL (karabo-bridge)."""

from __future__ import annotations

from .base import Source, SourceStatus

__all__ = ["Source", "SourceStatus"]
