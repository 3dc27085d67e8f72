"""The recorder's side of the recording: paths, new runs, append, and failed writes.

A failed write (full disk, I/O error) stops recording cleanly: the last commit stays
intact, the state becomes ``failed`` and live data keep flowing.
"""

from __future__ import annotations

import shutil
import string
from pathlib import Path

from ..recording import RecordingReader, RecordingWriteError, RecordingWriter, refuse_if_written
from ..schemas import Config, RecordingError, RoiTable, ShotBlock
from ..schemas.source_info import SourceInfo
from .paths import fill_template

__all__ = ["RecordingSink"]


class RecordingSink:
    """Owns the current RecordingWriter; never raises for a write failure after start."""

    def __init__(self, config: Config, *, template: str, append: bool, commit_seconds: float) -> None:
        self.config = config
        self.template = template
        self.append = append
        self.commit_seconds = commit_seconds
        self.writer: RecordingWriter | None = None
        self.path: Path | None = None
        self.state = "live"
        self.error: str | None = None
        self._runs = 0
        self.first_path: Path | None = None
        self._closed_committed = 0  # what the last closed writer had committed
        self.finished: list[tuple[Path, int]] = []  # every recording closed so far, with its shots
        self._closed_bytes = 0

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

    def open(self, *, info: SourceInfo, rois: RoiTable, points: list[str]) -> Path:
        if self._runs == 0 and self.first_path is not None:
            path = self.first_path
        else:
            path = fill_template(self.template, run=info.run, first=self._runs == 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.append and path.exists():
            self.writer = RecordingWriter.append(path, config=self.config, source=info, points=points)
            self.writer.set_rois(rois)
        else:
            self.writer = RecordingWriter.create(path, config=self.config, source=info, rois=rois,
                                                 points=points, commit_seconds=self.commit_seconds)
        self._runs += 1
        self.path, self.state, self.error = path, "recording", None
        return path

    def _fail(self, exc: BaseException) -> str:
        self.state, self.error = "failed", f"{self.path}: recording stopped: {exc}"
        writer, self.writer = self.writer, None
        if writer is not None:
            self._closed_committed = writer.committed
            self.finished.append((writer.path, writer.committed))
            try:
                writer.close()
            except Exception:
                pass
        return self.error

    def write(self, block: ShotBlock) -> str | None:
        """Write a block; returns a notice if recording just failed."""
        if self.writer is None:
            return None
        try:
            self.writer.write(block)
        except (RecordingWriteError, OSError) as exc:
            return self._fail(exc)
        return None

    def call(self, method: str, *args: object, **kwargs: object) -> str | None:
        """Call a writer method (set_rois, commit, ...), failing cleanly like ``write``."""
        if self.writer is None:
            return None
        try:
            getattr(self.writer, method)(*args, **kwargs)
        except (RecordingWriteError, OSError) as exc:
            return self._fail(exc)
        return None

    def mark(self, text: str, *, tag: int | None, at: float) -> dict[str, object] | None:
        if self.writer is None:
            return None
        return self.writer.mark(text, tag=tag, time=at)

    def close(self, *, final_state: str = "stopped") -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()
            self._closed_committed, self._closed_bytes = writer.committed, writer.bytes()
            self.finished.append((writer.path, writer.committed))
            self.state = final_state

    @property
    def committed(self) -> int:
        return self.writer.committed if self.writer is not None else self._closed_committed

    def size(self) -> int:
        return self.writer.bytes() if self.writer is not None else self._closed_bytes

    def free_bytes(self) -> int | None:
        if self.path is None:
            return None
        try:
            return shutil.disk_usage(self.path.parent).free
        except OSError:
            return None
