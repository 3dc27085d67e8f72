"""The recorder-console contract: messages, the wire codec, the network and in-process feeds,
the run file and the typed :class:`Feed`, :class:`Listener`, :class:`Control` and
:class:`Reducer` protocols.

Both sides import this package; a console never imports the recorder's internals.
"""

from __future__ import annotations

from .messages import (
    AnalysisMsg,
    BlockMsg,
    DarkMsg,
    Hello,
    ImageMsg,
    Message,
    NoticeMsg,
    Progress,
    Reply,
    ResetMsg,
    RoisMsg,
    StateMsg,
    Status,
    StatusMsg,
    Tree,
)
from .protocols import Control, Feed, Listener, NullListener, Reducer
from .wire import WireError

__all__ = [
    "AnalysisMsg", "BlockMsg", "Control", "DarkMsg", "Feed", "Hello", "ImageMsg", "Listener", "Message",
    "NoticeMsg", "NullListener", "Progress", "Reducer", "Reply", "ResetMsg", "RoisMsg", "StateMsg", "Status",
    "StatusMsg", "Tree", "WireError",
]
