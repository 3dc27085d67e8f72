"""``reduce --workers N`` and ``--scheduler ADDR``: the tasks of reduce_tasks on Dask.

``--workers N`` starts a local ``dask.distributed`` cluster of N worker processes (one
thread each) for this reduction only; ``--scheduler ADDR`` uses the user's own running
cluster. Either way each task opens its recording where it runs and returns a reducer state,
and the states merge in a tree on the workers (DESIGN.md, Scale).

Dask pickles functions and results between its processes. That stays between the user's
own processes (DESIGN.md, "What an untrusted peer cannot do"): the local cluster listens on
loopback with mutual TLS under a key made for this run (``Security.temporary``), so another
account on a shared analysis server cannot join it or submit work; ``--scheduler`` is the
user's own cluster, secured as its owner set it up (Dask's configuration).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..schemas import ShotwatchRuntimeError, UsageError
from .reduce_tasks import Task, make_tasks, merge_states, per_shot_task, reduce_task, tree

if TYPE_CHECKING:
    from distributed import Client

    from ..reducers.summary import SummaryState
    from .reduce_plan import Plan

__all__ = ["check_address", "connect", "per_shot_rows", "reduce_state"]

_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ws|wss|ucx)://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def check_address(address: str) -> str:
    """``--scheduler``'s address, checked before anything connects (code 2 if malformed)."""
    m = _ADDRESS.match(address)
    if m is None or not 0 < int(m.group(1)) < 65536:
        raise UsageError(f"--scheduler: expected a Dask scheduler address such as tcp://host:8786 or "
                         f"tls://host:8786, found {address!r}")
    return address


@contextlib.contextmanager
def connect(*, workers: int | None, scheduler: str | None) -> Iterator[Client]:
    """A client of a local cluster of ``workers`` processes, or of the scheduler at ``scheduler``.

    Raises:
        UsageError: Dask is not installed.
        ShotwatchRuntimeError: the local cluster did not start, or the scheduler did not
            answer within Dask's connect timeout (``distributed.comm.timeouts.connect``).
    """
    flag = "--scheduler" if scheduler is not None else "--workers"
    try:
        import dask
        from dask.utils import parse_timedelta
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise UsageError(f"{flag}: expected Dask installed (pip install 'shotwatch[dask]'), found no module "
                         f"{exc.name}") from None
    if scheduler is not None:
        timeout = float(parse_timedelta(dask.config.get("distributed.comm.timeouts.connect")))
        try:
            _probe(check_address(scheduler), timeout)
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ShotwatchRuntimeError(f"--scheduler {scheduler}: expected a Dask scheduler answering within "
                                        f"{timeout:g} s, found none ({_first_line(exc)})") from None
        except RuntimeError as exc:  # e.g. tcp:// while Dask's configuration requires encryption
            raise UsageError(f"--scheduler {scheduler}: expected an address Dask's configuration allows, found: "
                             f"{_first_line(exc)}") from None
        with client:
            yield client
        return
    security = _temporary_security()
    # Dask's default start method, spawn, stays: fork started workers ~2 s sooner on a loaded
    # machine (nothing to re-import), but forking this multi-threaded process (Dask's event
    # loop, zarr's) deadlocked a restarted worker once in about ten test runs. No profiler
    # thread sampling every task (~10 % of a worker's CPU); no dashboard; the scheduler's HTTP
    # server (it starts one regardless) has no routes, on a free port. No MALLOC_TRIM_THRESHOLD_
    # for the workers: Dask sets it to keep long-lived workers small, but setting it turns off
    # glibc's adaptive mmap threshold, so every block's arrays were mapped and faulted in anew
    # and a worker reduced at half the speed of this process (benchmarks/bench_dask.py).
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    settings = {"distributed.scheduler.http.routes": [], "distributed.worker.profile.enabled": False,
                "distributed.nanny.pre-spawn-environ": environ}
    with dask.config.set(settings):
        try:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   protocol="tls://", security=security, dashboard_address=None,
                                   scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                   silence_logs=logging.CRITICAL)
        except Exception as exc:  # whatever stopped the processes from starting: one line, exit 1
            raise ShotwatchRuntimeError(f"--workers {workers}: expected a local Dask cluster to start, found "
                                        f"{type(exc).__name__}: {_first_line(exc)}") from None
        with cluster, Client(cluster, set_as_default=False) as client:
            yield client


def _probe(address: str, timeout: float) -> None:
    """Connect and shake hands within ``timeout`` seconds, or raise TimeoutError/OSError.

    Dask's own connect bounds the TCP connection but not the handshake that follows, so a
    port that accepts and never answers would hang ``Client`` forever.
    """
    import asyncio

    from distributed.comm import connect
    from distributed.security import Security

    async def shake() -> None:
        comm = await asyncio.wait_for(connect(address, timeout=timeout, **Security().get_connection_args("client")),
                                      timeout)
        await comm.close()

    asyncio.run(shake())


def _temporary_security() -> Any:
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError:
        raise UsageError("--workers: expected the cryptography package for the local cluster's TLS "
                         "(pip install 'shotwatch[dask]'), found none") from None


def reduce_state(client: Client, plan: Plan, *, progress: bool) -> SummaryState | None:
    """The plan's summary state, reduced by the cluster's workers (None: no shots at all)."""
    token = uuid.uuid4().hex
    tasks = make_tasks(plan, workers=_workers(client), token=token)
    if not tasks:
        return None
    leaves = client.map(reduce_task, tasks, key=[f"shotwatch-reduce-{token}-{i}" for i in range(len(tasks))])
    names = (f"shotwatch-merge-{token}-{i}" for i in itertools.count())
    root = tree(leaves, lambda a, b: client.submit(merge_states, a, b, key=next(names)))
    with _failures():
        bar = _Bar(tasks, enabled=progress)
        from distributed import as_completed

        index = {f.key: i for i, f in enumerate(leaves)}
        for future in as_completed(leaves, loop=client.loop):
            if future.status == "error":
                future.result()  # raises the task's own error (a damaged recording: exit 1)
            bar.done(index[future.key])
        bar.close()
        state: SummaryState = root.result()
    return state


def per_shot_rows(client: Client, plan: Plan, *, progress: bool) -> Iterator[str]:
    """The plan's ``--per-shot`` rows, header aside, each task's in order.

    At most two tasks per worker are in flight, so the rows waiting to be written stay a
    few ranges' worth however slowly the output drains.
    """
    token = uuid.uuid4().hex
    workers = _workers(client)
    tasks = make_tasks(plan, workers=workers, token=token)
    ahead = 2 * workers
    futures: deque[Any] = deque()
    bar = _Bar(tasks, enabled=progress)
    with _failures():
        for i in range(len(tasks)):
            for j in range(len(futures) + i, min(i + ahead, len(tasks))):
                futures.append(client.submit(per_shot_task, tasks[j], key=f"shotwatch-per-shot-{token}-{j}"))
            rows: str = futures.popleft().result()  # dropped once read: the cluster frees its rows
            bar.done(i)
            yield rows
    bar.close()


def _workers(client: Client) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


@contextlib.contextmanager
def _failures() -> Iterator[None]:
    """Dask's failures as one line: a task whose workers kept dying, a lost scheduler."""
    from distributed import KilledWorker

    try:
        yield
    except KilledWorker as exc:
        raise ShotwatchRuntimeError(f"reduce: expected Dask workers to finish a task, found each worker that ran it "
                                    f"killed ({_first_line(exc)})") from None
    except (OSError, TimeoutError) as exc:
        raise ShotwatchRuntimeError(f"reduce: expected the Dask scheduler to stay reachable, found "
                                    f"{type(exc).__name__}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _Bar:
    """A progress bar on stderr (a terminal only): shots and tasks done, seconds so far."""

    def __init__(self, tasks: list[Task], *, enabled: bool) -> None:
        self._shots = [t.shots for t in tasks]
        self._total = max(1, sum(self._shots))
        self._done: set[int] = set()
        self._enabled = enabled
        self._t0 = time.monotonic()
        self._drawn = 0.0
        self._draw(force=True)

    def done(self, index: int) -> None:
        self._done.add(index)
        self._draw(force=len(self._done) == len(self._shots))

    def close(self) -> None:
        if self._enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._enabled = False

    def _draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self._enabled or (not force and now - self._drawn < 0.1):
            return
        self._drawn = now
        shots = sum(self._shots[i] for i in self._done)
        filled = 30 * shots // self._total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {100 * shots // self._total:3d} % "
                         f"{shots:,}/{self._total:,} shots, {len(self._done)}/{len(self._shots)} tasks, "
                         f"{now - self._t0:.1f} s")
        sys.stderr.flush()

