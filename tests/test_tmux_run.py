"""End to end as an operator does it: ``shotwatch run`` inside tmux, driven by send-keys.

The console runs against the built-in simulator in a 120x40 tmux pane on a private tmux
server; we read the screen with capture-pane, polling against deadlines (never fixed sleeps,
so a noisy 2-core box only makes it slower, not flaky). Checked: live data on screen (rate in
Hz, the demo's ROI names with numbers), ``2`` switches the view, ``q`` quits with exit code 0,
and the recording it made is complete and readable by ``shotwatch info``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")
SHOTWATCH = str(Path(sys.executable).parent / "shotwatch")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux); this test drives "
                                            "the console through it"),
]


class Tmux:
    """A private tmux server (its own socket) with one 120x40 session."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        out = subprocess.run([str(TMUX), "-S", str(self.socket), "-f", "/dev/null", *args],
                             capture_output=True, text=True, timeout=20, check=True)
        return out.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "sw")

    def wait_for(self, pred: Callable[[str], bool], timeout: float, what: str) -> str:
        """Poll the pane until ``pred(screen)``; fail with the last screen after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if pred(text):
                return text
            if time.monotonic() > deadline:
                pytest.fail(f"after {timeout:g} s, expected {what}; the screen shows:\n{text}")
            time.sleep(0.2)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    # A socket path must stay short (sun_path is ~108 bytes): tmp_path can be long.
    sockdir = Path(tempfile.mkdtemp(prefix="sw-tmux-"))
    t = Tmux(sockdir / "s")
    yield t
    subprocess.run([str(TMUX), "-S", str(t.socket), "kill-server"], capture_output=True, timeout=20, check=False)
    shutil.rmtree(sockdir, ignore_errors=True)


def _live(text: str) -> bool:
    rate = re.search(r"(\d+\.\d) Hz", text)
    rows = [re.search(rf"^[ ▶]{name}\s.*?\s(-?\d[\d.e+-]*)\s+mean\s", text, re.M) for name in ("bragg", "background")]
    return bool(rate and float(rate.group(1)) > 0 and all(rows))


def test_run_in_tmux(tmux: Tmux, tmp_path: Path) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    rec = tmp_path / "run.zarr"
    code_file = tmp_path / "exit_code"
    # The shell records the exit code, then keeps the pane alive so nothing races the check.
    inner = (f"cd {shlex.quote(str(tmp_path))} && env XDG_RUNTIME_DIR={shlex.quote(str(runtime))} "
             f"{shlex.quote(SHOTWATCH)} run -o {shlex.quote(str(rec))}; echo $? > {shlex.quote(str(code_file))}; "
             f"exec sleep 60")
    env_path = os.environ.get("PATH", "")
    tmux("new-session", "-d", "-s", "sw", "-x", "120", "-y", "40", f"env PATH={shlex.quote(env_path)} sh -c "
         f"{shlex.quote(inner)}")

    screen = tmux.wait_for(_live, 25.0, "live data: a rate in Hz and numbers on the bragg and background rows")
    assert "view scan" in screen, screen

    tmux("send-keys", "-t", "sw", "2")
    tmux.wait_for(lambda s: "view correlation" in s, 10.0, "`2` to switch to the correlation view")

    tmux("send-keys", "-t", "sw", "q")
    deadline = time.monotonic() + 20.0
    while not (code_file.exists() and code_file.read_text().strip()):
        if time.monotonic() > deadline:
            pytest.fail(f"`q` did not end shotwatch run within 20 s; the screen shows:\n{tmux.screen()}")
        time.sleep(0.2)
    assert code_file.read_text().strip() == "0", tmux.screen()

    out = subprocess.run([SHOTWATCH, "info", str(rec), "--json"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["closed"] is True
    assert info["committed"] > 0
    assert set(info["rois"]) == {"bragg", "background"}
