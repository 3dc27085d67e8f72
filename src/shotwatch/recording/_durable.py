"""Making what a commit wrote durable: fsync of files, then of their directories.

FORMAT.md's commit protocol promises a crash of the process for free (every file is replaced
atomically, ``committed`` is written last); surviving a power cut needs the data on disk
before the root attributes say it is there. With ``record.fsync`` (and always at a clean
close) the writer fsyncs the chunk files and metadata written since the last sync and the
directories holding them (a rename is durable only once its directory is) before it writes
the root attributes, then the root ``zarr.json`` and its directory.

The tracker only collects paths (cheap); :meth:`Durability.sync` does the work.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["Durability", "fsync_dir", "fsync_file"]


class Durability:
    """Paths written or removed since the last :meth:`sync` (thread-safe)."""

    def __init__(self) -> None:
        self._files: set[Path] = set()
        self._dirs: set[Path] = set()
        self._lock = threading.Lock()

    def wrote(self, path: Path, *, synced: bool = False) -> None:
        """``path`` was written (``synced``: its content is already fsynced; only its directory is due)."""
        with self._lock:
            if not synced:
                self._files.add(path)
            self._dirs.add(path.parent)

    def removed(self, path: Path) -> None:
        """``path`` (a file or a directory tree) was removed: its directory is due."""
        with self._lock:
            self._files.discard(path)
            self._dirs.add(path.parent)

    def pending(self) -> int:
        """Paths waiting for :meth:`sync`."""
        return len(self._files) + len(self._dirs)

    def sync(self, run: Callable[[Iterable[Callable[[], None]]], None] | None = None) -> None:
        """fsync every file written, then every directory touched; forget them.

        Args:
            run: runs the file fsyncs (a thread pool's map); default: one after another.
        """
        with self._lock:
            files, dirs = sorted(self._files), sorted(self._dirs)
            self._files, self._dirs = set(), set()
        jobs: list[Callable[[], None]] = [functools.partial(fsync_file, p) for p in files]
        if run is None:
            for job in jobs:
                job()
        else:
            run(jobs)
        for d in dirs:
            fsync_dir(d)


def fsync_file(path: Path) -> None:
    """fsync one file; a file replaced or removed since it was written needs nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync a directory (its entries: renames, new and removed files); a vanished one needs nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
