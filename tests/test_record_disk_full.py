"""A full disk stops recording cleanly: last commit intact, a notice, live data keep flowing."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shotwatch.link.protocols import NullListener
from shotwatch.recorder.acquire import Recorder
from shotwatch.schemas import parse_config
from test_record_reduce import fast_config_text, run_cli


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 48 MB tmpfs (needs root, as on CI and the dev machines; skipped otherwise)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


class Watch(NullListener):
    """Listener recording what consoles would see."""

    wants_blocks = True

    def __init__(self) -> None:
        self.blocks_after_failure = 0
        self.failed = False
        self.notices: list[str] = []
        self.states: list[str] = []

    def on_block(self, msg: Any) -> None:
        if self.failed:
            self.blocks_after_failure += 1

    def on_notice(self, msg: Any) -> None:
        self.notices.append(msg.text)

    def on_status(self, msg: Any) -> None:
        self.states.append(msg.status.state)
        self.failed = self.failed or msg.status.state == "failed"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_full_stops_recording_not_live(small_disk: Path) -> None:
    config = parse_config(tomllib.loads(fast_config_text(frames_every=0)), origin="test")
    rec = small_disk / "full.zarr"
    recorder = Recorder(config, out=str(rec), commit_seconds=0.05)
    watch = Watch()
    recorder.add_listener(watch)
    recorder.run(shots=200_000)
    status = recorder.status()
    assert "failed" in watch.states, watch.notices
    assert any("recording stopped" in n for n in watch.notices), watch.notices
    assert watch.blocks_after_failure > 0, "live data must keep flowing after the disk filled"
    assert status.shots == 200_000
    assert 0 < status.committed < status.shots
    info = run_cli("info", str(rec), "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["committed"] == status.committed
    reduced = run_cli("reduce", str(rec), "--json")
    assert reduced.returncode == 0, reduced.stderr
    assert json.loads(reduced.stdout)["shots"]["total"] == status.committed
