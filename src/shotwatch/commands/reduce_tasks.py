"""The pieces of a reduction any process can run: shot ranges, a range's state, the merge tree.

A task is one recording's shot range, aligned to its chunks; the process that runs it opens
the recording, reduces the range with the same reducers as one process would and returns
the reducer state (or, for ``--per-shot``, the rows). States merge in a tree of adjacent
pairs (the reducers' merge is associative), so the result is the one-process result up to
rounding. Nothing here imports Dask: ``reduce_dask`` ships these functions to its workers,
and the tests run them in-process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..schemas import Cutout, RecordingError, ShotBlock
from .reduce_plan import Part, Plan, part_analysis

if TYPE_CHECKING:
    from ..recording import RecordingReader
    from ..reducers import Analysis
    from ..reducers.summary import SummaryState

__all__ = ["Task", "make_tasks", "merge_states", "per_shot_task", "reduce_blocks", "reduce_here", "reduce_task",
           "renamed", "tree"]

T = TypeVar("T")
# A task holds at most this many chunks: small enough that a slow worker's last task does not
# keep the others waiting, large enough that opening the recording is a small part of it.
_MAX_CHUNKS_PER_TASK = 16
_TASKS_PER_WORKER = 8
_MAX_CHUNK = 1 << 16


@dataclass(frozen=True)
class Task:
    """Shots ``lo <= tag < hi`` of one recording (``shots`` of them: checked where it runs).

    ``token`` names the reduction: a worker reuses a recording it opened only within it.
    """

    part: Part
    tags: tuple[int, int]
    shots: int
    token: str


def make_tasks(plan: Plan, *, workers: int, token: str) -> list[Task]:
    """The plan's shots as chunk-aligned ranges, about ``_TASKS_PER_WORKER`` per worker.

    Ranges start at multiples of the recording's chunk length on its shot axis, so each
    chunk file is read by one task; a range never spans two recordings.
    """
    per_task = max(1, -(-plan.shots // (max(1, workers) * _TASKS_PER_WORKER)))
    out = []
    for part, view in zip(plan.parts, plan.views, strict=True):
        a, b = view.shots
        if a >= b:
            continue
        chunk = view.chunk_shots if view.chunk_shots <= _MAX_CHUNK else 1  # a crafted one: not aligned
        size = min(max(1, -(-per_task // chunk)), _MAX_CHUNKS_PER_TASK) * chunk
        tags = view.tags()
        edges = [a, *range((a // size + 1) * size, b, size), b]
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            upper = int(tags[hi - a]) if hi < b else int(tags[-1]) + 1
            out.append(Task(part, (int(tags[lo - a]), upper), hi - lo, token))
    return out


# --- one range ----------------------------------------------------------------------------------


def reduce_task(task: Task) -> SummaryState:
    """The summary state of the task's shots (runs in any process that sees the recording)."""
    from ..reducers import SummaryReducer

    view, analysis = _view(task)
    reducer = SummaryReducer(analysis)
    return reduce_blocks(reducer, view.blocks(), task.part, reducer.init())


def per_shot_task(task: Task) -> str:
    """The ``--per-shot`` rows of the task's shots, header aside."""
    from ..reducers import per_shot_csv

    view, analysis = _view(task)
    rows = per_shot_csv(renamed(view.blocks(), task.part.keys), analysis, roi_names=list(task.part.columns),
                        versions=task.part.versions)
    next(rows)
    return "".join(rows)


def reduce_here(plan: Plan, *, wrap: Callable[[Iterable[ShotBlock]], Iterable[ShotBlock]] | None = None,
                ) -> SummaryState:
    """The plan's summary state reduced in this process: one pass over every recording's
    blocks in argument order, each under its own analysis (``wrap``: e.g. a progress line)."""
    from ..reducers import SummaryReducer

    state = SummaryReducer(plan.analyses[0]).init()
    for part, view, analysis in zip(plan.parts, plan.views, plan.analyses, strict=True):
        blocks = view.blocks()
        state = reduce_blocks(SummaryReducer(analysis), wrap(blocks) if wrap else blocks, part, state)
    return state


def reduce_blocks(reducer: Any, blocks: Iterable[ShotBlock], part: Part, state: SummaryState) -> SummaryState:
    """``state`` plus the shots of ``blocks`` (one recording's, under the part's keys)."""
    for block in renamed(blocks, part.keys):
        state = reducer.update(state, block, versions=part.versions)
    return state


def renamed(blocks: Iterable[ShotBlock], keys: Mapping[str, str]) -> Iterator[ShotBlock]:
    """``blocks`` with their cutouts under the reduction's keys.

    Two versions of one recording that merge (the same rectangle before and after another
    one) become one cutout: their shots never overlap, so each shot takes the valid one.
    """
    same = all(k == v for k, v in keys.items())
    for block in blocks:
        if same:
            yield block
            continue
        cutouts: dict[str, Cutout] = {}
        for key, cut in block.cutouts.items():
            new = keys[key]
            cutouts[new] = _either(cutouts[new], cut) if new in cutouts else cut
        yield block.with_(cutouts=cutouts)


def _either(a: Cutout, b: Cutout) -> Cutout:
    valid_b = np.asarray(b.valid, bool)
    pixels = np.where(valid_b[:, None, None], b.pixels, a.pixels)
    return Cutout(pixels, np.asarray(a.valid, bool) | valid_b, a.detector)


# --- merging --------------------------------------------------------------------------------


def merge_states(a: SummaryState, b: SummaryState) -> SummaryState:
    """Both states' shots together: the summary reducer's merge, which reads nothing of the
    analysis (so any reducer instance merges any two states of one reduction)."""
    from ..reducers import Analysis, SummaryReducer

    return SummaryReducer(Analysis()).merge(a, b)


def tree(items: Sequence[T], merge: Callable[[T, T], T]) -> T:
    """``items`` merged as a balanced tree of adjacent pairs, order kept (merge need only be
    associative); ``items`` must not be empty."""
    level = list(items)
    if not level:
        raise ValueError("tree: expected at least one item, found none")
    while len(level) > 1:
        level = [merge(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return level[0]


# --- opening recordings where the task runs -------------------------------------------------------

_OPENED: OrderedDict[tuple[str, str], tuple[RecordingReader, Analysis]] = OrderedDict()
_OPENED_MAX = 8
_LOCK = threading.Lock()


def _view(task: Task) -> tuple[RecordingReader, Analysis]:
    """The task's shots as a reader view, and its recording's analysis.

    A worker opens each recording (and reads its darks) once per reduction, not once per
    task; a new reduction (another token) opens it afresh, so a recording that grew or got
    a new analysis version since is seen as it is now.
    """
    from ..recording import RecordingReader

    key = (task.token, task.part.path)
    with _LOCK:
        opened = _OPENED.get(key)
        if opened is None:
            reader = RecordingReader(task.part.path)
            opened = (reader, part_analysis(task.part, reader))
            _OPENED[key] = opened
            while len(_OPENED) > _OPENED_MAX:
                _OPENED.popitem(last=False)
        _OPENED.move_to_end(key)
    reader, analysis = opened
    view = reader.select(tags=task.tags)
    if len(view) != task.shots:
        lo, hi = task.tags
        raise RecordingError(f"{task.part.path}: tag: expected {task.shots} shots with {lo} <= tag < {hi} "
                             f"(as when the reduction started), found {len(view)}")
    return view, analysis
