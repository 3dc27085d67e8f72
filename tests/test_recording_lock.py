"""One writer per recording (FORMAT.md "One writer"; hardening issue item 4).

Reported: ``record --append`` on a recording another recorder was writing ran, both printed
success, and 610 shots were silently lost; ``repair`` on a live recording deleted the
writer's in-flight chunk and made it fail; ``info`` invited it ("still recording, or crashed:
shotwatch repair trims it"). Now the writer holds an exclusive flock on ``<name>.zarr/.lock``
while it is open, and a second writer or a repair is refused with one line, touching nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shotwatch.cli import main
from shotwatch.recording import RecordingReader, RecordingWriter, refuse_if_written, repair, writer_pid
from shotwatch.schemas import Config, RecordingError
from test_record_reduce import fast_config
from test_recording import POINTS, crash, new_writer, source_info, versioned_blocks, write_plan
from test_recording_hostile import snapshot

BEING_WRITTEN = "expected a recording no other process is writing, found it being written by pid"


def _committed(rec: Path) -> int:
    try:
        return int(json.loads((rec / "zarr.json").read_text())["attributes"]["shotwatch"]["committed"])
    except (OSError, ValueError, KeyError):
        return 0


def _wait(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_record_append_on_one_recording_the_second_is_refused_and_no_shot_is_lost(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = fast_config(tmp_path, rate=60.0, frames_every=0)
    rec = tmp_path / "rec.zarr"
    first = subprocess.run([sys.executable, "-m", "shotwatch", "record", "-c", str(cfg), "-o", str(rec),
                            "--shots", "30"], capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    a = subprocess.Popen([sys.executable, "-m", "shotwatch", "record", "-c", str(cfg), "-o", str(rec), "--append",
                          "--seconds", "60", "--summary-json", str(tmp_path / "a.json")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: writer_pid(rec) == a.pid and _committed(rec) > 30)
        b = subprocess.run([sys.executable, "-m", "shotwatch", "record", "-c", str(cfg), "-o", str(rec), "--append",
                            "--shots", "10", "--summary-json", str(tmp_path / "b.json")],
                           capture_output=True, text=True, timeout=120, check=False)
        assert (b.returncode, b.stdout) == (2, ""), b.stderr
        assert b.stderr == f"shotwatch: error: {rec}: {BEING_WRITTEN} {a.pid}\n"
        assert not (tmp_path / "b.json").exists()
        # repair and info while A writes (in this process: the lock is per open file, not per process)
        assert main(["repair", str(rec)]) == 2
        assert main(["info", str(rec)]) == 0
        out, err = capsys.readouterr()
        assert err == f"shotwatch: error: {rec}: {BEING_WRITTEN} {a.pid}\n"
        assert f"still recording, pid {a.pid}" in out and "crashed" not in out
        time.sleep(0.5)  # A keeps committing after all that
    finally:
        a.send_signal(signal.SIGINT)
        out, err = a.communicate(timeout=60)
    assert a.returncode == 0, err
    recorded = json.loads((tmp_path / "a.json").read_text())["shots"]["total"]
    reader = RecordingReader(rec)
    assert reader.closed and reader.committed == 30 + recorded, (reader.committed, recorded)
    assert writer_pid(rec) is None


def test_repair_of_a_recording_being_written_is_refused_and_the_writer_goes_on(tmp_path: Path) -> None:
    blocks = versioned_blocks(3, [50, 60, 70, 80])
    path = tmp_path / "live.zarr"
    writer = new_writer(path, blocks, commit_seconds=3600.0)
    write_plan(writer, blocks[:2], commit_each=True)
    write_plan(writer, blocks[:3], start=2)  # buffered: the arrays are longer than committed (capacity)
    before = snapshot(path)
    with pytest.raises(RecordingError, match=f"{BEING_WRITTEN} {os.getpid()}$"):
        repair(path)
    with pytest.raises(RecordingError, match=BEING_WRITTEN):
        RecordingWriter.append(path, config=Config(), source=source_info(), points=POINTS)
    with pytest.raises(RecordingError, match=BEING_WRITTEN):
        refuse_if_written(path)
    assert snapshot(path) == before  # nothing trimmed under the writer's feet
    write_plan(writer, blocks, start=3)
    writer.close()
    assert RecordingReader(path).committed == sum(len(b) for b in blocks)
    refuse_if_written(path)  # closed: nobody writes it
    assert repair(path)["was_closed"]


def test_info_says_still_recording_while_the_lock_is_held_and_crashed_only_when_it_is_not(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = versioned_blocks(4, [40, 30])
    path = tmp_path / "rec.zarr"
    writer = new_writer(path, blocks, commit_seconds=3600.0)
    write_plan(writer, blocks, commit_each=True)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"(format 1, still recording, pid {os.getpid()})" in out and "repair" not in out
    crash(writer)  # the process died: the kernel dropped the lock
    assert writer_pid(path) is None
    assert main(["info", str(path)]) == 0
    assert "(format 1, crashed: `shotwatch repair` trims it)" in capsys.readouterr().out
    assert main(["repair", str(path)]) == 0
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    assert "(format 1, closed)" in capsys.readouterr().out


def test_create_holds_the_lock_from_before_the_rename(tmp_path: Path) -> None:
    blocks = versioned_blocks(5, [20])
    path = tmp_path / "new.zarr"
    with new_writer(path, blocks, commit_seconds=0.0) as writer:
        assert writer_pid(path) == os.getpid()  # the moment the recording exists
        assert sorted(p.name for p in tmp_path.iterdir()) == ["new.zarr"]
        write_plan(writer, blocks)
    assert writer_pid(path) is None and (path / ".lock").read_text() == f"{os.getpid()}\n"


@pytest.mark.parametrize("kind", ["symlink", "directory"])
def test_a_lock_file_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    blocks = versioned_blocks(6, [20])
    path = tmp_path / "rec.zarr"
    with new_writer(path, blocks, commit_seconds=0.0) as writer:
        write_plan(writer, blocks)
    (path / ".lock").unlink()
    if kind == "symlink":
        (path / ".lock").symlink_to(tmp_path / "elsewhere")
    else:
        (path / ".lock").mkdir()
    assert writer_pid(path) is None
    with pytest.raises(RecordingError, match=r"\.lock: expected a regular file"):
        RecordingWriter.append(path, config=Config(), source=source_info(), points=POINTS)
    assert not (tmp_path / "elsewhere").exists()
