"""The recorder service: acquire loop, recording sink, publishing and control."""

from __future__ import annotations

from .client import NetFeed
from .runfile import find_runfile
from .service import Service
from .wire import WireError

__all__ = ["NetFeed", "Service", "WireError", "find_runfile"]
