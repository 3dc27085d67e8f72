"""The recorder's side of its network process: listening sockets, start, watch, restart.

The recorder creates the listening TCP sockets itself and hands them to the network process
(:mod:`~shotwatch.recorder.netproc`) as descriptors: the ports stay bound while that process
restarts, so no one else can take them meanwhile, and consoles reconnect to the same
addresses by themselves. Peers' connections are accepted, and cost descriptors and memory,
only in the network process; the recorder watches that process's resident memory and
replaces it when it exceeds its budget or dies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..schemas import ShotwatchRuntimeError, UsageError

__all__ = ["NetChild", "listen", "rss_bytes"]

log = logging.getLogger("shotwatch.recorder.service")

START_TIMEOUT = 30.0  # s for a fresh interpreter to import and bind (2 busy cores are slow)
BACKOFF_MAX = 5.0  # s between restarts of a process that keeps dying at once
STDERR_LINES = 100  # lines of one network process's stderr copied to the log, at most
_MAIN = "import sys; from shotwatch.recorder.netproc import main; sys.exit(main())"
_ENDPOINT = re.compile(r"^tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\s\[\]]+):(?P<port>\d{1,5}|\*)$")


def listen(want: str | None, default: str, what: str) -> tuple[socket.socket, str]:
    """A listening TCP socket for ``want`` and its address as ``tcp://HOST:PORT``.

    ``want`` None: ``default``, or any free port on its host where that is taken; ``"auto"``:
    a free port on 127.0.0.1; anything else: exactly that address.

    Raises:
        UsageError: an explicit address that is malformed or cannot be bound.
    """
    if want == "auto":
        return _open("127.0.0.1", 0)
    if want is None:
        host, port = _split(default)
        try:
            return _open(host, port)
        except OSError:
            return _open(host, 0)  # default port taken: any free port
    try:
        return _open(*_split(want))
    except (ValueError, OSError) as exc:
        found = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"{what} address {want}: expected a free address of the form tcp://HOST:PORT, "
                         f"found {found}") from None


def _split(endpoint: str) -> tuple[str, int]:
    m = _ENDPOINT.match(endpoint)
    if m is None:
        raise ValueError("a malformed address")
    host = m["host"].strip("[]")
    port = 0 if m["port"] == "*" else int(m["port"])
    if port > 65535:
        raise ValueError(f"port {port} (at most 65535)")
    return ("0.0.0.0" if host == "*" else host), port


def _open(host: str, port: int) -> tuple[socket.socket, str]:
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libzmq does
        sock.bind(addr)
        sock.listen(256)
        # libzmq accepts on it: never block its I/O thread on a connection already gone
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return sock, f"tcp://{shown}:{bound_port}"


def rss_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid``; None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


class NetChild:
    """One network process at a time: started, watched, replaced.

    Args:
        settings: what :func:`shotwatch.recorder.netproc.main` reads (JSON-able; includes
            the token, so it travels on stdin, never on the command line).
        fds: the listening descriptors it inherits.
        memory_limit: resident bytes it may grow beyond its size when it became ready, on top
            of what ``queued`` says its queues may hold by right.
        queued: bytes the process's queues may hold when consoles read slowly (the PUB
            process: a few queues' worth of the largest message published so far).
    """

    def __init__(self, settings: dict[str, Any], fds: tuple[int, ...], memory_limit: int,
                 queued: Callable[[], int] = lambda: 0) -> None:
        self.settings = settings
        self.fds = fds
        self.memory_limit = memory_limit
        self.queued = queued
        self.proc: subprocess.Popen[bytes] | None = None
        self.baseline = 0
        self.restarts = 0
        self._started = 0.0
        self._backoff = 0.25
        self._restart_at: float | None = None

    @property
    def role(self) -> str:
        return str(self.settings["role"])

    def start(self) -> None:
        """Start the process and wait until it serves (:meth:`spawn` and :meth:`wait_ready`)."""
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the process; it reads its settings from stdin (the token never shows in ``ps``)."""
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-c", _MAIN], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=self.fds, env=env,
                                start_new_session=True)  # a terminal's Ctrl-C or hangup is the recorder's
        assert proc.stdin is not None
        with contextlib.suppress(OSError):  # a process that died at once is reported by wait_ready
            proc.stdin.write(json.dumps(self.settings).encode() + b"\n")
            proc.stdin.flush()
        self.proc = proc

    def wait_ready(self) -> None:
        """Wait until the spawned process serves.

        Raises:
            ShotwatchRuntimeError: it did not come up within :data:`START_TIMEOUT`.
        """
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        try:
            ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
            line = proc.stdout.readline() if ready else b""
        except OSError:
            line = b""
        if line.strip() != b"ready":
            self.proc = None
            proc.kill()
            _, err = proc.communicate()
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ShotwatchRuntimeError(f"network process ({self.role}): expected it to serve within "
                                        f"{START_TIMEOUT:g} s, found {tail[0]}")
        proc.stdout.close()
        threading.Thread(target=_copy_stderr, args=(proc,), name="shotwatch-netlog", daemon=True).start()
        self._started = time.monotonic()
        self.baseline = rss_bytes(proc.pid) or 0

    def check(self) -> str | None:
        """Replace a process that died or grew too big; returns why, when it did."""
        now = time.monotonic()
        if self._restart_at is not None:
            if now < self._restart_at:
                return None
            self._restart_at = None
            try:
                self.start()
            except ShotwatchRuntimeError as exc:
                log.warning("%s", exc)
                self._schedule()
            return None
        proc = self.proc
        if proc is None:
            return None
        why = None
        if proc.poll() is not None:
            why = f"it ended (exit code {proc.returncode})"
        else:
            rss = rss_bytes(proc.pid)
            budget = self.memory_limit + self.queued()
            if rss is not None and rss > self.baseline + budget:
                why = (f"it grew by {(rss - self.baseline) / 2**20:.0f} MiB, more than its budget of "
                       f"{budget / 2**20:.0f} MiB (a peer's endless message?)")
                proc.kill()
        if why is None:
            return None
        self._reap(proc)
        self.proc = None
        self.restarts += 1
        self._schedule()
        return why

    def _schedule(self) -> None:
        """Restart soon; sooner if the last one lived long."""
        if time.monotonic() - self._started > 10.0:
            self._backoff = 0.25
        self._restart_at = time.monotonic() + self._backoff
        self._backoff = min(BACKOFF_MAX, self._backoff * 2)

    def stop(self, *, wait: float) -> None:
        """End the process: it exits on its own within ``wait`` s (after BYE), else killed."""
        proc, self.proc = self.proc, None
        self._restart_at = None
        if proc is None:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass
        self._reap(proc)

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes]) -> None:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # its end of the pipe: the process leaves
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _copy_stderr(proc: subprocess.Popen[bytes]) -> None:
    """The network process's own complaints (a traceback, libzmq's assertions) go to the log."""
    assert proc.stderr is not None
    with proc.stderr:
        for i, raw in enumerate(proc.stderr):
            if i < STDERR_LINES:
                log.warning("network process %d: %s", proc.pid, raw.decode(errors="replace").rstrip()[:500])
