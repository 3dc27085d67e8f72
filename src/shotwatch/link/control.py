"""One dispatch from a validated control request to the recorder's typed methods.

The network service and the in-process feed both validate a request with the wire's models
(:func:`~shotwatch.link.wire.decode_request`) and hand it here, so an op means the same
whichever way it came.
"""

from __future__ import annotations

from concurrent.futures import Future

from ..schemas import Roi
from . import wire
from .messages import Reply
from .protocols import Control

__all__ = ["forward"]


def forward(control: Control, request: wire.Request) -> Future[Reply]:
    """The recorder's future for ``request`` (any op but ``hello`` and ``list_rois``).

    Raises:
        ValueError: ``hello``/``list_rois`` (answered by the caller) or an unknown op.
    """
    args = request.args
    if isinstance(args, Roi):
        return control.set_roi(args)
    if isinstance(args, wire.DeleteArgs):
        return control.delete_roi(args.name)
    if isinstance(args, wire.GrabArgs):
        return control.grab(args.detector, args.n)
    if isinstance(args, wire.MarkArgs):
        return control.mark(args.text)
    if isinstance(args, wire.PauseArgs):
        return control.pause(args.paused)
    if isinstance(args, wire.SeekArgs):
        return control.seek(seconds=args.seconds, start=args.start)
    if isinstance(args, wire.SpeedArgs):
        return control.set_speed(args.speed)
    if isinstance(args, wire.SetAnalysisArgs):
        return control.set_analysis(args.analysis, by=args.by)
    if isinstance(args, wire.DarkArgs):
        return control.dark(args.detector, args.n, force=args.force)
    if isinstance(args, wire.GetDarkArgs):
        return control.get_dark(args.detector, args.version)
    if request.op == "recompute":
        return control.recompute()
    if request.op == "stop":
        return control.stop()
    raise ValueError(f"{request.op}: expected a request the recorder answers, found one its caller should")
