"""The recorder-console contract: messages, the wire codec, the network and in-process feeds,
the run file and the typed :class:`Feed`, :class:`Listener`, :class:`Control` and
:class:`Reducer` protocols.

Both sides import this package; a console never imports the recorder's internals.
"""

from __future__ import annotations

from .messages import (
    BlockMsg,
    Hello,
    ImageMsg,
    Message,
    NoticeMsg,
    Reply,
    ResetMsg,
    RoisMsg,
    Status,
    StatusMsg,
)
from .protocols import Control, Feed, Listener, NullListener, Reducer
from .wire import WireError

__all__ = [
    "BlockMsg", "Control", "Feed", "Hello", "ImageMsg", "Listener", "Message", "NoticeMsg", "NullListener",
    "Reducer", "Reply", "ResetMsg", "RoisMsg", "Status", "StatusMsg", "WireError",
]
