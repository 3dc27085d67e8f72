"""Reading files of a recording that may come from anywhere: regular files only, sizes capped.

A recording, a dark file or a configuration from elsewhere is untrusted input (DESIGN.md):
a chunk that is a symbolic link to ``/dev/zero`` must not be read without bound, a FIFO must
not hang the reader, and a file larger than what it can hold must not be read at all. Every
file shotwatch reads from a recording goes through :func:`read_regular`: ``open`` with
``O_NOFOLLOW | O_NONBLOCK`` (a symlink fails with ``ELOOP``, a FIFO opens without waiting for
a writer), ``fstat`` must say a regular file, and its size must be within a cap given by the
caller before a byte is allocated.

:class:`SafeStore` is zarr's LocalStore with every read going through it, so the metadata
zarr reads (``zarr.json``) and any chunk zarr itself decodes (the writer's trims) get the same
treatment. Chunk files of arrays the caller registered (:meth:`SafeStore.register`) are
capped at what one chunk of that array can take encoded; anything else at
:data:`META_MAX_BYTES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import stat
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, default_buffer_prototype
from zarr.storage import LocalStore

from ..schemas.errors import RecordingError, UsageError
from ._durable import Durability

if TYPE_CHECKING:
    from zarr.core.buffer import BufferPrototype

__all__ = ["META_MAX_BYTES", "SafeStore", "UnsafeFile", "read_regular", "reading_metadata", "refusing_unsafe"]

# The root zarr.json grows with marks and analysis versions (a few kB each); 32 MiB is
# thousands of them and still parses in well under a second.
META_MAX_BYTES = 32 << 20
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class UnsafeFile(OSError):
    """A file of a recording that is not read: not a regular file, or larger than it can be.

    ``str()`` is one line naming the file and what it is.
    """

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        super().__init__(errno.EINVAL, what)
        self.path, self.what = str(path), what

    def __str__(self) -> str:
        return f"{self.path}: expected a regular file, found {self.what}"


@contextlib.contextmanager
def refusing_unsafe() -> Iterator[None]:
    """Turn an UnsafeFile met while zarr reads metadata into the one-line RecordingError."""
    try:
        yield
    except UnsafeFile as exc:
        raise RecordingError(str(exc)) from None


@contextlib.contextmanager
def reading_metadata(group: zarr.Group) -> Iterator[None]:
    """zarr's errors parsing a crafted ``zarr.json`` below ``group`` as one line (RecordingError).

    zarr raises TypeError, ValueError or KeyError for metadata it cannot make sense of (a
    fill value that is not of the data type, a missing field, bad JSON); our own refusals
    (UsageError) pass through unchanged.
    """
    try:
        yield
    except UsageError:
        raise
    except UnsafeFile as exc:
        raise RecordingError(str(exc)) from None
    except (TypeError, ValueError, KeyError) as exc:
        store = group.store
        where = Path(store.root, group.path) if isinstance(store, LocalStore) else group.path
        why = " ".join(str(exc).split())[:160]
        raise RecordingError(f"{where}: expected valid zarr v3 metadata below it, found {type(exc).__name__}: "
                             f"{why}") from None


def read_regular(path: str | os.PathLike[str], limit: int) -> memoryview:
    """The whole content of the regular file ``path``, at most ``limit`` bytes.

    Read into an uninitialised buffer (no zero fill: for the float32 chunks of a reduction
    that was 7 % of the time), one ``readinto`` per file.

    Raises:
        FileNotFoundError, IsADirectoryError, NotADirectoryError: as ``open`` would (zarr
            reads these as "no such key").
        UnsafeFile: a symbolic link, a FIFO, a device or a socket, or a file of more than
            ``limit`` bytes (refused before anything is allocated).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):
            raise UnsafeFile(path, "a symbolic link") from None
        raise
    with io.FileIO(fd, "rb", closefd=True) as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(path, next((what for test, what in _KINDS if test(st.st_mode)), "a special file"))
        if st.st_size > limit:
            raise UnsafeFile(path, f"{st.st_size} bytes, more than the {limit} it can hold")
        view = np.empty(st.st_size, dtype=np.uint8).data
        got = 0
        while got < len(view):  # a file shrinking under us ends early; never read past its size
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
        return view[:got]


class SafeStore(LocalStore):
    """zarr's LocalStore whose every read is a :func:`read_regular` with a size cap."""

    def __init__(self, root: Path | str, *, read_only: bool = False) -> None:
        super().__init__(root, read_only=read_only)
        self._limits: dict[str, int] = {}
        self.tracker: Durability | None = None
        """Where writes and deletes are noted for a later fsync (the writer sets it)."""

    def with_read_only(self, read_only: bool = False) -> SafeStore:
        store = SafeStore(self.root, read_only=read_only)
        store._limits, store.tracker = self._limits, self.tracker
        return store

    def register(self, array_path: str, chunk_limit: int) -> None:
        """Cap the chunk files of the array at ``array_path`` at ``chunk_limit`` bytes."""
        self._limits[array_path.strip("/")] = chunk_limit

    def limit(self, key: str) -> int:
        """The most bytes the file at ``key`` may have."""
        if key.rsplit("/", 1)[-1] == "zarr.json":
            return META_MAX_BYTES
        parent = key
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in self._limits:
                return self._limits[parent]
        return META_MAX_BYTES

    def _read(self, key: str, prototype: BufferPrototype | None, byte_range: ByteRequest | None) -> Buffer | None:
        prototype = prototype or default_buffer_prototype()
        try:
            data = read_regular(self.root / key, self.limit(key))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return prototype.buffer.from_bytes(bytes(_slice(data, byte_range)))

    def get_sync(self, key: str, *, prototype: BufferPrototype | None = None,
                 byte_range: ByteRequest | None = None) -> Buffer | None:
        self._ensure_open_sync()
        return self._read(key, prototype, byte_range)

    async def get(self, key: str, prototype: BufferPrototype | None = None,
                  byte_range: ByteRequest | None = None) -> Buffer | None:
        if not self._is_open:
            await self._open()
        if key.endswith("zarr.json"):  # small: the hop to a worker thread would cost more
            return self._read(key, prototype, byte_range)
        return await asyncio.to_thread(self._read, key, prototype, byte_range)

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
        return [self._read(key, prototype, byte_range) for key, byte_range in key_ranges]

    # --- writes: noted for Durability ----------------------------------------------------

    async def _set(self, key: str, value: Buffer, exclusive: bool = False) -> None:
        await super()._set(key, value, exclusive=exclusive)
        if self.tracker is not None:
            self.tracker.wrote(self.root / key)

    def set_sync(self, key: str, value: Buffer) -> None:
        super().set_sync(key, value)
        if self.tracker is not None:
            self.tracker.wrote(self.root / key)

    async def delete(self, key: str) -> None:
        await super().delete(key)
        if self.tracker is not None:
            self.tracker.removed(self.root / key)

    def delete_sync(self, key: str) -> None:
        super().delete_sync(key)
        if self.tracker is not None:
            self.tracker.removed(self.root / key)

    async def delete_dir(self, prefix: str) -> None:
        await super().delete_dir(prefix)
        if self.tracker is not None:
            self.tracker.removed(self.root / prefix)

    async def exists(self, key: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self.root / key).st_mode)
        except OSError:
            return False

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        # Without hidden entries: the writer's lock file and temporary dark versions are no nodes.
        async for name in super().list_dir(prefix):
            if not name.startswith("."):
                yield name


def _slice(data: memoryview, byte_range: ByteRequest | None) -> memoryview:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start:byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset:]
    if isinstance(byte_range, SuffixByteRequest):
        return data[max(0, len(data) - byte_range.suffix):]
    raise TypeError(f"Unexpected byte_range, got {byte_range}.")
