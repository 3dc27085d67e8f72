"""The recorder's end of the control path: checked requests in, the recorder's answers out.

The control network process (:class:`~shotwatch.recorder.netproc.CtlProc`) has validated a
request, checked its token and its rate before it gets here; :class:`Requests` hands it to
the recorder (:class:`~shotwatch.link.protocols.Control`) and answers when the recorder's
future is done or the deadline passed. It also bounds what the recorder may be made to hold:
unfinished requests (a timed-out one still counts until the recorder finished it), grabs,
and ROI versions per recording.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass

from pydantic import BaseModel

from ..link import wire
from ..link.control import forward
from ..link.messages import Hello, Reply
from ..link.protocols import Control
from ..link.wire import READ_ONLY_ERROR, STARTING_ERROR
from ..schemas import Roi

__all__ = ["MAX_PENDING", "MAX_ROI_VERSIONS", "Requests"]

log = logging.getLogger("shotwatch.recorder.service")

MAX_PENDING = 64  # requests the recorder holds unfinished at once (timed-out ones included)
MAX_ROI_VERSIONS = 1000  # per recording: the ROI table travels whole in every hello and rois message


@dataclass
class _Pending:
    rid: bytes
    op: str
    future: Future[Reply]
    deadline: float
    timeout: float


class Requests:
    """Requests the recorder is working on, and the answers due.

    Args:
        served: the recorder.
        token: the control token (checked again here; the network process checked it first).
        request_timeout: longest a request waits for the recorder.
        hello: the current hello, None while the source opens.
        count: counts a fault by name (for the status).
    """

    def __init__(self, served: Control, *, token: str, request_timeout: float,
                 hello: Callable[[], Hello | None], count: Callable[[str], None]) -> None:
        self.served = served
        self.token = token
        self.request_timeout = request_timeout
        self._hello = hello
        self._count = count
        self.pending: list[_Pending] = []
        self._orphans: list[tuple[str, Future[Reply]]] = []  # timed out, still held by the recorder

    def handle(self, rid: bytes, body: bytes) -> Reply | None:
        """The answer now, or None when the recorder was given it (answered by :meth:`due`)."""
        try:
            req = wire.decode_request([body])
        except wire.WireError as exc:  # the network process checked it: this is a bug there
            self._count("malformed requests")
            return Reply(False, f"malformed request: {exc}")
        op = wire.OPS[req.op]
        if op.changes and not (req.token is not None
                               and hmac.compare_digest(req.token.encode(), self.token.encode())):
            return Reply(False, READ_ONLY_ERROR)  # checked there too; a second lock costs nothing
        try:
            if req.op == "hello":
                hello = self._hello()
                return Reply(True, data=hello.model_dump(mode="json")) if hello else Reply(False, STARTING_ERROR)
            if req.op == "list_rois":
                hello = self._hello()
                return (Reply(True, data={"rois": [asdict(v) for v in hello.rois]}) if hello
                        else Reply(False, STARTING_ERROR))
            refused = self._refuse(req.op, req.args)
            if refused is not None:
                return refused
            future = forward(self.served, req)
        except Exception as exc:  # any failure becomes that request's error reply
            log.exception("%s failed", req.op)
            return Reply(False, f"{req.op} failed: {exc}")
        timeout = min(self.request_timeout, 0.8 * req.timeout if req.timeout else self.request_timeout)
        self.pending.append(_Pending(rid, req.op, future, time.monotonic() + timeout, timeout))
        return None

    def _refuse(self, op: str, args: BaseModel) -> Reply | None:
        """What the recorder may not hold more of: unfinished requests, ROI versions."""
        self._orphans = [(o, f) for o, f in self._orphans if not f.done()]
        held = [p.op for p in self.pending] + [o for o, _ in self._orphans]
        if len(held) >= MAX_PENDING or held.count(op) >= wire.OPS[op].in_flight:
            self._count("busy replies")
            return Reply(False, f"{op}: recorder busy ({held.count(op)} {op} and {len(held)} requests "
                                "unfinished); try again")
        if isinstance(args, Roi):
            hello = self._hello()
            versions = hello.rois if hello else []
            same = any(v.end_shot is None and v.roi == args for v in versions)  # no change: no version
            if len(versions) >= MAX_ROI_VERSIONS and not same:
                return Reply(False, f"ROI {args.name!r}: expected at most {MAX_ROI_VERSIONS} ROI versions in "
                                    f"one recording, found {len(versions)}; start a new recording")
        return None

    def due(self) -> list[tuple[bytes, Reply]]:
        """Answers of requests the recorder finished, or whose deadline passed."""
        now = time.monotonic()
        out, keep = [], []
        for p in self.pending:
            if p.future.done():
                out.append((p.rid, _result(p.op, p.future)))
            elif now >= p.deadline:
                self._count("request timeouts")
                self._orphans.append((p.op, p.future))
                out.append((p.rid, Reply(False, f"{p.op}: timed out after {p.timeout:.1f} s waiting "
                                                "for the recorder (it keeps running)")))
            else:
                keep.append(p)
        self.pending = keep
        return out


def _result(op: str, future: Future[Reply]) -> Reply:
    exc = future.exception()
    if exc is not None:
        return Reply(False, f"{op} failed: {exc}")
    reply = future.result()
    return reply if isinstance(reply, Reply) else Reply(True)
