"""`shotwatch record` and what happens around it: a dropped SSH session, a second Ctrl-C, a
log file someone planted a link in place of (issue 7, item 7). Real subprocesses, real
signals, a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from attack import committed
from test_record_reduce import run_cli

pytestmark = pytest.mark.timeout(120)


def _demo(tmp_path: Path) -> Path:
    from shotwatch.schemas.loading import demo_text

    cfg = tmp_path / "demo.toml"
    cfg.write_text(demo_text())  # the simulator at its 30 Hz
    return cfg


def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "xdg").mkdir(exist_ok=True)
    return {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "xdg")}


def _until(pred: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout:g} s, expected {what}")
        time.sleep(0.05)


def _closed(rec: Path) -> bool:
    try:
        meta = json.loads((rec / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("attributes", {}).get("shotwatch", {}).get("closed"))


def test_sighup_closes_the_recording_cleanly(tmp_path: Path) -> None:
    """An SSH session dropped without tmux: the terminal hangs up, the recording is closed."""
    rec = tmp_path / "rec.zarr"
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "shotwatch", "record", "-c", str(_demo(tmp_path)), "-o", str(rec)],
                            env=_env(tmp_path), pass_fds=(slave,), preexec_fn=lambda: os.login_tty(slave))
    os.close(slave)
    screen: list[bytes] = []

    def drain() -> None:  # what a terminal does: read, so the progress line never blocks
        try:
            while chunk := os.read(master, 4096):
                screen.append(chunk)
        except OSError:
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        _until(lambda: committed(rec) > 0, 60, "a first commit")
        assert proc.poll() is None
        os.close(master)  # the SSH connection is gone: the kernel hangs the terminal up
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, f"exit code {rc}"
    info = json.loads(run_cli("info", str(rec), "--json").stdout)
    assert info["closed"] is True and info["committed"] > 0
    log = (tmp_path / "rec.log").read_text()
    assert "SIGHUP: stopping cleanly" in log
    assert b"shots" in b"".join(screen)  # it was on that terminal, progress line and all


def test_second_ctrl_c_exits_at_once(tmp_path: Path) -> None:
    """The first Ctrl-C asks for a clean stop; when that hangs, the second one exits."""
    rec = tmp_path / "rec.zarr"
    fifo = tmp_path / "summary.json"
    os.mkfifo(fifo)  # nobody reads it: writing the summary after the stop blocks, as a hung disk would
    proc = subprocess.Popen([sys.executable, "-m", "shotwatch", "record", "-c", str(_demo(tmp_path)), "-o", str(rec),
                             "--summary-json", str(fifo)],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _until(lambda: committed(rec) > 0, 60, "a first commit")
        proc.send_signal(signal.SIGINT)
        _until(lambda: _closed(rec), 30, "the recording closed by the first Ctrl-C")
        time.sleep(0.3)
        assert proc.poll() is None  # stuck writing the summary
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    last = err.strip().splitlines()[-1]
    assert last == f"shotwatch: interrupted again: exiting at once; {rec} is closed ({committed(rec)} shots)", err
    assert "SIGINT: stopping cleanly (Ctrl-C again exits at once)" in err
    assert took < 10


@pytest.mark.parametrize("planted", ["symlink", "fifo"])
def test_log_symlink_is_refused(tmp_path: Path, planted: str) -> None:
    """A link (or a FIFO) planted where the log goes is refused, and what it points at untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    log = tmp_path / "rec.log"
    if planted == "symlink":
        log.symlink_to(victim)
    else:
        os.mkfifo(log)
    proc = subprocess.run([sys.executable, "-m", "shotwatch", "record", "-c", str(_demo(tmp_path)),
                           "-o", str(tmp_path / "rec.zarr"), "--shots", "10"],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    found = "a symbolic link" if planted == "symlink" else "a FIFO"
    assert proc.stderr.strip().splitlines()[-1] == (
        f"shotwatch: error: {log}: expected a regular file or nothing for the recording's log, found {found}")
    assert "Traceback" not in proc.stderr
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "rec.zarr").exists()
