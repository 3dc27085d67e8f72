"""Bytes the console writes to a real terminal (a pty), against STYLE.md's bandwidth habits.

A child process runs the console on a synthetic 60 Hz stream at 80x24; the test reads what it
writes, second by second, and presses keys at fixed times.
"""

from __future__ import annotations

import os
import select
import struct
import sys
import time
from pathlib import Path

import pytest

pty = pytest.importorskip("pty")
fcntl = pytest.importorskip("fcntl")
termios = pytest.importorskip("termios")

pytestmark = pytest.mark.timeout(60)
TESTS = Path(__file__).parent


def run_console(*, low: bool, keys: list[tuple[float, str]], seconds: float) -> tuple[list[tuple[float, int]], bytes]:
    """(time, bytes) of every read from the console's terminal, and everything it wrote."""
    code = f"import test_console_fakes as f; f.demo(low_bandwidth={low})"
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor",
               "PYTHONPATH": str(TESTS)}
        env.pop("TEXTUAL_COLOR_SYSTEM", None)
        os.execve(sys.executable, [sys.executable, "-c", code], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    reads: list[tuple[float, int]] = []
    raw = bytearray()
    start = time.monotonic()
    pending = list(keys)
    try:
        while (now := time.monotonic() - start) < seconds:
            while pending and now >= pending[0][0]:
                os.write(fd, pending.pop(0)[1].encode())
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                data = os.read(fd, 65536)
                reads.append((time.monotonic() - start, len(data)))
                raw += data
        os.write(fd, b"q")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    os.read(fd, 65536)
                except OSError:
                    break
        else:
            os.kill(pid, 9)
            pytest.fail("q did not end the console within 5 s")
    finally:
        os.close(fd)
    return reads, bytes(raw)


def between(reads: list[tuple[float, int]], a: float, b: float) -> int:
    return sum(n for t, n in reads if a <= t < b)


def test_steady_state_form_and_low_bandwidth() -> None:
    """Both consoles run at once (the test takes as long as one)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        normal = pool.submit(run_console, low=False, keys=[(8.5, "e"), (10.0, "\t"), (10.8, "\x1b")],
                             seconds=12)  # the form open: not steady, but it must not break anything
        low = pool.submit(run_console, low=True, keys=[(7.0, "2")], seconds=12)
        (reads, raw), (low_reads, low_raw) = normal.result(), low.result()
    steady = between(reads, 3.5, 8.5) / 5
    assert steady < 3300, f"steady state {steady:.0f} B/s"  # STYLE.md: 3.3 kB/s kept keys prompt
    assert b"38;2;" not in raw and b"48;2;" not in raw  # never truecolor, even if the terminal has it
    assert b"38;5;" in raw or b"48;5;" in raw  # 256 colours
    assert between(low_reads, 4, 12) / 8 < 1000
    assert b"38;2;" not in low_raw and b"38;5;" not in low_raw and b"48;5;" not in low_raw  # 16 colours
