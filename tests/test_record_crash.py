"""kill -9 during `shotwatch record`, again and again: nothing committed is ever lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_record_reduce import fast_config, run_cli


def committed_on_disk(rec: Path) -> int:
    """`committed` as a reader sees it now (the root metadata is replaced atomically)."""
    try:
        meta = json.loads((rec / "zarr.json").read_text())
    except (OSError, ValueError):
        return 0
    return int(meta.get("attributes", {}).get("shotwatch", {}).get("committed", 0))


def test_kill_9_at_random_moments(tmp_path: Path) -> None:
    cfg = fast_config(tmp_path, frames_every=0)
    rec = tmp_path / "crash.zarr"
    rng = random.Random(20191105)
    total_before = 0
    for attempt in range(5):
        args = [sys.executable, "-m", "shotwatch", "record", "-c", str(cfg), "-o", str(rec), "--seconds", "60"]
        if attempt:
            args.append("--append")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen = total_before
        start = time.monotonic()
        while not (rec / "zarr.json").exists() and time.monotonic() - start < 30:
            time.sleep(0.02)
        # The first kill may come before any commit (a crash while starting); the others come
        # at a random moment after this session's first commit, however slow the machine is.
        while attempt and committed_on_disk(rec) <= total_before and time.monotonic() - start < 60:
            time.sleep(0.02)
        deadline = time.monotonic() + rng.uniform(0.2, 4.5)
        while time.monotonic() < deadline:
            seen = max(seen, committed_on_disk(rec))
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        _, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err
        after = committed_on_disk(rec)
        assert after >= seen, f"attempt {attempt}: committed went from {seen} to {after}"
        info = run_cli("info", str(rec), "--json")
        assert info.returncode == 0, info.stderr
        meta = json.loads(info.stdout)
        assert meta["committed"] == after and meta["closed"] is False
        reduced = run_cli("reduce", str(rec), "--json")
        assert reduced.returncode == 0, reduced.stderr
        assert json.loads(reduced.stdout)["shots"]["total"] == after
        total_before = after
    assert total_before > 0
    repaired = run_cli("repair", str(rec))
    assert repaired.returncode == 0, repaired.stderr
    info = json.loads(run_cli("info", str(rec), "--json").stdout)
    assert info["closed"] is True and info["committed"] == total_before
