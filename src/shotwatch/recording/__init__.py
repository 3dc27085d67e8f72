"""FORMAT.md v1 recordings: writer, reader and repair. The only package that imports zarr."""

from __future__ import annotations

from ._format import RecordingReadError, RecordingWriteError, decode_name, encode_name
from .reader import RecordingReader
from .repair import repair
from .writer import RecordingWriter

__all__ = ["RecordingReadError", "RecordingReader", "RecordingWriteError", "RecordingWriter", "decode_name", "encode_name", "repair"]
