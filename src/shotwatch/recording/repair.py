"""``repair``: make a crashed recording exactly its committed shots, and close it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ._check import Checked, check_recording, recover_length, shot_arrays
from ._durable import Durability
from ._format import (
    ATTR_KEY,
    RecordingWriteError,
    check_attrs,
    check_path,
    jsonable,
    open_root,
    remove_temp_files,
)
from ._layout import Layout, truncate
from ._lock import WriterLock
from ._store import SafeStore, refusing_unsafe
from ._versions import parse_analysis, without_tail

log = logging.getLogger("shotwatch.recording")

__all__ = ["repair"]


def repair(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Trim every array to ``committed``, delete stray temporary files, set ``closed``.

    Afterwards plain zarr and xarray readers see exactly the committed shots. Safe to run on
    a recording that is fine (it then changes nothing but reports so). Takes the writer lock
    first (FORMAT.md "One writer"): a recording some process is still writing is refused,
    untouched. Never grows an array. Analysis versions that started after ``committed`` (a
    crashed tail) are dropped, like ROI versions.

    If ``committed`` claims more shots than some per-shot array holds (the attribute was
    damaged: the commit protocol never writes it ahead of the data), repair recovers the
    longest prefix every array holds (less trailing shots whose tag was never written),
    sets ``committed`` to it and says so on stderr (a warning of the ``shotwatch.recording``
    logger); the result then has ``was_closed`` false (the recording was not cleanly closed,
    whatever it said) and ``committed_was`` the old value.

    Everything is checked before anything is changed: a recording refused (RecordingError)
    is left exactly as it was.

    Returns:
        ``{"path", "committed", "was_closed", "trimmed": {array: old length (-1 = removed)},
        "temp_files_removed": int, "committed_was": int, "short": {array: length},
        "analysis_dropped": [version, ...]}``.

    Raises:
        RecordingError: another process is writing it ("being written by pid N"); ``path``
            is not a recording this version can read, or its tags are not strictly
            increasing within the shots it would keep.
        RecordingReadError: the ``tag`` array cannot be decoded.
        RecordingWriteError: a write failed (the committed shots stay readable).
    """
    path = Path(path)
    check_path(path)
    with refusing_unsafe():  # read-only first: a refusal, or nothing to do, leaves every file alone
        root = open_root(path, mode="r")
        attrs = check_attrs(root, path)
        layout = Layout.discover(root, path)
        committed, short = recover_length(layout, int(attrs["committed"]), str(path))
        checked = check_recording(root, path, attrs, committed, layout=layout)
        analysis = parse_analysis(attrs, str(path), first_tag=int(checked.tags[0]) if committed else -1)
    if (attrs.get("closed") is True and not short and len(without_tail([v.model_dump() for v in analysis], committed))
            == len(analysis) and not remove_temp_files(path, dry=True) and _trimmed(checked, committed)):
        return {"path": str(path), "committed": committed, "was_closed": True, "trimmed": {},
                "temp_files_removed": 0, "committed_was": committed, "short": {}, "analysis_dropped": []}
    lock = WriterLock.acquire(path)
    try:
        with refusing_unsafe():
            return _repair(path)
    finally:
        lock.release()


def _trimmed(checked: Checked, committed: int) -> bool:
    """Every array is exactly as long as ``committed`` (frames: the committed frames) says."""
    layout = checked.layout
    return (all(int(a.shape[0]) == committed for a in layout.shot_arrays())
            and all(va.version.first_shot <= committed for va in layout.versions.values())
            and all(int(fa.shot.shape[0]) == checked.frame_counts[d] == int(fa.pixels.shape[0])
                    for d, fa in layout.frames.items()))


def _repair(path: Path) -> dict[str, Any]:
    root = open_root(path, mode="r+")  # after the lock: these attributes are final
    durability = Durability()
    if isinstance(root.store, SafeStore):
        root.store.tracker = durability  # repair ends like a clean close: everything it changed fsynced
    attrs = check_attrs(root, path)
    committed_was = int(attrs["committed"])
    was_closed = bool(attrs.get("closed", False))
    layout = Layout.discover(root, path)
    committed, short = recover_length(layout, committed_was, str(path))
    checked = check_recording(root, path, attrs, committed, layout=layout)
    first_tag = int(checked.tags[0]) if committed else -1
    analysis = [v.model_dump(mode="json") for v in parse_analysis(attrs, str(path), first_tag=first_tag)]
    kept = without_tail(analysis, committed)
    dropped = [int(v["version"]) for v in analysis[len(kept):]]
    if committed != committed_was:
        first = min(short, key=lambda k: (short[k], k != "tag", k))
        which = "every per-shot array holds" if len(short) == len(shot_arrays(layout, committed_was)) else \
            f"{len(short)} array(s) hold"
        unwritten = short[first] - committed if committed < min(short.values()) else 0
        log.warning("%s: committed said %d shots, but %s fewer (%s: %d)%s: recovered the %d shots every array "
                    "holds, committed is now %d", path, committed_was, which, first, short[first],
                    f", and the last {unwritten} tags were never written" if unwritten else "", committed, committed)
        was_closed = False
    try:
        removed = remove_temp_files(path)  # first: on a full disk this frees space for the rest
        if committed != committed_was:  # before trimming: a crash then leaves an ordinary crashed recording
            attrs = {**attrs, "committed": committed, "closed": False}
            root.attrs[ATTR_KEY] = jsonable(attrs)
        trimmed = truncate(root, committed, layout=layout)
        if not was_closed or dropped:
            root.attrs[ATTR_KEY] = jsonable({**attrs, "closed": True, "analysis": kept})
        durability.sync()
    except OSError as exc:
        raise RecordingWriteError(f"{path}: repair failed ({exc}); the committed shots are untouched, "
                                  "run it again once the cause is fixed", errno=exc.errno) from exc
    return {"path": str(path), "committed": committed, "was_closed": was_closed,
            "trimmed": trimmed, "temp_files_removed": removed, "committed_was": committed_was,
            "short": short, "analysis_dropped": dropped}
