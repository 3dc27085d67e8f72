"""``record.fsync`` (FORMAT.md commit protocol): what is fsynced, and in which order.

Every rename and fsync the writer does is logged (``os.replace`` and ``os.fsync`` are
wrapped; an fd is named by ``/proc/self/fd``). With ``record.fsync`` each commit must fsync
every new chunk file before its rename and every metadata file written, then the
directories holding them, all before the root ``zarr.json`` is replaced, and that file and
its directory after. Without it, commits fsync nothing, and a clean close makes up for all
of it in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shotwatch.recording import RecordingReader, RecordingWriter
from shotwatch.schemas import Config
from test_recording import POINTS, assert_same, plan_table, source_info, versioned_blocks, write_plan

Event = tuple[str, str, str]  # ("fsync", path, "") or ("replace", source, target)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Event]]:
    log: list[Event] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), ""))
        real_fsync(fd)

    def replace(src: object, dst: object, **kw: object) -> None:
        real_replace(src, dst, **kw)  # type: ignore[arg-type]
        log.append(("replace", str(src), str(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    yield log


def writer(path: Path, *, fsync: bool, blocks: list) -> RecordingWriter:  # type: ignore[type-arg]
    config = Config.model_validate({"record": {"fsync": fsync}})
    return RecordingWriter.create(path, config=config, source=source_info(), points=POINTS,
                                  rois=plan_table(0, {0: 0}, {0: int(blocks[0].tags[0])}), commit_seconds=3600.0)


def check_protocol(log: list[Event], root: Path, start: int, end: int, *, files: set[str] | None = None) -> None:
    """Everything renamed in ``log[start:end]`` before the root zarr.json (or ``files``, renamed
    earlier) is fsynced, with its directory, before that; the root file and directory after."""
    root_json = str(root / "zarr.json")
    attrs = [i for i in range(start, end) if log[i][0] == "replace" and log[i][2] == root_json]
    assert attrs, "the root attributes were not written"
    at = attrs[-1]
    fsynced = [(i, e[1]) for i, e in enumerate(log) if e[0] == "fsync"]
    if files is None:
        renames = [(i, e[1], e[2]) for i, e in enumerate(log[:at]) if i >= start and e[0] == "replace"]
    else:
        renames = [(start, "", f) for f in files]
    for i, src, dst in renames:
        # a chunk is fsynced as its temporary before the rename, metadata after it
        assert any(j < i and p == src for j, p in fsynced) or any(i <= j < at and p == dst for j, p in fsynced), \
            f"{dst} not fsynced before the root attributes"
        assert any(i <= j < at and p == str(Path(dst).parent) for j, p in fsynced), \
            f"directory of {dst} not fsynced after its rename and before the root attributes"
    after = [p for j, p in fsynced if at < j < end]
    assert root_json in after and str(root) in after, after


def test_with_fsync_every_commit_is_durable_before_its_root_attributes(tmp_path: Path,
                                                                       events: list[Event]) -> None:
    blocks = versioned_blocks(12, [100, 5000, 60])
    path = tmp_path / "sync.zarr"
    w = writer(path, fsync=True, blocks=blocks)
    for i in range(len(blocks)):
        start = len(events)
        write_plan(w, blocks[: i + 1], start=i)
        w.commit()
        check_protocol(events, path, start, len(events))
        chunks = {e[2] for e in events[start:] if e[0] == "replace" and Path(e[2]).name.startswith("c.")}
        assert chunks, "no chunk written"
    w.close()
    assert_same(list(RecordingReader(path).blocks(frames=True)), blocks)


def test_without_fsync_commits_sync_nothing_and_close_syncs_everything(tmp_path: Path,
                                                                      events: list[Event]) -> None:
    blocks = versioned_blocks(13, [100, 5000, 60])
    path = tmp_path / "nosync.zarr"
    w = writer(path, fsync=False, blocks=blocks)
    start = len(events)
    write_plan(w, blocks, commit_each=True)
    assert not [e for e in events[start:] if e[0] == "fsync"]
    written = {e[2] for e in events[start:] if e[0] == "replace" and Path(e[2]).exists()}
    closing = len(events)
    w.close()
    check_protocol(events, path, closing, len(events), files=written)
    assert RecordingReader(path).closed


def test_record_fsync_is_a_documented_config_key() -> None:
    field = Config.model_fields["record"].annotation.model_fields["fsync"]  # type: ignore[union-attr]
    assert field.default is False and "fsync" in (field.description or "")
