"""The recorder on rank 0 of ``record --mpi``: the one-process recorder over the merged ranks.

It is :class:`~shotwatch.recorder.acquire.Recorder` reading a
:class:`~shotwatch.recorder.mpi_rank0.RankSource`: the recording, the network service, the
live summary, health and everything a console sees are the one-process recorder's, so a
console cannot tell N = 1 from N = 4 except by ``Status.ranks``. What differs:

- ROI edits take effect at one tag on every rank. A request is checked at once (a refusal is
  the same one line as with one process), then held: the ranks stop after their current
  block and say their last tag, rank 0 fixes the boundary B after all of them, tells every
  rank the versions active from B, delivers every shot before B, and only then applies the
  edit (its first shot is the first shot at or after B). Edits arriving meanwhile wait for
  the next round, all of them at one boundary.
- Full frames stay on the worker ranks: each sends the sums of its frames for the running
  image every second; a frame crosses to rank 0 only where the recording keeps frames
  (``record.frames_every`` > 0: rank 0 chooses them exactly as one process would) or a
  grab or a dark being taken waits for them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..link.messages import Reply, Status
from ..schemas import Config, Roi, RoiTable, ShotBlock
from .acquire import Recorder
from .images import ImageWindow
from .mpi_rank0 import RankSource

__all__ = ["MpiRecorder"]


class _SummedImages(ImageWindow):
    """The running image from the workers' sums only (blocks' frames were summed already)."""

    def add(self, block: ShotBlock) -> None:
        return None


@dataclass
class _Edit:
    """One ROI request waiting for its boundary."""

    apply: Callable[[], Reply]
    trial: Callable[[RoiTable], Any]
    future: Future[Reply]


class MpiRecorder(Recorder):
    """Rank 0's recorder (see the module docstring).

    Args:
        config: the configuration in force.
        ranks: the worker ranks as a source.
        **kwargs: as :class:`~shotwatch.recorder.loop.AcquireLoop` (not ``source``).
    """

    def __init__(self, config: Config, *, ranks: RankSource, **kwargs: Any) -> None:
        super().__init__(config, source=ranks, **kwargs)
        self.ranks = ranks
        self._images = _SummedImages()
        self._queued: list[_Edit] = []
        self._round: list[_Edit] = []
        self._committed = False

    # --- requests ----------------------------------------------------------------------------

    def set_roi(self, roi: Roi) -> Future[Reply]:
        fut: Future[Reply] = Future()
        edit = _Edit(lambda: self._do_set_roi(roi), lambda t: t.set(roi, shot=self._shot, tag=0), fut)
        return self._requests.submit(lambda: self._check_roi(roi) or self._defer(edit), fut)

    def delete_roi(self, name: str) -> Future[Reply]:
        fut: Future[Reply] = Future()
        edit = _Edit(lambda: self._do_delete_roi(name), lambda t: t.delete(name, shot=self._shot), fut)
        return self._requests.submit(lambda: self._check_delete(name) or self._defer(edit), fut)

    def _defer(self, edit: _Edit) -> Reply | None:
        """Queue an edit for the next boundary (None: answered then)."""
        self._queued.append(edit)
        self._next_round()
        return None

    def _next_round(self) -> None:
        if self._round or not self._queued:
            return
        self._round, self._queued = self._queued, []
        self._committed = False
        self.ranks.hold()

    def _boundaries(self) -> None:
        """Move the current round on: commit its boundary once held, apply it once reached."""
        if not self._round:
            return
        if not self._committed:
            boundary = self.ranks.boundary()
            if boundary is None:
                return
            trial = RoiTable.from_versions(self.rois.all())
            for edit in self._round:
                edit.trial(trial)
            self.ranks.commit(boundary, trial.active())
            self._committed = True
        if not self.ranks.at_boundary():
            return
        for edit in self._round:
            reply = edit.apply()
            if not edit.future.done():
                edit.future.set_result(reply)
        self.ranks.end_round()
        self._round = []
        self._next_round()

    def _do_grab(self, detector: str, n: int, fut: Future[Reply]) -> Reply | None:
        reply = super()._do_grab(detector, n, fut)
        self._want_frames()
        return reply

    def _want_frames(self) -> None:
        if self.config.record.frames_every > 0:
            self.ranks.want_frames("all")
        else:
            wanted = {g.detector for g in self._grabs} | {t.detector for t in self._watch.takes}
            self.ranks.want_frames(sorted(wanted))

    # --- the loop's hooks ----------------------------------------------------------------------

    def open(self) -> None:
        self._want_frames()
        super().open()

    def _tick(self) -> None:
        for det, total, count in self.ranks.images():
            self._images.add_sum(det, total, count)
        self._boundaries()
        self._want_frames()  # a grab that got its frames needs them no more
        super()._tick()

    def close(self) -> None:
        for edit in [*self._round, *self._queued]:
            if not edit.future.done():
                edit.future.set_result(Reply(False, "stopped: the recorder stopped before the ROI change took effect"))
        self._round, self._queued = [], []
        super().close()

    def status(self) -> Status:
        return super().status().model_copy(update={"ranks": 1 + len(self.ranks.live)})
