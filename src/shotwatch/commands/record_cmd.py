"""``shotwatch record``: the headless recorder."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..link.messages import StatusMsg
from ..link.protocols import NullListener
from ..schemas import SourceError, UsageError, load_config
from ._argtypes import positive

__all__ = ["register", "setup_logging"]

log = logging.getLogger("shotwatch.recorder")


class _LogFile(logging.StreamHandler):  # type: ignore[type-arg]
    """Appends to a file it opened itself (see :func:`_open_log`), and closes it."""

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            super().close()


def _open_log(path: Path) -> _LogFile:
    """The log beside a recording, appended to: only ever a regular file of that name.

    Anyone who can write to the recording's directory could plant a symbolic link (to a
    file of ours we would then append to) or a FIFO (that would hang us) in its place.

    Raises:
        UsageError: ``path`` is a link, not a regular file, or cannot be opened.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise UsageError(f"{path}: expected a regular file or nothing for the recording's log, "
                         f"found {_what_is(path, exc)}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{path}: expected a regular file or nothing for the recording's log, "
                         f"found {_what_is(path, None)}")
    os.set_blocking(fd, True)
    return _LogFile(os.fdopen(fd, "a", encoding="utf-8"))


def _what_is(path: Path, exc: OSError | None) -> str:
    """What is at ``path`` (not following a link), for an error message."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        mode = 0
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if exc is not None:
        return exc.strerror or str(exc)
    return "a directory" if stat.S_ISDIR(mode) else "a device or socket"


def setup_logging(log_path: Path | None, *, to_stderr: bool) -> None:
    """Notices to the log beside the recording and (unless under `run`) to stderr.

    Raises:
        UsageError: the log path is a link or not a regular file (nothing is set up then).
    """
    fh = _open_log(log_path) if log_path is not None else None
    root = logging.getLogger("shotwatch")
    root.setLevel(logging.INFO)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if fh is not None:
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root.addHandler(fh)
    if to_stderr:
        sh = logging.StreamHandler(sys.stderr)
        sh.setLevel(logging.INFO)  # INTERFACE.md: notices always go to stderr and the log
        sh.setFormatter(logging.Formatter("shotwatch: %(message)s"))
        root.addHandler(sh)


class _Progress(NullListener):
    """The progress line on a terminal: shots, rate, size (only when stderr is a tty)."""

    def __init__(self, total: int | None) -> None:
        self.total = total

    def on_status(self, msg: StatusMsg) -> None:
        s = msg.status
        of = f"/{self.total}" if self.total else ""
        size = s.bytes / 1e6
        sys.stderr.write(f"\r{s.shots}{of} shots  {s.rate_hz:7.1f} Hz  {size:8.1f} MB  {s.state}  ")
        sys.stderr.flush()


class _LogBeside(NullListener):
    """Each new recording (a new run of the source) gets its own log beside it."""

    def on_recording(self, path: Path) -> None:
        from ..recorder.paths import log_path_for

        try:
            setup_logging(log_path_for(path), to_stderr=True)
        except UsageError as exc:  # recording goes on; notices still reach stderr
            setup_logging(None, to_stderr=True)
            log.warning("log not written: %s", exc)


class _Stopper:
    """SIGINT, SIGTERM and SIGHUP stop the recorder cleanly; a second Ctrl-C exits at once.

    SIGHUP is an SSH session dropped without tmux: the terminal is gone, so stdout and stderr
    are pointed at /dev/null (the log keeps everything) and the recording closes as usual.
    A second Ctrl-C, while the clean stop is still under way (a hung disk, a result file
    nobody reads), exits without waiting: the recording keeps its last commit.
    """

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.asked = False

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, self)

    def __call__(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            _leave_terminal()
        if self.asked and signum == signal.SIGINT:
            self._exit_now()
        self.asked = True
        name = signal.Signals(signum).name
        log.info("%s: stopping cleanly%s", name, " (Ctrl-C again exits at once)" if signum == signal.SIGINT else "")
        self.recorder.stop()

    def _exit_now(self) -> None:
        sink = self.recorder.sink
        if sink is None or sink.path is None:
            what = "nothing was recorded"
        elif not sink.recording:
            what = f"{sink.path} is closed ({sink.committed} shots)"
        else:
            what = f"{sink.path} keeps its last commit ({sink.committed} shots); `shotwatch repair` closes it"
        with contextlib.suppress(OSError):
            os.write(2, f"shotwatch: interrupted again: exiting at once; {what}\n".encode())
        log.warning("interrupted again: exiting at once; %s", what)
        os._exit(130)


def _leave_terminal() -> None:
    """The terminal hung up: writes to it would fail (EIO), so they go nowhere instead.

    A hung-up terminal no longer answers ``isatty``; any character device is taken for it
    (stdout or stderr redirected to a file or a pipe stays as it is).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                if stat.S_ISCHR(os.fstat(fd).st_mode):
                    os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _record(args: argparse.Namespace) -> int:
    from ..recorder.acquire import Recorder

    if args.mpi:
        return _record_mpi(args)
    return _record_with(args, Recorder)


def _record_mpi(args: argparse.Namespace) -> int:
    """``mpirun -n N shotwatch record --mpi``: rank 0 records, the other ranks serve it."""
    try:
        from ..recorder import mpi
    except ImportError as exc:
        raise UsageError(f"--mpi: expected mpi4py and an MPI library (pip install 'shotwatch[mpi]'), "
                         f"found {exc}") from None
    session = mpi.start()
    if session.worker:
        try:
            config = load_config(args.config)
        except UsageError:
            return 2  # rank 0 reads the same file and says what is wrong, once
        return session.serve(config)
    try:
        return _record_with(args, session.recorder_factory())
    finally:
        session.finish()


def _record_with(args: argparse.Namespace, make: Callable[..., Any]) -> int:
    """The headless recorder: ``make(config, out=, append=, summary=)`` builds the Recorder."""
    from ..recorder.paths import log_path_for
    from ..recorder.service import Service, raise_nofile

    raise_nofile()  # before the writer or any socket takes a descriptor
    config = load_config(args.config)
    if args.summary_json:
        _check_writable(args.summary_json, "--summary-json")
    recorder = make(config, out=args.out, append=args.append, summary=args.summary_json is not None,
                    origin=args.config or "<demo>")
    _Stopper(recorder).install()  # a stop asked while the source opens is kept
    setup_logging(None, to_stderr=True)
    # The service (its network processes take a moment to start) before the source: once
    # open, a source's beam runs, and shots not read in time are lost. Until the source is
    # open, consoles are told "starting".
    with Service(recorder, publish=args.publish, control=args.control):
        try:
            recorder.open()
        except SourceError as exc:
            raise SourceError(f"{args.config}: {exc}" if args.config else str(exc)) from None
        assert recorder.sink is not None and recorder.sink.first_path is not None
        setup_logging(log_path_for(recorder.sink.first_path), to_stderr=True)
        recorder.add_listener(_LogBeside())
        if sys.stderr.isatty():
            recorder.add_listener(_Progress(args.shots))
        try:
            recorder.run(shots=args.shots, seconds=args.seconds)
        finally:
            if sys.stderr.isatty():
                sys.stderr.write("\n")
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(recorder.summary(), indent=1, allow_nan=False) + "\n")
    status = recorder.status()
    assert recorder.sink is not None
    for path, shots in recorder.sink.finished:
        print(f"recorded {shots} shots to {path}")
    return 1 if status.state == "failed" else 0


def _check_writable(path: str, flag: str) -> None:
    """Fail before recording, not after, when a result file cannot be written."""
    p = Path(path)
    if p.is_dir() or not p.parent.is_dir():
        what = "a directory" if p.is_dir() else f"no directory {p.parent}"
        raise UsageError(f"{flag} {path}: expected a file in an existing directory, found {what}")


_positive_int = positive(int, "a whole number >= 1")
_positive_float = positive(float, "a number > 0")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("record", help="the headless recorder")
    p.add_argument("-c", "--config", help="configuration file (default: the built-in demo)")
    p.add_argument("-o", "--out", help="recording path or template with {run} and {time}")
    p.add_argument("--append", action="store_true", help="continue an existing recording")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--shots", type=_positive_int, help="commit exactly N shots, then close")
    stop.add_argument("--seconds", type=_positive_float, help="stop after S seconds of wall time")
    p.add_argument("--summary-json", help="write the live reduction (reduce --json layout) here")
    p.add_argument("--publish", help="PUB address for consoles (default tcp://127.0.0.1:5560)")
    p.add_argument("--control", help="REP control address (default tcp://127.0.0.1:5561)")
    p.add_argument("--mpi", action="store_true",
                   help="under mpirun -n N: the same recorder over N ranks; rank 0 owns the recording, the service "
                        "and the merge (it reduces) and sleeps between polls, ranks 1..N-1 read and cut their share "
                        "(pip install 'shotwatch[mpi]'; mpirun -disable-auto-cleanup lets rank 0 outlive a rank)")
    p.set_defaults(func=_record)
