"""``repair``: make a crashed recording exactly its committed shots, and close it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._format import ATTR_KEY, RecordingWriteError, check_attrs, jsonable, open_root, remove_temp_files
from ._layout import truncate

__all__ = ["repair"]


def repair(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Trim every array to ``committed``, delete stray temporary files, set ``closed``.

    Afterwards plain zarr and xarray readers see exactly the committed shots. Safe to run on
    a recording that is fine (it then changes nothing but reports so); never run it while a
    writer is still recording to ``path``.

    Returns:
        ``{"path", "committed", "was_closed", "trimmed": {array: old length (-1 = removed)},
        "temp_files_removed": int}``.

    Raises:
        RecordingError: ``path`` is not a recording this version can read.
        RecordingWriteError: a write failed (the committed shots stay readable).
    """
    path = Path(path)
    root = open_root(path, mode="r+")
    attrs = check_attrs(root, path)
    committed = int(attrs["committed"])
    was_closed = bool(attrs.get("closed", False))
    try:
        removed = remove_temp_files(path)  # first: on a full disk this frees space for the rest
        trimmed = truncate(root, committed)
        if not was_closed:
            root.attrs[ATTR_KEY] = jsonable({**attrs, "closed": True})
    except OSError as exc:
        raise RecordingWriteError(f"{path}: repair failed ({exc}); the committed shots are untouched, "
                                  "run it again once the cause is fixed", errno=exc.errno) from exc
    return {"path": str(path), "committed": committed, "was_closed": was_closed,
            "trimmed": trimmed, "temp_files_removed": removed}
