"""``shotwatch dark [-c CONFIG] [--shots N] [--force] -o DARK``: a dark file (INTERFACE.md).

Averages the next N full frames of every array detector the configuration's ROIs name, per
pixel over the finite values (mean and standard deviation, float32), with the recorder that
``record`` runs (recording off): the same frames, the same averager, the same refusals as a
dark taken from a console (``D``). With the simulator: ``source.shutter = "closed"``.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from ..link.messages import StatusMsg
from ..link.protocols import NullListener
from ..schemas import ConfigError, DarkFrame, RecordingError, SourceError, UsageError, load_config
from ._argtypes import positive

if TYPE_CHECKING:
    from ..recorder.acquire import Recorder

__all__ = ["register"]

DEFAULT_SHOTS = 600


class _Bar(NullListener):
    """The progress bar on a terminal: frames taken of each detector's dark."""

    def __init__(self, recorder: Recorder, total: int) -> None:
        self.recorder, self.total = recorder, total

    def on_status(self, msg: StatusMsg) -> None:
        progress = self.recorder.dark_progress()
        done = min((f for f, _ in progress.values()), default=self.total)
        filled = 30 * done // max(self.total, 1)
        sys.stderr.write(f"\rdark [{'#' * filled}{'-' * (30 - filled)}] {done}/{self.total} frames  "
                         f"{msg.status.rate_hz:6.1f} Hz  ")
        sys.stderr.flush()


def _dark(args: argparse.Namespace) -> int:
    from ..recorder.acquire import Recorder
    from ..recorder.darks import DarkRefused, configured_detectors
    from ..recording.darkfile import write_dark_file
    from .record_cmd import setup_logging

    where = args.config or "<demo>"
    config = load_config(args.config)
    detectors = configured_detectors(config)
    if not detectors:
        raise ConfigError(f"{where}: roi: expected ROIs naming the detectors to take a dark of, found none")
    out = Path(args.out)
    if out.exists() or out.is_symlink():
        raise RecordingError(f"{out}: expected a new dark file path, found an existing one")
    # A dark is raw frames: the configuration's own dark (if any) plays no part in it.
    config = config.model_copy(update={"calibration": config.calibration.model_copy(update={"dark": None})})
    recorder = Recorder(config, record=False, origin=where, alarms=False)
    setup_logging(None, to_stderr=True)
    try:
        recorder.open()
    except SourceError as exc:
        raise SourceError(f"{where}: {exc}") from None
    futures = {det: recorder.take_dark(det, args.shots, force=args.force) for det in detectors}
    _stop_when_done(recorder, list(futures.values()))
    tty = sys.stderr.isatty()
    if tty:
        recorder.add_listener(_Bar(recorder, args.shots))
    try:
        recorder.run()
    finally:
        if tty:
            sys.stderr.write("\n")
    darks: dict[str, DarkFrame] = {}
    for det, fut in futures.items():
        if not fut.done():
            raise UsageError(f"{where}: dark of {det}: expected {args.shots} frames, found the source stopped first")
        try:
            darks[det] = fut.result()
        except DarkRefused as exc:
            raise UsageError(f"{where}: {exc}") from None
    info = recorder.status()
    write_dark_file(out, darks, source={"kind": config.source.kind, "run": info.run, "config": where})
    print(f"dark of {args.shots} frames ({', '.join(detectors)}) to {out}")
    if config.alarm.beam is None:
        sys.stderr.write("shotwatch: no [alarm] beam in the configuration: the beam was not checked "
                         "(a dark with X-rays in it would be subtracted from every shot)\n")
    return 0


def _stop_when_done(recorder: Recorder, futures: list[Future[DarkFrame]]) -> None:
    """Stop the recorder once every dark is in (or refused)."""

    def check(_: Future[DarkFrame]) -> None:
        if all(f.done() for f in futures):
            recorder.stop()

    for fut in futures:
        fut.add_done_callback(check)


_frames = positive(int, "a whole number of frames >= 1")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dark", help="average N full frames of each ROI detector into a dark file")
    p.add_argument("-c", "--config", metavar="CONFIG", help="configuration file (default: the built-in demo)")
    p.add_argument("--shots", type=_frames, default=DEFAULT_SHOTS, metavar="N",
                   help=f"frames averaged per detector (default {DEFAULT_SHOTS})")
    p.add_argument("--force", action="store_true",
                   help="take it even while the veto named by [alarm] beam passes (beam on)")
    p.add_argument("-o", "--out", required=True, metavar="DARK", help="the dark file to write (a new path)")
    p.set_defaults(func=_dark)
