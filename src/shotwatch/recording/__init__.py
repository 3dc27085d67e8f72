"""FORMAT.md v1 recordings: writer, reader and repair. The only package that imports zarr."""

from __future__ import annotations

from ._format import RecordingReadError, RecordingWriteError, decode_name, encode_name
from ._lock import refuse_if_written, writer_pid
from .reader import RecordingReader
from .repair import repair
from .writer import RecordingWriter

__all__ = ["RecordingReadError", "RecordingReader", "RecordingWriteError", "RecordingWriter", "decode_name",
           "encode_name", "refuse_if_written", "repair", "writer_pid"]
