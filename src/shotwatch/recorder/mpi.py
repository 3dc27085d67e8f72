"""``mpirun -n N shotwatch record --mpi``: the recorder over N MPI ranks (DESIGN.md, Scale).

Rank 0 owns the recording, the network service (consoles attach as usual) and the merge
(:class:`~shotwatch.recorder.mpi_recorder.MpiRecorder`); ranks 1 to N-1 each read a share of
the source, cut the ROIs and send rank 0 the cutouts and points
(:class:`~shotwatch.recorder.mpi_worker.Worker`). With one rank it is the one-process
recorder. The recording equals the one-process recording of the same source.

MPICH's process manager kills every rank when one dies, unless started with
``-disable-auto-cleanup``; then it sends the others SIGUSR1, which rank 0 takes as a hint to
look for the dead rank (and which would otherwise kill rank 0 too).

Messages are buffers only (``mpi_link``); the lower-case pickling calls of mpi4py are never
used. Only this package's ``mpi*`` modules import mpi4py, and only when ``--mpi`` is given.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mpi4py

mpi4py.rc.thread_level = "serialized"  # MPI is called by one thread at a time (the acquire loop's)

from mpi4py import MPI  # noqa: E402  (initialises MPI, after the settings above)

from ..schemas import Config  # noqa: E402
from .acquire import Recorder  # noqa: E402
from .mpi_rank0 import RankSource, dead_after  # noqa: E402
from .mpi_recorder import MpiRecorder  # noqa: E402
from .mpi_worker import Worker  # noqa: E402

__all__ = ["MpiSession", "start"]


@dataclass
class MpiSession:
    """This process's place in the MPI job."""

    comm: MPI.Comm
    rank: int
    size: int
    ranks: RankSource | None = field(default=None)
    signalled: bool = False
    """The process manager reported a failed rank (SIGUSR1) before rank 0's source existed."""

    @property
    def worker(self) -> bool:
        return self.rank > 0

    def serve(self, config: Config) -> int:
        """A worker rank's whole life; its exit code."""
        return Worker(self.comm, config).run()

    def recorder_factory(self) -> Callable[..., Recorder]:
        """Rank 0's recorder: over the worker ranks, or the one-process recorder with one rank."""
        if self.size == 1:
            return Recorder

        def make(config: Config, **kwargs: Any) -> Recorder:
            self.ranks = RankSource(self.comm, dead_after=dead_after())
            self.ranks.signalled = self.signalled
            return MpiRecorder(config, ranks=self.ranks, **kwargs)

        return make

    def finish(self) -> None:
        """Rank 0, last: tell every worker to exit (also after an error that ends rank 0)."""
        if self.rank == 0 and self.size > 1:
            ranks = self.ranks or RankSource(self.comm)
            ranks.finish()
        # From here on a failed rank changes nothing; and Python's exit resets a Python-level
        # handler to the default action, under which a late SIGUSR1 would kill this rank.
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)

    def _failed_rank(self, signum: int, frame: object) -> None:
        self.signalled = True
        if self.ranks is not None:
            self.ranks.signalled = True


def start() -> MpiSession:
    """Join the MPI job (a private communicator for shotwatch's messages).

    SIGUSR1 (a failed rank, from MPICH's process manager) is caught from here on: its default
    action would end this rank too.
    """
    comm = MPI.COMM_WORLD.Dup()
    session = MpiSession(comm, comm.Get_rank(), comm.Get_size())
    signal.signal(signal.SIGUSR1, session._failed_rank if session.rank == 0 else signal.SIG_IGN)
    return session
