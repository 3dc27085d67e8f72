"""``shotwatch reduce``: headless reduction of a recording."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..schemas import Config, UsageError, load_config
from ._argtypes import positive

if TYPE_CHECKING:  # imported inside the functions at run time: `shotwatch --help` stays fast
    from ..recording import RecordingReader
    from ..reducers import Analysis

__all__ = ["check_output", "open_analysis", "parse_tags", "register", "summarize"]


def parse_tags(text: str | None) -> tuple[int | None, int | None]:
    """``A:B`` -> (A, B); either side may be empty."""
    if text is None:
        return None, None
    lo, sep, hi = text.partition(":")
    try:
        if not sep:
            raise ValueError
        a, b = (int(lo) if lo.strip() else None, int(hi) if hi.strip() else None)
    except ValueError:
        raise UsageError(f"--tags: expected A:B with whole numbers (either may be empty), found {text!r}") from None
    if a is not None and b is not None and a >= b:
        raise UsageError(f"--tags: expected A < B (A <= tag < B keeps no shot otherwise), found {text!r}")
    return a, b


def open_analysis(path: str, config_path: str | None, *,
                  version: int | None = None) -> tuple[RecordingReader, Config, Analysis]:
    """(reader, configuration, Analysis) of a reduction of ``path`` (INTERFACE.md ``reduce``).

    The analysis comes from ``-c`` (``analysis_version`` null) or the recording's analysis
    version ``version`` (default: its newest), and is checked against the recording.
    """
    from ..recording import RecordingReader
    from ..recording.analysis_config import analysis_config, recording_analysis, recording_darks
    from ..reducers import Analysis

    if config_path is not None and version is not None:
        raise UsageError(f"reduce: expected -c or --analysis-version, found both (-c {config_path}, "
                         f"--analysis-version {version})")
    reader = RecordingReader(path)
    override = load_config(config_path) if config_path else None
    number, recorded = recording_analysis(reader, version)
    cfg = analysis_config(recorded, override, points=reader.points, where=str(path), origin=config_path,
                          detectors=reader.detectors, roi_names=reader.rois.versions)
    origin = config_path if override is not None and config_path else str(path)
    analysis = Analysis.from_config(cfg, detectors=reader.detectors, darks=recording_darks(cfg, reader, origin=origin),
                                    version=None if override is not None else number, origin=origin)
    return reader, cfg, analysis


def _blocks(reader: Any, *, progress: bool) -> Iterator[Any]:
    total = max(int(reader.committed), 1)
    done = 0
    for block in reader.blocks():
        done += len(block)
        if progress:
            sys.stderr.write(f"\rreduced {done}/{total} shots ({100 * done // total} %)")
            sys.stderr.flush()
        yield block
    if progress:
        sys.stderr.write("\n")


def summarize(reader: RecordingReader, analysis: Analysis, *, progress: bool = False) -> dict[str, Any]:
    """INTERFACE.md's ``reduce --json`` result of every shot of ``reader`` (a view)."""
    from ..reducers import SummaryReducer, roi_versions

    reducer = SummaryReducer(analysis)
    versions = roi_versions(reader.rois.all())
    state = reducer.init()
    for block in _blocks(reader, progress=progress):
        state = reducer.update(state, block, versions=versions)
    return reducer.result(state)


def _reduce(args: argparse.Namespace) -> int:
    from ..reducers import format_table, per_shot_csv, roi_versions, scan_csv

    check_output(args.output, args.recording)
    reader, _, analysis = open_analysis(args.recording, args.config, version=args.analysis_version)
    lo, hi = parse_tags(args.tags)
    if lo is not None or hi is not None:
        reader = reader.select(tags=(lo, hi))
    progress = sys.stderr.isatty() and int(reader.committed) > 50_000
    with _output(args.output) as out:
        if args.per_shot:
            names = sorted(reader.rois.versions)
            for line in per_shot_csv(_blocks(reader, progress=progress), analysis, roi_names=names,
                                     versions=roi_versions(reader.rois.all())):
                out.write(line if line.endswith("\n") else line + "\n")
            return 0
        result = summarize(reader, analysis, progress=progress)
        if args.json:
            out.write(json.dumps(result, indent=1, allow_nan=False) + "\n")
        elif args.csv:
            if result.get("scan") is None:
                raise UsageError(f"{args.recording}: --csv writes the scan table: expected a [scan] section, found none")
            out.write(scan_csv(result))
        else:
            out.write(format_table(result))
    return 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    try:
        fh = open(path, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"-o {path}: expected a writable file, found {exc.strerror or exc}") from None
    with fh:
        yield fh


def check_output(output: str | None, recording: str) -> None:
    """-o must not point into the recording (it would overwrite its metadata)."""
    if output is None:
        return
    out, rec = Path(output).resolve(), Path(recording).resolve()
    if out == rec or rec in out.parents:
        raise UsageError(f"-o {output}: expected a file outside the recording {recording}, found a path inside it")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("reduce", help="headless reduction of a recording")
    p.add_argument("recording")
    p.add_argument("-c", "--config", help="analysis sections from this file (ROIs always from the recording)")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--json", action="store_true", help="the summary as JSON")
    layout.add_argument("--per-shot", action="store_true", help="one CSV row per shot")
    p.add_argument("--csv", action="store_true", help="the scan table as CSV (with --per-shot: per-shot CSV)")
    p.add_argument("--tags", help="A:B keeps shots with A <= tag < B (either side may be empty)")
    p.add_argument("--analysis-version", type=positive(int, "a whole number >= 1"), metavar="K",
                   help="reduce under the recording's analysis version K (default: its newest)")
    p.add_argument("-o", "--output", help="write to FILE instead of stdout")
    p.set_defaults(func=_check_and_reduce)


def _check_and_reduce(args: argparse.Namespace) -> int:
    if args.json and args.csv:
        raise UsageError("reduce: expected one of --json, --csv, --per-shot [--csv], found --json with --csv")
    return _reduce(args)
