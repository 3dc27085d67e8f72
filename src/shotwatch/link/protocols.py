"""The typed seams between the recorder and its consoles (DESIGN.md, link/).

:class:`Feed` is what a console reads from (the network client, or an in-process queue);
:class:`Listener` is what the recorder's acquire loop talks to (the network service, a
progress line, an in-process feed); :class:`Control` is the recorder as a feed or a service
drives it; :class:`Reducer` is the shape every reducer has, so a console can hold several
without knowing their states. mypy checks every implementation against these; nothing looks
a method up by name at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..schemas import Roi, ShotBlock
from .messages import (
    AnalysisMsg,
    BlockMsg,
    DarkMsg,
    Hello,
    ImageMsg,
    Message,
    NoticeMsg,
    Reply,
    ResetMsg,
    RoisMsg,
    StateMsg,
    StatusMsg,
)

__all__ = ["Control", "Feed", "Listener", "NullListener", "Reducer"]

S = TypeVar("S")
R_co = TypeVar("R_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)


class Listener(Protocol):
    """Receives everything the recorder emits, on the recorder's acquire thread.

    Every method must return quickly and never block (a slow consumer drops, it never slows
    acquisition); an exception is logged by the recorder and otherwise ignored.
    """

    wants_blocks: bool
    """False for a listener that ignores :meth:`on_block`: with none that wants them, the
    recorder does not even join its pending blocks into one message."""

    def on_block(self, msg: BlockMsg) -> None:
        """A block of shots (cutouts and points, never full frames), sequence-numbered."""

    def on_status(self, msg: StatusMsg) -> None:
        """The heartbeat (>= 1 Hz)."""

    def on_notice(self, msg: NoticeMsg) -> None:
        """A one-line notice for the operator."""

    def on_rois(self, msg: RoisMsg) -> None:
        """The ROI table changed."""

    def on_image(self, msg: ImageMsg) -> None:
        """A mean detector image (running average or grab)."""

    def on_reset(self, msg: ResetMsg) -> None:
        """Every console restarts its averages (a replay seek); sent after the last block before it."""

    def on_recording(self, path: Path) -> None:
        """A new recording was opened (the first, or one for a new run)."""

    def on_analysis(self, msg: AnalysisMsg) -> None:
        """The analysis changed, or a recomputation was asked for; sent after the last block
        reduced under the old analysis."""

    def on_state(self, msg: StateMsg) -> None:
        """A recomputation finished: the recording's shots ``[0, B)`` under the analysis in force."""

    def on_dark(self, msg: DarkMsg) -> None:
        """A new dark version was taken."""


class NullListener:
    """A :class:`Listener` that ignores everything: subclass it and override what you need."""

    wants_blocks = False

    def on_block(self, msg: BlockMsg) -> None:
        """Ignored."""

    def on_status(self, msg: StatusMsg) -> None:
        """Ignored."""

    def on_notice(self, msg: NoticeMsg) -> None:
        """Ignored."""

    def on_rois(self, msg: RoisMsg) -> None:
        """Ignored."""

    def on_image(self, msg: ImageMsg) -> None:
        """Ignored."""

    def on_reset(self, msg: ResetMsg) -> None:
        """Ignored."""

    def on_recording(self, path: Path) -> None:
        """Ignored."""

    def on_analysis(self, msg: AnalysisMsg) -> None:
        """Ignored."""

    def on_state(self, msg: StateMsg) -> None:
        """Ignored."""

    def on_dark(self, msg: DarkMsg) -> None:
        """Ignored."""


class Control(Protocol):
    """A recorder as the network service and the in-process feed drive it.

    Requests may come from any thread; each returns a future the acquire loop resolves at
    the next block boundary (a refusal is ``Reply(ok=False, error=...)``, never an exception).
    """

    def add_listener(self, listener: Listener) -> None:
        """Hear everything the recorder emits until removed."""

    def remove_listener(self, listener: Listener) -> None:
        """Stop hearing; a listener not added is ignored."""

    def add_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        """Counted faults of another part to show in the status."""

    def remove_counters(self, counters: Callable[[], Mapping[str, int]]) -> None:
        """Stop showing them."""

    def hello(self, *, publish: str, control: str) -> Hello | None:
        """What a console needs to start; None while the source is still opening."""

    def set_roi(self, roi: Roi) -> Future[Reply]:
        """Make ``roi`` active from the next block on (a new version if it changed)."""

    def delete_roi(self, name: str) -> Future[Reply]:
        """End the active version of ``name``."""

    def grab(self, detector: str, n: int) -> Future[Reply]:
        """Average the next ``n`` frames of ``detector`` (an ImageMsg follows)."""

    def mark(self, text: str) -> Future[Reply]:
        """Add an operator mark to the recording."""

    def stop(self) -> Future[Reply]:
        """Stop acquiring and close the recording."""

    def pause(self, paused: bool) -> Future[Reply]:
        """Pause or resume a replaying source (refused for any other)."""

    def seek(self, *, seconds: float = 0.0, start: bool = False) -> Future[Reply]:
        """Move a replaying source by ``seconds`` of recorded time, or to its start."""

    def set_speed(self, speed: float) -> Future[Reply]:
        """A replaying source's pace (1.0 = recorded pace, 0 = as fast as possible)."""

    def set_analysis(self, analysis: dict[str, Any], *, by: str) -> Future[Reply]:
        """Validate the analysis sections ``analysis`` (JSON) and, if they pass, record them as
        analysis version K+1 from the next block on, broadcast an AnalysisMsg and recompute the
        recording so far under them; ``Reply(ok=True, data={"version", "epoch"})``, or a
        one-line refusal (``<key>: expected …, found …``) with nothing recorded."""

    def recompute(self) -> Future[Reply]:
        """Recompute the recording so far under the analysis in force (a new epoch, no new
        version); ``Reply(ok=True, data={"version", "epoch"})``."""

    def dark(self, detector: str, n: int, *, force: bool = False) -> Future[Reply]:
        """Average the next ``n`` full frames of ``detector`` into its next dark version (refused
        while the ``alarm.beam`` veto passes, unless ``force``); a new analysis version naming
        it follows, as with :meth:`set_analysis`."""

    def get_dark(self, detector: str, version: int) -> Future[Reply]:
        """Dark version ``version`` of ``detector``: ``data`` holds ``mean`` and ``std``
        (float32 arrays) and ``frames``, ``first_tag``, ``last_tag``."""


class Feed(Protocol):
    """What a console reads from: the live network client or an in-process recorder.

    Every method returns within its timeout; none raises for a vanished recorder (the feed
    reports it through ``connected`` and keeps trying).
    """

    read_only: bool
    """True when requests that change anything will be refused."""

    def hello(self, *, timeout: float) -> Hello | None:
        """The recorder's hello (None if it did not answer in time)."""

    @property
    def last_hello(self) -> Hello | None:
        """The newest hello seen (after a reconnect, perhaps another recorder's)."""

    def poll(self, *, timeout: float) -> list[Message]:
        """Messages that arrived, waiting at most ``timeout`` s for the first.

        A slow reader gets the newest data: the feed drops whole blocks and counts them
        in ``skipped``.
        """

    @property
    def skipped(self) -> int:
        """Blocks dropped (sequence gaps or drained backlog) so far."""

    @property
    def connected(self) -> bool:
        """False once the heartbeat has been missing for a few seconds."""

    def request(self, op: str, *, timeout: float = 2.0, **args: Any) -> Reply:
        """A control request (``wire.OPS``); never raises, a problem is ``Reply(ok=False)``.

        ``args`` are the op's arguments as keywords (``Any``: each op validates its own
        against its wire model, ``set_roi`` takes ``roi=Roi(...)``).
        """

    def close(self) -> None:
        """Release sockets/files; idempotent."""


class Reducer(Protocol[S, R_co, T_contra]):
    """``init → state``, ``update(state, block) → state``, ``merge(a, b) → state``,
    ``result(state) → value`` (DESIGN.md, Reducers); states are immutable values.

    ``table`` is a per-block precomputation several reducers share (the reducers' shot
    table: the expensive ROI sums, computed once per block by a caller feeding several).
    """

    def init(self) -> S:
        """No data."""

    def update(self, state: S, block: ShotBlock, *, table: T_contra | None = None) -> S:
        """``state`` plus ``block``."""

    def merge(self, a: S, b: S) -> S:
        """Both states' data together (associative)."""

    def result(self, state: S) -> R_co:
        """The value for display or output."""
