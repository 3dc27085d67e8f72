"""One writer per recording (FORMAT.md "One writer"): an exclusive flock on ``<name>.zarr/.lock``.

The writer takes the lock before it changes anything (on create, in the hidden directory
before the rename; on append and repair, before reading the attributes it will act on) and
holds it until it is closed; the file holds its pid, for the one line a refused second
writer prints. The kernel drops the lock when the process dies, however it dies, so a lock
that is not held means nobody is writing: a recording that is not closed is then crashed.

Why flock and not ``fcntl`` record locks: a record lock is released when *any* descriptor of
the file is closed by the process, so a reader in the writer's own process (the recorder's
recomputation worker, ``writer_pid`` itself) would silently drop it. flock locks belong to
the open file description.

:func:`writer_pid` probes with a shared lock for an instant; a writer starting at that very
instant retries for up to :data:`_RETRY_S` before it concludes someone else holds the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from pathlib import Path

from ..schemas.errors import RecordingError
from ._format import RecordingWriteError

__all__ = ["LOCK_NAME", "WriterLock", "refuse_if_written", "writer_pid"]

LOCK_NAME = ".lock"
_RETRY_S = 1.0
_STEP_S = 0.02


class WriterLock:
    """The held lock of one writer; :meth:`release` (or process exit) lets it go."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, directory: Path, *, recording: Path | None = None) -> WriterLock:
        """Take the lock of the recording in ``directory`` (named ``recording`` in messages).

        Raises:
            RecordingError: another process holds it ("being written by pid N"), or
                ``.lock`` is not a regular file.
            RecordingWriteError: the lock file cannot be created (a read-only directory).
        """
        name = recording or directory
        lock = directory / LOCK_NAME
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK, errno.EISDIR):
                found = "a directory" if exc.errno == errno.EISDIR else "a symbolic link"
                raise RecordingError(f"{name}: {LOCK_NAME}: expected a regular file, found {found}") from None
            raise RecordingWriteError(f"{name}: cannot lock the recording ({exc.strerror or exc})",
                                      errno=exc.errno) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise RecordingError(f"{name}: {LOCK_NAME}: expected a regular file, found something else")
            deadline = time.monotonic() + _RETRY_S
            while not _try_lock(fd, fcntl.LOCK_EX):
                if time.monotonic() >= deadline:
                    raise _being_written(name, _read_pid(fd))
                time.sleep(_STEP_S)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, lock)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let the lock go (idempotent). The file stays: removing it would race the next writer."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def writer_pid(path: str | os.PathLike[str]) -> int | None:
    """The pid of the process writing the recording at ``path``, or None if none is.

    A writer that holds the lock but has not said its pid yet (an instant after it took
    the lock) is waited for briefly; -1 if it still does not say.
    """
    try:
        fd = os.open(Path(path) / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file (never written by this version), or not one we would use
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        if _try_lock(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        deadline = time.monotonic() + _RETRY_S / 2
        pid = _read_pid(fd)
        while pid < 0 and time.monotonic() < deadline:
            time.sleep(_STEP_S)
            pid = _read_pid(fd)
        return pid
    finally:
        os.close(fd)


def refuse_if_written(path: str | os.PathLike[str]) -> None:
    """RecordingError ("being written by pid N", exit 2) if a process is writing ``path``.

    For a caller about to append to ``path`` that wants to refuse before it does anything
    else (the recorder, before it opens its source); the writer itself checks again when it
    takes the lock.
    """
    pid = writer_pid(path)
    if pid is not None:
        raise _being_written(Path(path), pid)


def _being_written(path: Path, pid: int) -> RecordingError:
    who = f"pid {pid}" if pid > 0 else "a process whose pid the lock file does not say"
    return RecordingError(f"{path}: expected a recording no other process is writing, found it being written by {who}")


def _try_lock(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_pid(fd: int) -> int:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isascii() and text.isdigit() else -1
