"""A hostile neighbour on loopback: raw ZMTP peers, and a real `shotwatch record` to aim at.

The peers speak just enough ZMTP 3.0 (greeting + READY, NULL mechanism) that libzmq takes
them for real sockets, then misbehave: hold connections, send a multipart message that never
ends, declare a frame of gigabytes. :class:`RecorderProc` runs ``shotwatch record`` on the demo
simulator in a subprocess (private runtime directory, optional descriptor limit) and watches
what matters: commits on disk, the shot rate, and the resident memory of its process tree.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from shotwatch.schemas.loading import demo_text

SHOTWATCH = [sys.executable, "-m", "shotwatch"]


# --- raw ZMTP ------------------------------------------------------------------------------


def greeting(socket_type: bytes) -> bytes:
    """A ZMTP 3.0 greeting (NULL mechanism, not as-server) followed by READY."""
    head = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    body = b"\x05READY" + b"\x0bSocket-Type" + len(socket_type).to_bytes(4, "big") + socket_type
    return head + b"\x04" + bytes([len(body)]) + body


def long_frame(size: int, *, more: bool) -> bytes:
    """The header of a long ZMTP frame declaring ``size`` bytes."""
    return bytes([0x02 | (0x01 if more else 0)]) + size.to_bytes(8, "big")


def address(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


def connect(endpoint: str, *, handshake: bytes | None = None, timeout: float = 2.0) -> socket.socket | None:
    """A TCP connection (optionally greeted); None if it was refused or timed out."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(address(endpoint))
        if handshake is not None:
            s.sendall(handshake)
            _read_greeting(s)
    except OSError:
        s.close()
        return None
    return s


def _read_greeting(s: socket.socket) -> None:
    """Wait for the peer's greeting and READY: data sent before them may be taken for a command."""
    got = b""
    while len(got) < 66 or len(got) < 66 + got[65]:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionResetError("closed during the handshake")
        got += chunk


def hold(endpoint: str, n: int, *, handshake: bytes | None = None) -> list[socket.socket]:
    """Open ``n`` connections and keep them (the caller closes them)."""
    need = n + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    held = []
    for _ in range(n):
        s = connect(endpoint, handshake=handshake, timeout=1.0)
        if s is not None:
            held.append(s)
    return held


def stream(endpoint: str, seconds: float, *, handshake: bytes, header: bytes, chunk: bytes,
           repeat_header: bool) -> int:
    """Greet, then send ``header`` + ``chunk`` (again and again) for ``seconds``; bytes sent.

    Reconnects when the peer drops us, as an attacker would.
    """
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s = connect(endpoint, handshake=handshake, timeout=0.5)
        if s is None:
            time.sleep(0.05)
            continue
        try:
            if header and not repeat_header:
                s.sendall(header)
            while time.monotonic() < end:
                s.sendall(header + chunk if repeat_header else chunk)
                sent += len(chunk)
        except OSError:
            pass
        finally:
            s.close()
    return sent


def endless_multipart(endpoint: str, seconds: float, frame: int = 60_000, *, as_type: bytes = b"DEALER") -> int:
    """A peer whose message never ends: ``frame``-byte parts, every one flagged 'more'."""
    part = long_frame(frame, more=True) + b"\x00" * frame
    batch = part * max(1, (1 << 16) // len(part))  # small parts: many per system call
    return stream(endpoint, seconds, handshake=greeting(as_type), header=b"", chunk=batch, repeat_header=False)


def huge_frame(endpoint: str, seconds: float, declared: int = 3 << 29) -> int:
    """A SUB that declares one frame of ``declared`` bytes (1.5 GiB) and streams it."""
    return stream(endpoint, seconds, handshake=greeting(b"SUB"), header=long_frame(declared, more=False),
                  chunk=b"\x00" * (1 << 20), repeat_header=False)


# --- a real recorder ---------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def tree_rss(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants."""
    return rss_bytes(pid) + sum(tree_rss(c) for c in children(pid))


def committed(rec: Path) -> int:
    """``committed`` as a reader sees it now."""
    try:
        meta = json.loads((rec / "zarr.json").read_text())
    except (OSError, ValueError):
        return 0
    return int(meta.get("attributes", {}).get("shotwatch", {}).get("committed", 0))


class RecorderProc:
    """``shotwatch record`` on the demo simulator in a subprocess, and what it is doing.

    Args:
        tmp: a private directory (recording, log, runtime directory).
        rate: the simulator's shots per second.
        nofile: a descriptor limit (soft and hard) for the recorder, like ``ulimit -n``.
        extra: more command-line arguments.
    """

    def __init__(self, tmp: Path, *, rate: float = 30.0, nofile: int | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.tmp = tmp
        self.rec = tmp / "rec.zarr"
        self.runtime = tmp / "xdg"
        self.runtime.mkdir(exist_ok=True)
        cfg = tmp / "demo.toml"
        text = re.sub(r"(?m)^rate = \S+", f"rate = {rate}", demo_text())
        cfg.write_text(re.sub(r"(?m)^frames_every = \d+", "frames_every = 30", text))
        env = {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime)}

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen([*SHOTWATCH, "record", "-c", str(cfg), "-o", str(self.rec), *extra],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=limit)
        self.out = self.err = ""
        self.runfile: dict[str, Any] = {}

    def wait_ready(self, timeout: float = 60.0) -> RecorderProc:
        """Until the run file is there and the first commit is on disk."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = list((self.runtime / "shotwatch").glob("recorder-*.json"))
            if files and committed(self.rec) > 0:
                self.runfile = json.loads(files[0].read_text())
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"recorder not ready: rc={self.proc.returncode}\n{self.err}")

    @property
    def control(self) -> str:
        return str(self.runfile["control"])

    @property
    def publish(self) -> str:
        return str(self.runfile["publish"])

    def watch(self, seconds: float, during: Callable[[], Any] | None = None) -> Sample:
        """Commits, shots/s and peak tree RSS over ``seconds`` (``during`` runs meanwhile)."""
        return Sample.over(self, seconds, during)

    def kill(self, signum: int) -> None:
        with suppress(ProcessLookupError):
            os.kill(self.proc.pid, signum)

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30.0) -> int:
        """Ask it to stop; its exit code (stdout and stderr are kept)."""
        if self.proc.poll() is None:
            self.kill(signum)
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, self.err = self.proc.communicate()
        return self.proc.returncode


class Sample:
    """What the recorder did over a while: commits seen, shot rate, peak memory."""

    def __init__(self) -> None:
        self.commits: list[int] = []
        self.rss0 = self.rss_peak = 0
        self.shots_per_s = 0.0
        self.seconds = 0.0

    @classmethod
    def over(cls, rp: RecorderProc, seconds: float, during: Callable[[], Any] | None) -> Sample:
        import threading

        out = cls()
        out.rss0 = out.rss_peak = tree_rss(rp.proc.pid)
        box: list[Any] = []
        thread = None
        if during is not None:
            thread = threading.Thread(target=lambda: box.append(during()), daemon=True)
            thread.start()
        t0, c0 = time.monotonic(), committed(rp.rec)
        out.commits.append(c0)
        seen = [(t0, c0)]
        while time.monotonic() - t0 < seconds:
            time.sleep(0.05)
            out.rss_peak = max(out.rss_peak, tree_rss(rp.proc.pid))
            c = committed(rp.rec)
            if c != out.commits[-1]:
                out.commits.append(c)
                seen.append((time.monotonic(), c))
        if thread is not None:
            thread.join(seconds + 10)
        out.seconds = time.monotonic() - t0
        # commits land every ~2 s: the rate is judged between the first and the last new commit
        if len(seen) >= 3:
            (ta, ca), (tb, cb) = seen[1], seen[-1]
            out.shots_per_s = (cb - ca) / (tb - ta)
        out.result = box[0] if box else None
        return out

    result: Any = None

    def __repr__(self) -> str:
        return (f"Sample(commits={self.commits}, {self.shots_per_s:.1f} shots/s, "
                f"rss {self.rss0 / 1e6:.0f} -> peak {self.rss_peak / 1e6:.0f} MB)")


@contextmanager
def recorder(tmp: Path, **kwargs: Any) -> Iterator[RecorderProc]:
    rp = RecorderProc(tmp, **kwargs).wait_ready()
    try:
        yield rp
    finally:
        rp.stop()
