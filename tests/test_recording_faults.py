"""A full disk or a failed write: RecordingWriteError, and the last commit stays intact."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import synth
from shotwatch.recording import RecordingReader, RecordingWriteError, RecordingWriter, repair
from shotwatch.schemas import Config, Cutout
from test_recording import (
    DET,
    POINTS,
    assert_same,
    new_writer,
    per_shot_lengths,
    source_info,
    versioned_blocks,
    write_plan,
)


class _DiskFull:
    """Every file write after the first ``allow`` raises ENOSPC (chunks and zarr metadata)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, allow: int) -> None:
        import zarr.storage._local as local

        from shotwatch.recording import _chunks

        self.left = allow
        real_put, real_open = local._put, open

        def put(*args: object, **kwargs: object) -> int:
            self._spend()
            return real_put(*args, **kwargs)  # type: ignore[arg-type]

        def opener(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
            if "w" in mode:
                self._spend()
            return real_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr(local, "_put", put)
        monkeypatch.setattr(_chunks, "open", opener, raising=False)

    def _spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("allow", [0, 1, 3, 8, 20])
def test_a_failed_write_keeps_the_last_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allow: int) -> None:
    blocks = versioned_blocks(6, [100, 5000, 30])
    path = tmp_path / "full.zarr"
    writer = new_writer(path, blocks, commit_seconds=3600.0)
    write_plan(writer, blocks[:1], commit_each=True)
    with monkeypatch.context() as m:
        _DiskFull(m, allow)
        writer.write(blocks[1])
        with pytest.raises(RecordingWriteError) as exc:
            writer.commit()
        assert isinstance(exc.value, OSError) and exc.value.errno == errno.ENOSPC
        assert str(path) in str(exc.value) and "100 shots" in str(exc.value)
        with pytest.raises(RecordingWriteError):
            writer.write(blocks[2])
        writer.close()  # after a failure: releases, does not raise
    reader = RecordingReader(path)
    assert reader.committed == 100 and not reader.closed
    assert_same(list(reader.blocks(frames=True)), blocks[:1])
    repair(path)
    assert set(per_shot_lengths(path).values()) == {100}
    again = RecordingWriter.append(path, config=Config(), source=source_info(), points=POINTS)
    write_plan(again, blocks, start=1)
    again.close()
    assert_same(list(RecordingReader(path).blocks(frames=True)), blocks)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_a_read_only_directory_fails_cleanly(tmp_path: Path) -> None:
    blocks = versioned_blocks(7, [50, 50])
    path = tmp_path / "ro.zarr"
    writer = new_writer(path, blocks, commit_seconds=3600.0)
    write_plan(writer, blocks[:1], commit_each=True)
    modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if p.is_dir()}
    for p in modes:
        p.chmod(0o555)
    try:
        writer.write(blocks[1])
        with pytest.raises(RecordingWriteError):
            writer.commit()
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert_same(list(RecordingReader(path).blocks()), blocks[:1])


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 6 MB tmpfs (root only, as on CI; skipped where mounting is not allowed)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_really_full_disk_keeps_the_last_commit_and_repairs(tiny_disk: Path) -> None:
    rng = np.random.default_rng(5)
    path = tiny_disk / "full.zarr"
    blocks = versioned_blocks(9, [200])
    writer = new_writer(path, blocks, commit_seconds=0.0)
    write_plan(writer, blocks)
    good, tag = [blocks[0]], int(blocks[0].tags[-1]) + 2
    with pytest.raises(RecordingWriteError) as exc:
        for _ in range(200):  # incompressible pixels: a few MB per commit
            b = synth.block(rng, first_tag=tag, n=400, rois={"a/v1": (8, 8), "b/v1": (4, 4)}, nan_fraction=0)
            b = b.with_(cutouts={k: Cutout(rng.integers(0, 65535, c.pixels.shape, np.uint16), c.valid, DET)
                                 for k, c in b.cutouts.items()})
            writer.write(b)
            good.append(b)
            tag = int(b.tags[-1]) + 2
    assert exc.value.errno == errno.ENOSPC
    writer.close()
    committed = RecordingReader(path).committed
    assert committed == sum(len(b) for b in good)  # every write committed at once; the failed one not
    assert_same(list(RecordingReader(path).blocks(frames=True)), good)
    repair(path)  # still full: trimming frees space before it writes
    assert set(per_shot_lengths(path).values()) == {committed}
    assert RecordingReader(path).closed
