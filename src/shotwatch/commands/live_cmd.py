"""``shotwatch run | console | replay``: the console on a recorder of its own, a running one, or a recording.

Every console watches a recorder (DESIGN.md, one engine path): ``console`` one elsewhere over
the network; ``run`` its own, in this process, through the in-process feed (and publishes it
on free ports for other consoles); ``replay`` its own too, a recorder with recording off over
the replay source, so pacing, images, health and ROI tables are the recorder's.
"""

from __future__ import annotations

import argparse
import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..schemas import ReplaySource, ShotwatchRuntimeError, UsageError, load_config
from ._argtypes import positive

__all__ = ["register", "replay_recorder"]

if TYPE_CHECKING:
    from ..link.protocols import Feed
    from ..recorder.acquire import Recorder

_ADDRESS = re.compile(r"^tcp://[^:/\s]+:\d{1,5}$")

log = logging.getLogger("shotwatch.recorder")


_hz = positive(float, "a rate in Hz", "a rate > 0 Hz")
_speed = positive(float, "a number (1 = recorded pace)", "a speed > 0 (--max for as fast as possible)")


def _run_app(feed: Feed, args: argparse.Namespace, *, label: str | None = None) -> int:
    """The console on ``feed`` until ``q``; the feed is closed after the feed thread ended."""
    from ..console import make_app

    app = make_app(feed, refresh_hz=args.refresh, low_bandwidth=args.low_bandwidth, source_label=label)
    try:
        code = app.run()
    finally:
        app.loop.stop()
        feed.close()
    return int(code or 0)


def _run(args: argparse.Namespace) -> int:
    from ..link.localfeed import LocalFeed
    from ..recorder.acquire import Recorder
    from ..recorder.paths import log_path_for
    from ..recorder.service import Service
    from .record_cmd import setup_logging

    config = load_config(args.config)
    recorder = Recorder(config, out=args.out, origin=args.config or "<demo>")
    setup_logging(None, to_stderr=False)  # the console owns the terminal: the log only
    thread = threading.Thread(target=_acquire, args=(recorder,), name="shotwatch-acquire", daemon=True)
    # Other consoles attach over the network (free ports, the run file); this one watches in
    # process: no encoding, no loopback copy, and the recorder's hello is there at once. The
    # network processes start before the source opens: a paced source's beam runs from its
    # open, and the service's start-up (about a second under load) must not be spent then.
    with Service(recorder, publish="auto", control="auto"):
        recorder.open()  # configuration errors surface here, before the screen is taken
        if recorder.sink is not None and recorder.sink.first_path is not None:
            setup_logging(log_path_for(recorder.sink.first_path), to_stderr=False)
        feed = LocalFeed(recorder)  # listening before the first block
        thread.start()
        try:
            code = _run_app(feed, args)
        finally:
            recorder.stop()
            thread.join(30.0)  # the recorder commits and closes its recording
    return code


def _acquire(recorder: Recorder, *, stop_at_end: bool = True) -> None:
    """The recorder's thread under ``run`` and ``replay``: failures go to its log; the console
    sees the heartbeat stop ("recorder gone")."""
    try:
        recorder.run(stop_at_end=stop_at_end)
    except Exception:
        log.exception("recorder stopped by an error")
        try:
            recorder.close()
        except Exception:
            log.exception("closing the recorder failed")


def _console(args: argparse.Namespace) -> int:
    from ..link.netfeed import NetFeed

    if args.connect is not None and not _ADDRESS.match(args.connect):
        raise UsageError(f"console --connect: expected tcp://HOST:PORT, found {args.connect!r}")
    feed = NetFeed(args.connect, read_only=args.read_only)
    if args.connect is None and feed.hello(timeout=2.0) is None:
        feed.close()
        raise UsageError("console: expected a running recorder (a live run file), found none; "
                         "start one with `shotwatch record` or `shotwatch run`, or pass --connect ADDR")
    if args.connect is not None and feed.hello(timeout=5.0) is None:
        feed.close()
        raise ShotwatchRuntimeError(f"console --connect {args.connect}: expected a shotwatch recorder "
                                    "answering there, found none within 5 s")
    return _run_app(feed, args)


def replay_recorder(recording: str, *, config: str | None, speed: float) -> Recorder:
    """The recorder ``shotwatch replay`` watches: recording off, over the replay source.

    ROIs come from the recording; the analysis from ``config`` where given, else from the
    recording (INTERFACE.md). Raises the usual one-line errors (a bad recording or config).
    """
    from ..recorder.acquire import Recorder
    from ..recording import RecordingReader
    from ..recording.analysis_config import analysis_config

    reader = RecordingReader(recording)  # a bad recording is refused before the screen
    override = load_config(config) if config else None
    cfg = analysis_config(reader.config, override, points=reader.points, where=str(recording),
                          origin=config, detectors=reader.detectors)
    cfg = cfg.model_copy(update={"source": ReplaySource(path=str(recording), speed=speed)})
    return Recorder(cfg, record=False)


def _replay(args: argparse.Namespace) -> int:
    from ..link.localfeed import LocalFeed

    recorder = replay_recorder(args.recording, config=args.config, speed=0.0 if args.max else args.speed)
    logging.getLogger("shotwatch").addHandler(logging.NullHandler())  # notices reach the console, not the tty
    recorder.open()
    feed = LocalFeed(recorder)
    thread = threading.Thread(target=_acquire, args=(recorder,), kwargs={"stop_at_end": False},
                              name="shotwatch-acquire", daemon=True)
    thread.start()  # at its end the replay waits: the operator may seek back
    try:
        return _run_app(feed, args, label=f"replay {Path(args.recording).name}")
    finally:
        recorder.stop()
        thread.join(10.0)


def _display_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--refresh", type=_hz, metavar="HZ",
                   help="screen updates per second (default 1; 0.5 with --low-bandwidth)")
    p.add_argument("--low-bandwidth", action="store_true",
                   help="16 colours, numbers and sparklines only (no plots or thumbnail): for slow links")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="start a recorder and a console attached to it (q stops both)")
    run.add_argument("-c", "--config", help="configuration file (default: the built-in demo)")
    run.add_argument("-o", "--out", help="recording path or template with {run} and {time}")
    _display_flags(run)
    run.set_defaults(func=_run)

    con = sub.add_parser("console", help="attach a console to a running recorder")
    con.add_argument("--connect", metavar="ADDR", help="the recorder's control address (default: its run file)")
    con.add_argument("--read-only", action="store_true", help="watch only: never change ROIs, grab or mark")
    _display_flags(con)
    con.set_defaults(func=_console)

    rep = sub.add_parser("replay", help="a console over a recording")
    rep.add_argument("recording", metavar="REC", help="the recording (.zarr)")
    rep.add_argument("-c", "--config", help="analysis sections to use instead of the recording's")
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=_speed, default=1.0, metavar="X", help="1 = recorded pace (default)")
    pace.add_argument("--max", action="store_true", help="as fast as possible")
    _display_flags(rep)
    rep.set_defaults(func=_replay)
