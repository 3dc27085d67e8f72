"""``shotwatch reduce``: headless reduction of one or more recordings, in one process or on Dask."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..schemas import Config, UsageError
from ._argtypes import positive
from .reduce_plan import Plan, make_plan, shown
from .reduce_tasks import reduce_here, renamed

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
    plan = make_plan([path], config_path, version=version)
    return plan.views[0], plan.parts[0].config, plan.analyses[0]


def summarize(reader: RecordingReader, analysis: Analysis, *, progress: bool = False) -> dict[str, Any]:
    """INTERFACE.md's ``reduce --json`` result of every shot of ``reader`` (a view)."""
    from ..reducers import SummaryReducer, roi_versions

    reducer = SummaryReducer(analysis)
    versions = roi_versions(reader.rois.all())
    blocks = _Progress(len(reader), enabled=progress)
    state = reducer.init()
    for block in blocks.wrap(reader.blocks()):
        state = reducer.update(state, block, versions=versions)
    blocks.close()
    return reducer.result(state)


def _reduce(args: argparse.Namespace) -> int:
    from ..reducers import format_table, scan_csv

    for recording in args.recording:
        check_output(args.output, recording)
    if args.scheduler is not None:
        from .reduce_dask import check_address

        check_address(args.scheduler)
    plan = make_plan(args.recording, args.config, version=args.analysis_version, tags=parse_tags(args.tags))
    terminal = sys.stderr.isatty()
    with _output(args.output) as out, _cluster(args) as client:
        if args.per_shot:
            for text in _per_shot(plan, client, progress=terminal):
                out.write(text)
            return 0
        result = _summary(plan, client, progress=terminal)
        if args.json:
            out.write(json.dumps(result, indent=1, allow_nan=False) + "\n")
        elif args.csv:
            if result.get("scan") is None:
                raise UsageError(f"{args.recording[0]}: --csv writes the scan table: expected a [scan] section, "
                                 "found none")
            out.write(scan_csv(result))
        else:
            out.write(format_table(result))
    return 0


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[Any]:
    """A Dask client with ``--workers``/``--scheduler``, else None (one process)."""
    if args.workers is None and args.scheduler is None:
        yield None
        return
    from .reduce_dask import connect

    with connect(workers=args.workers, scheduler=args.scheduler) as client:
        yield client


def _summary(plan: Plan, client: Any, *, progress: bool) -> dict[str, Any]:
    """INTERFACE.md's ``reduce --json`` result of the plan, in this process or on the cluster."""
    from ..reducers import SummaryReducer

    reducer = SummaryReducer(dataclasses.replace(plan.analyses[0], version=plan.version))
    if client is None:
        line = _Progress(plan.shots, enabled=progress and plan.shots > 50_000)
        state = reduce_here(plan, wrap=line.wrap)
        line.close()
    else:
        from .reduce_dask import reduce_state

        state = reduce_state(client, plan, progress=progress) or reducer.init()
    result = reducer.result(state)
    return result if plan.labels is None else shown(result, reducer.result_keys(state), plan.labels)


def _per_shot(plan: Plan, client: Any, *, progress: bool) -> Iterator[str]:
    """``--per-shot`` rows, header first: every recording's shots in argument order."""
    from ..reducers import per_shot_csv

    first = plan.parts[0]
    header = next(per_shot_csv([], plan.analyses[0], roi_names=list(first.columns)))
    yield header
    if client is not None:
        from .reduce_dask import per_shot_rows

        yield from per_shot_rows(client, plan, progress=progress)
        return
    blocks = _Progress(plan.shots, enabled=progress and plan.shots > 50_000)
    for part, view, analysis in zip(plan.parts, plan.views, plan.analyses, strict=True):
        rows = per_shot_csv(renamed(blocks.wrap(view.blocks()), part.keys), analysis,
                            roi_names=list(part.columns), versions=part.versions)
        next(rows)
        yield from rows
    blocks.close()


class _Progress:
    """The one-process progress line on stderr (a terminal only): shots reduced of all."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self._total, self._done, self._enabled = max(total, 1), 0, enabled

    def wrap(self, blocks: Iterable[Any]) -> Iterator[Any]:
        for block in blocks:
            self._done += len(block)
            if self._enabled:
                sys.stderr.write(f"\rreduced {self._done}/{self._total} shots ({100 * self._done // self._total} %)")
                sys.stderr.flush()
            yield block

    def close(self) -> None:
        if self._enabled:
            sys.stderr.write("\n")


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
    p = sub.add_parser("reduce", help="headless reduction of one or more recordings")
    p.add_argument("recording", nargs="+", help="recordings, reduced as one stream in this order")
    p.add_argument("-c", "--config", help="analysis sections from this file (ROIs always from the recording)")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--json", action="store_true", help="the summary as JSON")
    layout.add_argument("--per-shot", action="store_true", help="one CSV row per shot")
    p.add_argument("--csv", action="store_true", help="the scan table as CSV (with --per-shot: per-shot CSV)")
    p.add_argument("--tags", help="A:B keeps shots with A <= tag < B (either side may be empty)")
    p.add_argument("--analysis-version", type=positive(int, "a whole number >= 1"), metavar="K",
                   help="reduce under the recording's analysis version K (default: its newest)")
    p.add_argument("-o", "--output", help="write to FILE instead of stdout")
    spread = p.add_mutually_exclusive_group()
    spread.add_argument("--workers", type=positive(int, "a whole number of worker processes >= 1"), metavar="N",
                        help="spread the work over N local Dask worker processes (needs shotwatch[dask])")
    spread.add_argument("--scheduler", metavar="ADDR",
                        help="spread the work over your running Dask cluster at ADDR (tcp://host:port, tls://…)")
    p.set_defaults(func=_check_and_reduce)


def _check_and_reduce(args: argparse.Namespace) -> int:
    if args.json and args.csv:
        raise UsageError("reduce: expected one of --json, --csv, --per-shot [--csv], found --json with --csv")
    return _reduce(args)
