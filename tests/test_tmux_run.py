"""End to end as an operator does it: ``shotwatch run`` inside tmux, driven by send-keys.

The console runs against the built-in simulator in a 120x40 tmux pane on a private tmux
server; we read the screen with capture-pane, polling against deadlines (never fixed sleeps,
so a noisy 2-core box only makes it slower, not flaky). Checked: live data on screen (rate in
Hz, the demo's ROI names with numbers), ``2`` switches the view, ``a`` changes the I0 minimum
and the accepted count changes for the whole run (issue 10), ``q`` quits with exit code 0, and
the recording it made is complete, holds both analysis versions, and is readable by
``shotwatch info``.
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


def _shots(text: str) -> tuple[int, int] | None:
    """(shots, accepted) from the console's vetoes line."""
    m = re.search(r"^shots (\d+)  accepted (\d+)", text, re.M)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _first_tag(text: str) -> int | None:
    """The first tag this console's numbers cover (the status line's received ranges)."""
    m = re.search(r" · tags (\d+):", text)
    return int(m.group(1)) if m else None


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

    # Issue 10: `a`, the I0 minimum (the form opens on it, selected) raised past every shot's
    # I0, enter: the whole run so far is recomputed, so the accepted count falls (under the
    # old analysis from now on, it could only have grown).
    before = tmux.wait_for(lambda s: (_shots(s) or (0, 0))[1] >= 60, 20.0, "at least 60 accepted shots")
    shots1, accepted1 = _shots(before) or (0, 0)
    tmux("send-keys", "-t", "sw", "a")
    tmux.wait_for(lambda s: re.search(r"^analysis( \d+/\d+)?  i0 ≥ \[0\.05 ", s, re.M) is not None, 10.0,
                  "the analysis form open on i0.min")
    tmux("send-keys", "-t", "sw", "5", "Enter")
    first_tag = _first_tag(before)
    after = tmux.wait_for(lambda s: "analysis v2" in s and (_shots(s) or (0, 1))[1] == 0 and _first_tag(s) == first_tag,
                          30.0, "analysis v2, no shot accepted, over the whole run (received tags from its first)")
    shots2, _ = _shots(after) or (0, 0)
    assert shots2 >= shots1 and accepted1 >= 60 and first_tag is not None, (before, after)

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
    versions = info["analysis"]
    assert [v["version"] for v in versions] == [1, 2] and versions[1]["config"]["i0"]["min"] == 5.0
    assert versions[1]["first_shot"] > 0
