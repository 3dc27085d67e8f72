"""``shotwatch record``: the headless recorder."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ..link.messages import StatusMsg
from ..link.protocols import NullListener
from ..schemas import SourceError, UsageError, load_config
from ._argtypes import positive

__all__ = ["register", "setup_logging"]


def setup_logging(log_path: Path | None, *, to_stderr: bool) -> None:
    """Notices to the log beside the recording and (unless under `run`) to stderr."""
    root = logging.getLogger("shotwatch")
    root.setLevel(logging.INFO)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_path, encoding="utf-8")
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

        setup_logging(log_path_for(path), to_stderr=True)


def _serve(recorder: Any, args: argparse.Namespace) -> Any:
    """Start the PUB/REP service if the networking module is present."""
    try:
        from ..recorder.service import Service
    except ImportError:  # pragma: no cover - service lands separately
        return None
    return Service(recorder, publish=args.publish, control=args.control)


def _record(args: argparse.Namespace) -> int:
    from ..recorder.acquire import Recorder
    from ..recorder.paths import log_path_for

    config = load_config(args.config)
    if args.summary_json:
        _check_writable(args.summary_json, "--summary-json")
    recorder = Recorder(config, out=args.out, append=args.append, summary=args.summary_json is not None)
    setup_logging(None, to_stderr=True)
    try:
        recorder.open()
    except SourceError as exc:
        raise SourceError(f"{args.config}: {exc}" if args.config else str(exc)) from None
    assert recorder.sink is not None and recorder.sink.first_path is not None
    setup_logging(log_path_for(recorder.sink.first_path), to_stderr=True)
    recorder.add_listener(_LogBeside())
    if sys.stderr.isatty():
        recorder.add_listener(_Progress(args.shots))

    def stop(signum: int, frame: object) -> None:
        recorder.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
    service = _serve(recorder, args)
    try:
        if service is not None:
            with service:
                recorder.run(shots=args.shots, seconds=args.seconds)
        else:
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
    p.set_defaults(func=_record)
