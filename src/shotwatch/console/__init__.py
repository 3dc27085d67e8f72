"""The terminal console (Textual): imported only by the command line.

``make_app(feed, ...)`` builds the App for any :class:`~shotwatch.link.protocols.Feed`: the
network client of a recorder (``console``), or the in-process feed of one (``run``,
``replay``). The console only draws what its feed gives it; replay is a recorder too.
"""

from __future__ import annotations

from .app import ShotwatchApp, make_app

__all__ = ["ShotwatchApp", "make_app"]
