"""The terminal console (Textual): imported only by the command line.

``make_app(feed, ...)`` builds the App for any :class:`~shotwatch.link.messages.Feed`:
the network client of a live recorder, or :class:`ReplayFeed` over a recording.
"""

from __future__ import annotations

from .app import ShotwatchApp, make_app
from .replay import ReplayFeed

__all__ = ["ReplayFeed", "ShotwatchApp", "make_app"]
