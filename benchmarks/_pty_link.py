"""A terminal as an operator meets it: a pseudo-terminal read no faster than a slow link.

:class:`PtyLink` runs a command on a pty of a given size (TIOCSWINSZ, ``TERM=xterm-256color``,
``COLORTERM`` unset), and a reader thread drains the pty master through a token bucket at the
link's rate. What the program writes beyond that rate stays in the kernel's pty buffer and then
blocks the program's writes, exactly as the TCP/SSH buffers of a slow link would back up (a real
link buffers at least as much, so the queueing we see is if anything optimistic). Everything read
is fed to a pyte terminal emulator, so tests wait for what would be *on the screen*, and every
read is time-stamped, so benchmarks get bytes per second and per screen row.

Also here: :class:`RecorderProc`, a headless ``shotwatch record`` with a private run-file
directory (so concurrent runs on a shared box never find each other's recorder), and small
statistics helpers shared by the console benchmarks and the soak.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pyte

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SHOTWATCH = str(VENV_BIN / "shotwatch") if (VENV_BIN / "shotwatch").exists() else "shotwatch"

LINK_64K = 8000.0
"""64 kbit/s in bytes per second."""
LINK_9600 = 960.0
"""9600 baud (8N1: 10 bits a byte) in bytes per second."""

Screen = list[str]


class _CountingScreen(pyte.Screen):  # type: ignore[misc]
    """A pyte screen that charges every drawn character and colour change to its row.

    This is how we tell which widget costs the bytes without instrumenting the app: the
    bytes drawn per row (UTF-8 length of the glyphs, plus the SGR and cursor-move sequences
    that precede them, estimated from their parameters) accumulate in ``row_bytes``.
    """

    def __init__(self, columns: int, lines: int) -> None:
        self.row_bytes = [0] * lines  # before super(): its reset() moves the cursor
        super().__init__(columns, lines)

    def draw(self, data: str) -> None:
        row = self.cursor.y
        super().draw(data)
        self.row_bytes[min(row, self.lines - 1)] += len(data.encode("utf-8"))

    def select_graphic_rendition(self, *attrs: int, private: bool = False) -> None:
        super().select_graphic_rendition(*attrs)
        self.row_bytes[min(self.cursor.y, self.lines - 1)] += 3 + sum(len(str(a)) + 1 for a in attrs)

    def cursor_position(self, line: int | None = None, column: int | None = None) -> None:
        super().cursor_position(line, column)
        self.row_bytes[min(self.cursor.y, self.lines - 1)] += 6


@dataclass
class _Reads:
    """Time-stamped byte counts of everything read from the pty."""

    times: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


class PtyLink:
    """Run ``argv`` on a ``cols`` x ``rows`` pty whose output is read at most ``rate`` B/s.

    Args:
        argv: the command.
        rate: link speed in bytes per second; None reads as fast as the program writes.
        cols, rows: terminal size (set before the program starts).
        env: extra environment (merged over ours, TERM/COLORTERM fixed as a terminal would).
        cwd: working directory.
    """

    def __init__(self, argv: Sequence[str], *, rate: float | None = None, cols: int = 120, rows: int = 40,
                 env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None) -> None:
        self.argv = list(argv)
        self.rate = rate
        self.cols, self.rows = cols, rows
        self.screen = _CountingScreen(cols, rows)
        self._stream = pyte.ByteStream(self.screen)
        self._lock = threading.Condition()
        self._reads = _Reads()
        self._watchers: list[Callable[[float, Screen], None]] = []
        self._stop = threading.Event()
        self._eof = threading.Event()
        self.t0 = 0.0
        base = {k: v for k, v in os.environ.items() if k not in ("COLORTERM", "LINES", "COLUMNS")}
        base.update(env or {})
        base["TERM"] = "xterm-256color"
        base.pop("COLORTERM", None)
        self._env = base
        self._cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.master = -1
        self._thread = threading.Thread(target=self._read_loop, name="pty-link", daemon=True)

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> PtyLink:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.rows, self.cols, 0, 0))
        self.t0 = time.monotonic()
        # The program must own the pty as its controlling terminal (job control, SIGWINCH,
        # /dev/tty), as under sshd: new session, then TIOCSCTTY on its stdin.
        self.proc = subprocess.Popen(
            self.argv, stdin=slave, stdout=slave, stderr=slave, env=self._env, cwd=self._cwd,
            start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0), close_fds=True,
        )
        os.close(slave)  # else the master never sees EOF when the program exits
        self.master = master
        self._thread.start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def process(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def wait_exit(self, timeout: float) -> int | None:
        """The program's exit code, or None if it is still running after ``timeout`` s."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self, *, timeout: float = 10.0) -> int | None:
        """Stop the program (SIGTERM to its session, then SIGKILL) and the reader."""
        code = None
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                code = self.wait_exit(timeout)
                if code is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    code = self.wait_exit(5.0)
        self._stop.set()
        self._thread.join(5.0)
        if self.master >= 0:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = -1
        return code

    def __enter__(self) -> PtyLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the link ------------------------------------------------------------------------

    def _read_loop(self) -> None:
        # Token bucket. The bucket holds at most 50 ms of link time, so an idle link saves
        # no credit worth speaking of (a serial line or a saturated TCP flow does not either).
        rate = self.rate
        cap = max(16.0, rate * 0.05) if rate else 0.0
        tokens, last = 0.0, time.monotonic()
        while not self._stop.is_set():
            want = 1 << 16
            if rate:
                now = time.monotonic()
                tokens, last = min(cap, tokens + (now - last) * rate), now
                if tokens < 1.0:
                    time.sleep(max(0.002, (min(cap, 16.0) - tokens) / rate))
                    continue
                want = int(tokens)
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self.master, want)
            except OSError:  # EIO: every slave fd closed (the program and its children exited)
                data = b""
            if not data:
                break
            tokens -= len(data)
            self._feed(data)
        self._eof.set()
        with self._lock:
            self._lock.notify_all()

    def _feed(self, data: bytes) -> None:
        now = time.monotonic()
        with self._lock:
            self._reads.times.append(now)
            self._reads.sizes.append(len(data))
            self._stream.feed(data)
            if self._watchers:
                lines = list(self.screen.display)
                for fn in self._watchers:
                    fn(now, lines)
            self._lock.notify_all()

    def backlog(self) -> int:
        """Bytes the program has written that the link has not delivered yet (in the pty)."""
        buf = struct.pack("i", 0)
        try:
            return int(struct.unpack("i", fcntl.ioctl(self.master, termios.FIONREAD, buf))[0])
        except OSError:
            return 0

    # --- keys and the screen -------------------------------------------------------------

    def send(self, keys: str | bytes) -> float:
        """Type ``keys`` (uplink is not throttled: keystrokes are a few bytes); returns when."""
        data = keys.encode() if isinstance(keys, str) else keys
        os.write(self.master, data)
        return time.monotonic()

    def lines(self) -> Screen:
        with self._lock:
            return list(self.screen.display)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.lines())

    def watch(self, fn: Callable[[float, Screen], None]) -> None:
        """Call ``fn(monotonic time, screen lines)`` after every read (under the screen lock)."""
        with self._lock:
            self._watchers.append(fn)

    def wait_for(self, pred: Callable[[Screen], bool], timeout: float) -> float | None:
        """Wait until ``pred(screen lines)`` holds; the monotonic time it first did, else None."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                if pred(list(self.screen.display)):
                    return time.monotonic()
                left = deadline - time.monotonic()
                if left <= 0 or self._eof.is_set():
                    return None
                self._lock.wait(min(left, 0.2))

    @property
    def eof(self) -> bool:
        return self._eof.is_set()

    # --- accounting ----------------------------------------------------------------------

    def total_bytes(self, start: float | None = None, end: float | None = None) -> int:
        """Bytes read between two monotonic times (default: all)."""
        with self._lock:
            times, sizes = list(self._reads.times), list(self._reads.sizes)
        lo = -1e300 if start is None else start
        hi = 1e300 if end is None else end
        return sum(n for t, n in zip(times, sizes, strict=True) if lo <= t < hi)

    def per_second(self, start: float, end: float) -> list[int]:
        """Bytes read in each whole second from ``start`` up to ``end``."""
        with self._lock:
            times, sizes = list(self._reads.times), list(self._reads.sizes)
        out = [0] * max(0, int(end - start))
        for t, n in zip(times, sizes, strict=True):
            k = int(t - start)
            if start <= t and 0 <= k < len(out):
                out[k] += n
        return out

    def row_bytes(self) -> list[int]:
        """Estimated bytes drawn per screen row so far (see :class:`_CountingScreen`)."""
        with self._lock:
            return list(self.screen.row_bytes)


def max_window(per_sec: Sequence[int], window: int = 10) -> float:
    """Highest mean B/s over any ``window`` consecutive seconds."""
    if len(per_sec) < window:
        return float(sum(per_sec)) / max(1, len(per_sec))
    return max(sum(per_sec[i:i + window]) / window for i in range(len(per_sec) - window + 1))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def saturate_link(rate: float, seconds: float) -> float:
    """Bytes per second the link delivers from a program that always has output (``yes``).

    The honest baseline for the bandwidth benchmark: it checks the token bucket in this very
    run (on a loaded box a reader thread may fall behind its nominal rate).
    """
    with PtyLink(["yes", "shotwatch bandwidth baseline"], rate=rate) as link:
        time.sleep(1.0)
        t0 = time.monotonic()
        time.sleep(seconds)
        return link.total_bytes(t0, time.monotonic()) / (time.monotonic() - t0)


# --- screen predicates (what the operator looks for) --------------------------------------

def has_rate(lines: Screen) -> bool:
    """The status bar shows a shot rate ``NN.N Hz`` greater than zero."""
    import re

    for line in lines[:3]:
        m = re.search(r"(\d+\.\d) Hz", line)
        if m and float(m.group(1)) > 0:
            return True
    return False


def roi_value(lines: Screen, name: str) -> str | None:
    """The current value shown on ``name``'s ROI row (the number before ``mean``), or None."""
    import re

    for line in lines:
        m = re.match(rf"^[ ▶]{name}\s.*?\s(\S+)\s+mean\s", line)
        if m:
            return m.group(1)
    return None


def has_data(lines: Screen, roi: str = "bragg") -> bool:
    """First data: a rate in Hz and a numeric value on the ROI's row."""
    value = roi_value(lines, roi)
    if value is None or not has_rate(lines):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


# --- a headless recorder with a private run-file directory --------------------------------

class RecorderProc:
    """``shotwatch record`` in the background, its run file in a directory of our own.

    Args:
        out: recording path.
        config: configuration file (None: the demo).
        runtime: directory used as ``XDG_RUNTIME_DIR`` for this recorder and its consoles.
        extra: more ``record`` arguments.
    """

    def __init__(self, out: Path, *, runtime: Path, config: Path | None = None,
                 extra: Sequence[str] = ()) -> None:
        self.out = out
        self.runtime = runtime
        argv = [SHOTWATCH, "record", "-o", str(out), "--publish", "tcp://127.0.0.1:*",
                "--control", "tcp://127.0.0.1:*", *extra]
        if config is not None:
            argv[2:2] = ["-c", str(config)]
        self.argv = argv
        self.log = open(out.with_suffix(".stdout"), "wb")  # closed in stop()
        self.proc: psutil.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime)}

    def start(self, *, timeout: float = 30.0) -> dict[str, object]:
        """Start and wait for the run file; returns it (control, publish, token...)."""
        self.runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.proc = psutil.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                                 stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for f in (self.runtime / "shotwatch").glob("recorder-*.json"):
                with contextlib.suppress(ValueError, OSError):
                    info = json.loads(f.read_text())
                    if info.get("pid") == self.proc.pid:
                        return dict(info)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"recorder did not start: {self.argv} (see {self.log.name})")

    def stop(self, *, timeout: float = 30.0) -> int | None:
        """SIGINT (a clean close), then wait; SIGKILL only if it hangs."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(5)
        self.log.close()
        return code


def private_runtime(base: Path) -> Path:
    """A fresh 0700 directory to serve as XDG_RUNTIME_DIR."""
    path = Path(tempfile.mkdtemp(prefix="rt-", dir=base))
    path.chmod(0o700)
    return path


def info_json(path: Path) -> dict[str, object]:
    """``shotwatch info --json`` of a recording."""
    out = subprocess.run([SHOTWATCH, "info", str(path), "--json"], capture_output=True, text=True, check=True,
                         timeout=60)
    return dict(json.loads(out.stdout))


def box() -> dict[str, object]:
    """The machine's state, reported with every row: these boxes are shared and noisy."""
    return {"load1": round(os.getloadavg()[0], 2), "cores": os.cpu_count()}


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU seconds of a process so far."""
    t = proc.cpu_times()
    return float(t.user + t.system)
