"""The recorder's side of the recording: paths, new runs, append, and failed writes.

A failed write, commit, creation or close (full disk, I/O error, a path taken meanwhile)
stops recording cleanly: the last commit stays intact, the state becomes ``failed``, the
caller gets a one-line notice, and live data keep flowing. No method here raises for that
after :meth:`RecordingSink.check_target`.
"""

from __future__ import annotations

import shutil
import string
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from ..recording import RecordingReader, RecordingWriter, refuse_if_written
from ..schemas import (
    ANALYSIS_SECTIONS,
    AnalysisVersion,
    Config,
    DarkFrame,
    RecordingError,
    RoiTable,
    ShotBlock,
)
from ..schemas.source_info import SourceInfo
from .paths import fill_template, free_path

__all__ = ["RecordingSink", "SinkState"]

SinkState = Literal["live", "recording", "failed", "stopped"]


class RecordingSink:
    """Owns the current RecordingWriter (see the module docstring).

    ``state``: ``live`` (no recording open: before the first block, or between runs),
    ``recording``, ``failed`` (the last one stopped on an error) or ``stopped`` (closed).
    """

    def __init__(self, config: Config, *, template: str, append: bool, commit_seconds: float) -> None:
        self.config = config
        self.template = template
        self.append = append
        self.commit_seconds = commit_seconds
        self.path: Path | None = None
        self.renamed_from: Path | None = None
        """Set by :meth:`open` when the path the template gave was taken (a suffix was added)."""
        self.error: str | None = None
        self.first_path: Path | None = None
        self.finished: list[tuple[Path, int]] = []  # every recording closed so far, with its shots
        self._writer: RecordingWriter | None = None
        self._state: SinkState = "live"
        self._runs = 0
        self._closed_committed = 0  # what the last closed writer had committed
        self._closed_bytes = 0

    @property
    def state(self) -> SinkState:
        return self._state

    @property
    def recording(self) -> bool:
        """A recording is open and writable."""
        return self._writer is not None

    def check_target(self, *, run: int | None) -> Path:
        """The first recording's path; an existing one without --append is a usage error."""
        unknown = [f for _, f, _, _ in string.Formatter().parse(self.template) if f not in (None, "run", "time")]
        if unknown:
            raise RecordingError(f"record.out {self.template}: expected only {{run}} and {{time}} as placeholders, "
                                 f"found {{{unknown[0]}}}")
        path = fill_template(self.template, run=run, first=True)
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise RecordingError(f"{path}: expected a directory at {blocker}, found a file")
        if path.exists() and not self.append:
            raise RecordingError(f"{path}: expected a new recording path, found an existing one "
                                 "(use --append to continue it)")
        if self.append and path.exists():
            refuse_if_written(path)  # another recorder is writing it: refuse, touch nothing
            RecordingReader(path)  # refuses a foreign or unknown-version store, one line
        self.first_path = path
        return path

    def continuing(self) -> RecordingReader | None:
        """With --append, before the first recording opens: the recording to continue."""
        return self._continuing()

    def _continuing(self) -> RecordingReader | None:
        """With --append, before the first recording opens: the recording to continue."""
        if self._runs or not (self.append and self.first_path is not None and self.first_path.exists()):
            return None
        return RecordingReader(self.first_path)

    def last_tag(self) -> int | None:
        """With --append: the last committed tag of the recording to continue."""
        reader = self._continuing()
        if reader is None or not reader.committed:
            return None
        return int(reader.tags()[-1])

    def resume(self) -> tuple[RoiTable, int]:
        """The ROI history and committed shots to continue from (empty and 0 for a new one)."""
        reader = self._continuing()
        if reader is None:
            return RoiTable(), 0
        return RoiTable.from_versions(reader.rois.all()), int(reader.committed)

    def open(self, *, info: SourceInfo, rois: RoiTable, points: list[str], analysis: Config | None = None,
             darks: Mapping[str, DarkFrame] | None = None) -> str | None:
        """Open the recording of this run.

        ``analysis``: the configuration in force (``calibration.dark`` naming dark versions),
        recorded as a new recording's version 1, or, appending, as the next analysis version
        when ``darks`` holds new ones; ``darks``: frames to record as new dark versions
        (numbered as ``analysis`` names them).

        The first run's path was checked at start, and a failure to open it raises (``record``
        then exits with the one-line error: nothing was recorded yet, e.g. ``--append`` to a
        recording of another configuration). A later run's gets ``-<run>`` where the template
        has no ``{run}``, and ``-2``, ``-3``, ... where that path exists already; a failure to
        open it is returned as a notice (state ``failed``), never raised: live data go on.
        """
        first = self._runs == 0
        self.renamed_from = None
        if first and self.first_path is not None:
            path = self.first_path
        else:
            wanted = fill_template(self.template, run=info.run, first=first)
            path = free_path(wanted)
            self.renamed_from = wanted if path != wanted else None
        self._runs += 1
        self.path = path
        try:
            self._writer = self._new_writer(path, info=info, rois=rois, points=points, analysis=analysis or self.config,
                                            darks=darks or {})
        except (OSError, ValueError) as exc:  # RecordingWriteError, RecordingError (a path taken meanwhile)
            if first:
                raise
            self._writer = None
            self._state, self.error = "failed", f"{path}: recording not started: {exc}"
            return self.error
        self._state, self.error = "recording", None
        return None

    def _new_writer(self, path: Path, *, info: SourceInfo, rois: RoiTable, points: list[str], analysis: Config,
                    darks: Mapping[str, DarkFrame]) -> RecordingWriter:
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.append and path.exists():
            writer = RecordingWriter.append(path, config=self.config, source=info, points=points)
            try:
                writer.set_rois(rois)
                if darks:  # a dark file that differs from the versions recorded: the next ones
                    now = time.time()
                    for det, frame in darks.items():
                        writer.add_dark(det, frame, time=now)
                    sections = {k: v for k, v in analysis.model_dump(mode="json").items() if k in ANALYSIS_SECTIONS}
                    writer.add_analysis(sections,
                                        first_shot=writer.committed, first_tag=-1, by="record --append", time=now)
            except BaseException:
                writer.close()
                raise
            return writer
        return RecordingWriter.create(path, config=analysis, source=info, rois=rois, points=points,
                                      commit_seconds=self.commit_seconds, darks=darks)

    def write(self, block: ShotBlock) -> str | None:
        """Buffer a block (the writer commits when due); a notice if recording just failed."""
        return self._call(lambda w: w.write(block))

    def commit(self) -> str | None:
        """Commit what is buffered (a pause in the beam must not hold shots back)."""
        return self._call(lambda w: w.commit())

    def set_rois(self, table: RoiTable) -> str | None:
        """New ROI versions from the next block on."""
        return self._call(lambda w: w.set_rois(table))

    def set_detectors(self, info: SourceInfo) -> str | None:
        """Array detectors first seen after the start, recorded before any of their cutouts."""
        return self._call(lambda w: w.set_detectors(info))

    def add_dark(self, detector: str, frame: DarkFrame, *, at: float) -> tuple[int | None, str | None]:
        """Record ``frame`` as ``detector``'s next dark version: (its number, None), or (None, a
        notice) when there is no recording or the write failed (recording stops)."""
        got: list[int] = []
        notice = self._call(lambda w: got.append(w.add_dark(detector, frame, time=at)))
        return (got[0] if got else None), notice

    def add_analysis(self, sections: dict[str, object], *, first_shot: int, by: str, at: float) -> int | str:
        """Record the next analysis version from ``first_shot`` (its first tag is filled in when
        that shot is committed); the version number, or a notice if recording just failed."""
        writer = self._writer
        if writer is None:
            return f"{self.path}: not recording"
        version: list[int] = []
        notice = self._call(lambda w: version.append(w.add_analysis(sections, first_shot=first_shot, first_tag=-1,
                                                                   by=by, time=at)))
        return notice if notice else version[0]

    def analysis_versions(self) -> list[AnalysisVersion]:
        """The open recording's analysis versions (none without one)."""
        return self._writer.analysis_versions if self._writer is not None else []

    def mark(self, text: str, *, tag: int | None, at: float) -> dict[str, object] | None:
        """An operator mark in the recording (None without one)."""
        if self._writer is None:
            return None
        mark: dict[str, object] = {}
        notice = self._call(lambda w: mark.update(w.mark(text, tag=tag, time=at)))
        return None if notice else mark

    def new_run(self) -> str | None:
        """The run ended: commit and close its recording; the next :meth:`open` starts the next.

        Also after a failure: a new run tries a new recording. Returns a notice if the close failed.
        """
        notice = self.close(final_state="live")
        self._state = "live"
        return notice

    def close(self, *, final_state: SinkState = "stopped") -> str | None:
        """Commit, close and forget the writer; a notice (and state ``failed``) if that failed."""
        writer, self._writer = self._writer, None
        if writer is None:
            return None
        try:
            writer.close()
        except (OSError, ValueError) as exc:
            self._finish(writer)
            self._state, self.error = "failed", f"{writer.path}: recording stopped: {exc}"
            return self.error
        self._finish(writer)
        self._state = final_state
        return None

    @property
    def committed(self) -> int:
        return self._writer.committed if self._writer is not None else self._closed_committed

    def size(self) -> int:
        return self._writer.bytes() if self._writer is not None else self._closed_bytes

    def free_bytes(self) -> int | None:
        if self.path is None:
            return None
        try:
            return shutil.disk_usage(self.path.parent).free
        except OSError:
            return None

    # --- internals ----------------------------------------------------------------------

    def _call(self, action: Callable[[RecordingWriter], object]) -> str | None:
        writer = self._writer
        if writer is None:
            return None
        try:
            action(writer)
        except (OSError, ValueError) as exc:  # a failed write, or a block the recording refuses
            return self._fail(writer, exc)
        return None

    def _fail(self, writer: RecordingWriter, exc: BaseException) -> str:
        self._writer = None
        self._state, self.error = "failed", f"{self.path}: recording stopped: {exc}"
        try:
            writer.close()  # after a failed write this only releases its threads
        except Exception:
            pass
        self._finish(writer)
        return self.error

    def _finish(self, writer: RecordingWriter) -> None:
        self._closed_committed = writer.committed
        try:
            self._closed_bytes = writer.bytes()
        except OSError:
            self._closed_bytes = 0
        self.finished.append((writer.path, writer.committed))
