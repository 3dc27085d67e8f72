"""The recorder service: acquire loop, recording sink, publishing and control."""

from __future__ import annotations

from .service import Service

__all__ = ["Service"]
