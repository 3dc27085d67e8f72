"""The recorder-console contract: messages, the wire codec, the network feed, the run file
and the typed :class:`Feed` and :class:`Listener` protocols.

Both sides import this package; a console never imports the recorder's internals.
"""

from __future__ import annotations

from .messages import BlockMsg, Hello, ImageMsg, Message, NoticeMsg, Reply, RoisMsg, Status, StatusMsg
from .protocols import Feed, Listener, NullListener
from .wire import WireError

__all__ = [
    "BlockMsg", "Feed", "Hello", "ImageMsg", "Listener", "Message", "NoticeMsg", "NullListener", "Reply",
    "RoisMsg", "Status", "StatusMsg", "WireError",
]
