"""The recomputation worker beside acquisition: a thread of the recorder's own.

The acquire thread hands it jobs (:meth:`Recomputer.start`: an epoch, the boundary shot B and
the recording); the worker waits until the recording has committed B shots, reduces
``[0, B)`` into the console's reducers (:class:`~.recompute_worker.Engine`) and leaves the
result for the acquire thread (:meth:`Recomputer.results`), which merges and publishes it. A
newer job cancels an older one (its epoch is stale anyway). Between jobs the worker follows
the recording being written (:meth:`Recomputer.follow`), reading each new shot's pixels once,
so that a change of anything but the pixel calibration reduces an hour of shots from values it
already holds. Recording never waits for any of it: the acquire thread only queues and polls.

Why a thread and not worker processes: reading an hour of float32 pixels keeps both cores
busy already (the reader decompresses on threads, numpy releases the GIL), so processes
splitting the shots would not be faster on these 2 cores (BENCHMARKS.md, bench_recompute);
the values kept between recomputations are what makes them take a fraction of a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..link.messages import Progress
from ..schemas import Config
from .recompute_worker import Engine, Job, Reduced

__all__ = ["Finished", "Recomputer"]

log = logging.getLogger("shotwatch.recorder")

FOLLOW_EVERY = 5.0
"""Seconds between two readings of the newly committed shots (2.5 commits of 2 s)."""
COMMIT_WAIT = 60.0
"""Longest wait for the recording to commit shot B (it commits at least every 2 s)."""


@dataclass(frozen=True)
class Finished:
    """A job done (``reduced`` None and ``error`` set when it failed)."""

    epoch: int
    boundary_shot: int
    hi: int | None
    seconds: float
    reduced: Reduced | None
    error: str | None = None


@dataclass(frozen=True)
class _Task:
    epoch: int
    boundary_shot: int
    job: Job
    committed: Callable[[], int] | None


class Recomputer:
    """One worker thread, started at the first job or :meth:`follow`."""

    def __init__(self) -> None:
        self._engine = Engine()
        self._lock = threading.Condition()
        self._task: _Task | None = None
        self._running: _Task | None = None
        self._cancel = threading.Event()
        self._done: list[Finished] = []
        self._progress: Progress | None = None
        self._follow: tuple[str, Config] | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    # --- the acquire thread -----------------------------------------------------------

    def start(self, *, epoch: int, boundary_shot: int, job: Job, committed: Callable[[], int] | None) -> None:
        """Reduce ``job`` (the shots ``[0, boundary_shot)``) once ``committed()`` reached
        ``boundary_shot`` (None: a closed recording); cancels any older job."""
        with self._lock:
            self._task = _Task(epoch, boundary_shot, job, committed)
            self._progress = Progress(done=0, total=boundary_shot, epoch=epoch)
            self._cancel.set()  # the running one, if any, stops at its next block
            self._lock.notify_all()
        self._ensure_thread()

    def cancel(self) -> None:
        """Forget the queued and the running job (a new run, a replay's seek)."""
        with self._lock:
            self._task = None
            self._progress = None
            self._done = []  # finished but not yet taken: as stale as the running one
            self._cancel.set()

    def follow(self, path: str | None, config: Config) -> None:
        """Keep the values of ``path``'s committed shots under ``config``'s calibration (None: stop)."""
        with self._lock:
            self._follow = (path, config) if path is not None else None
            self._lock.notify_all()
        if path is not None:
            self._ensure_thread()

    def results(self) -> list[Finished]:
        """Jobs finished since the last call."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def progress(self) -> Progress | None:
        """The job queued or running, None when there is none."""
        return self._progress

    @property
    def busy(self) -> bool:
        return self._progress is not None

    @property
    def values_known(self) -> int:
        """Shots of the recording followed whose ROI values the worker holds (reads no lock:
        an int, for progress lines and benchmarks)."""
        cache = self._engine.cache
        return cache.known if cache is not None else 0

    def close(self) -> None:
        """Stop the worker (a running job is abandoned)."""
        with self._lock:
            self._closed = True
            self._task = None
            self._cancel.set()
            self._lock.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    # --- the worker thread --------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="shotwatch-recompute", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        last_follow = 0.0
        while True:
            with self._lock:
                if self._task is None and not self._closed:
                    self._lock.wait(max(0.05, FOLLOW_EVERY - (time.monotonic() - last_follow)))
                if self._closed:
                    return
                task, self._task = self._task, None
                self._cancel.clear()
                self._running = task
                follow = self._follow
            if task is not None:
                self._do(task)
            elif follow is not None and time.monotonic() - last_follow >= FOLLOW_EVERY:
                last_follow = time.monotonic()
                self._keep_up(*follow)

    def _keep_up(self, path: str, config: Config) -> None:
        try:
            # in the background: half the time at most (a job, which someone waits for, runs flat out)
            self._engine.follow(path, config, cancelled=self._cancel.is_set, pause=self._cancel.wait)
        except Exception as exc:  # the recording may be between runs, failed or gone: try later
            log.debug("recompute: following %s: %s", path, exc)

    def _do(self, task: _Task) -> None:
        t0 = time.monotonic()
        try:
            if not self._wait_committed(task):
                return
            reduced = self._engine.reduce(task.job, progress=lambda n: self._report(task, n),
                                          cancelled=self._cancel.is_set)
        except Exception as exc:  # a damaged recording, a disk error: reported, never fatal
            log.exception("recomputation failed")
            self._finish(task, Finished(task.epoch, task.boundary_shot, task.job.hi, time.monotonic() - t0, None,
                                        f"recomputation failed: {type(exc).__name__}: {exc}"))
            return
        if not self._cancel.is_set():
            self._finish(task, Finished(task.epoch, task.boundary_shot, task.job.hi, time.monotonic() - t0, reduced))

    def _wait_committed(self, task: _Task) -> bool:
        deadline = time.monotonic() + COMMIT_WAIT
        while task.committed is not None and task.committed() < task.boundary_shot:
            if self._cancel.wait(0.05):
                return False
            if time.monotonic() > deadline:
                self._finish(task, Finished(task.epoch, task.boundary_shot, task.job.hi, COMMIT_WAIT, None,
                                            f"recomputation gave up: shot {task.boundary_shot} was not committed "
                                            f"within {COMMIT_WAIT:g} s (has recording stopped?)"))
                return False
        return True

    def _report(self, task: _Task, done: int) -> None:
        with self._lock:
            if self._running is task and self._task is None:
                self._progress = Progress(done=min(done, task.boundary_shot), total=task.boundary_shot, epoch=task.epoch)

    def _finish(self, task: _Task, finished: Finished) -> None:
        with self._lock:
            self._running = None
            if self._task is None:  # no newer job queued meanwhile
                self._progress = None
            self._done.append(finished)
