"""A worker rank of ``record --mpi``: reads its share, cuts ROIs, sends rank 0 the cutouts.

What a worker does, in order (rank 0's side is ``mpi_rank0``):

1. waits for ``open`` (the stream's epoch), opens its share of the source (``mpi_share``) and
   answers ``hello`` (what the source offers) or ``failed`` (the one-line error);
2. waits for ``start`` (the ROIs, where ``--append`` continues), then loops: read a block,
   cut the active ROI versions out of its frames (``cut.cut_block``, as one process would),
   add its frames to the running image, send the block (cutouts, points, and the frames
   rank 0 asked for) with the worker's frontier. At most :data:`CREDIT_BYTES` and
   :data:`CREDIT_SHOTS` of blocks
   are unacknowledged: rank 0 acknowledges a block once merged, so a rank ahead of the others
   waits instead of filling rank 0's memory;
3. on ``hold`` it finishes nothing more, answers ``held`` with the last tag it read, and
   waits for ``change``: the ROI versions active from tag B on, B chosen by rank 0 after
   every rank's last tag. Shots before B are cut with the old versions, from B on with the
   new ones (a block across B is split), so every rank switches at the same tag;
4. on ``stop`` closes the source and answers ``bye``; exits on ``exit``.

Every wait sleeps between polls. A worker that hears nothing from rank 0 (which ticks every
second) for :data:`ORPHAN_AFTER` seconds exits: rank 0 is gone.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from mpi4py import MPI

from ..schemas import Config, RoiVersion, ShotBlock, SourceError
from ..schemas.source_info import SourceInfo
from .cut import cut_block
from .mpi_link import Envelope, Inbox, LinkError, Outbox, block_envelope, nap, versions_from_fields
from .mpi_share import SharedSource, shared_source
from .tuning import READ_TIMEOUT, ROTATE_EVERY, STATUS_EVERY

__all__ = ["CREDIT_SHOTS", "CREDIT_BYTES", "ORPHAN_AFTER", "Worker"]

CREDIT_BYTES = 128 << 20
"""Bytes of blocks a worker may have sent that rank 0 has not merged yet (at least one block):
bounds rank 0's memory, and is deep enough that workers keep working while rank 0 writes a
chunk of the recording (64 MB for 16 ROIs of 128 x 128 float32)."""
CREDIT_SHOTS = 1024
"""Shots a worker may have sent that rank 0 has not merged yet (at least one block): an ROI
edit waits for rank 0 to record every shot the workers read before it, so a deep backlog
would delay it by seconds (at rate 0, where rank 0 records a few thousand shots a second)."""
ORPHAN_AFTER = 30.0
"""Seconds without a word from rank 0 after which a worker takes it for gone and exits."""
PROGRESS_EVERY = 0.5
"""A worker with nothing to send still says how far it is this often (rank 0's liveness)."""
POLL = 0.002


class _Image:
    """Sums of the frames read since the last send, per detector (the running image's part)."""

    def __init__(self) -> None:
        self.sums: dict[str, tuple[np.ndarray, int]] = {}

    def add(self, block: ShotBlock) -> None:
        for det, frames in block.frames.items():
            if not len(frames.shot):
                continue
            total = frames.pixels.sum(axis=0, dtype=np.float64)
            acc, count = self.sums.get(det, (np.zeros_like(total), 0))
            if acc.shape == total.shape:
                self.sums[det] = (acc + total, count + len(frames.shot))

    def drain(self) -> list[Envelope]:
        out = [Envelope("image", {"detector": det, "count": count}, (total,)) for det, (total, count) in self.sums.items()]
        self.sums = {}
        return out


class Worker:
    """One worker rank (see the module docstring)."""

    def __init__(self, comm: MPI.Comm, config: Config) -> None:
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.config = config
        self.out = Outbox(comm, 0)
        self.inbox = Inbox(comm, 0)
        self.source: SharedSource | None = None
        self.info: SourceInfo | None = None
        self.active: dict[str, RoiVersion] = {}
        self.pending: tuple[int, dict[str, RoiVersion]] | None = None  # (boundary tag, versions from it)
        self.frames: set[str] | None = set()  # detectors whose frames rank 0 wants (None: all)
        self.unacked: deque[tuple[int, int]] = deque()  # (bytes, shots) of each block sent and not merged yet
        self.last_tag: int | None = None
        self.image = _Image()
        self.heard = time.monotonic()
        self._stopping = False
        self._exit = False
        self._timers = {"status": 0.0, "image": time.monotonic(), "progress": 0.0}

    # --- the life of a worker ----------------------------------------------------------------

    def run(self) -> int:
        """Serve rank 0 until it says ``exit``; the process's exit code."""
        _quiet_signals()
        try:
            env = self._wait_for({"open"})
            if env is not None and self._open(env):
                env = self._wait_for({"start"})
                if env is not None:
                    self._start(env)
                    self._loop()
            self._close()
            while not self._exit:
                self._wait_for(set())
        except _Orphaned:
            print(f"shotwatch: rank {self.rank}: no word from rank 0 for {ORPHAN_AFTER:g} s: exiting",
                  file=sys.stderr)
            return 1
        # Rank 0 said exit after it heard our bye, or took us for dead and stopped listening;
        # sends still in flight then were seen to end MPI_Finalize with an error when given
        # only 1 s, so they get 5.
        self.out.flush(5.0)
        return 0

    def _open(self, env: Envelope) -> bool:
        epoch = env.fields.get("epoch")
        try:
            src = shared_source(self.config, index=self.rank - 1, count=self.size - 1,
                                epoch=float(epoch) if isinstance(epoch, int | float) else time.time())
            src.open()
            self.source, self.info = src, src.describe()
        except (SourceError, ValueError) as exc:
            self.out.send(Envelope("failed", {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}))
            return False
        self.out.send(Envelope("hello", {"info": self.info.model_dump(mode="json"), "pid": os.getpid(),
                                         "host": socket.gethostname(), "reads_everything": src.reads_everything}))
        return True

    def _start(self, env: Envelope) -> None:
        assert self.source is not None
        after = env.fields.get("start_after")
        if isinstance(after, int):
            self.source.start_after(after)
        self._set_active(versions_from_fields(env.fields.get("rois", {})))
        self._want_frames(env.fields.get("frames"))

    def _loop(self) -> None:
        assert self.source is not None
        while not self._stopping:
            self._handle(self.inbox.poll())
            self.out.progress()
            if self._stopping:
                break
            if self._no_credit():
                self._periodic()
                nap(POLL)
                continue
            try:
                block = self.source.read(timeout=READ_TIMEOUT)
            except Exception as exc:  # a source bug: reported, and this rank stops delivering
                self.out.send(Envelope("failed", {"error": f"{type(exc).__name__}: {exc}"[:500]}))
                self._stopping = True
                break
            if block is not None and len(block):
                for part, active in self._split(block):
                    self._send_block(part, active)
                self._learn_detectors(block)
            self._periodic()

    def _close(self) -> None:
        if self.source is not None:
            self.source.close()
        for env in self.image.drain():
            self.out.send(env)
        self._send_status()
        self.out.send(Envelope("bye", {}))

    # --- blocks ----------------------------------------------------------------------------

    def _split(self, block: ShotBlock) -> Iterator[tuple[ShotBlock, dict[str, RoiVersion]]]:
        """The block's shots before the pending boundary (old versions) and from it (new)."""
        if self.pending is None:
            yield block, self.active
            return
        boundary, new = self.pending
        at = int(np.searchsorted(block.tags, boundary))
        if at:
            yield block.slice(0, at), self.active
        if at < len(block):
            self.pending = None
            self._set_active(new)
            yield block.slice(at, len(block)), self.active

    def _send_block(self, block: ShotBlock, active: Mapping[str, RoiVersion]) -> None:
        assert self.source is not None and self.info is not None
        cut = cut_block(block, active, self.info.detectors)
        self.image.add(cut)
        wanted = {d: f for d, f in cut.frames.items() if self.frames is None or d in self.frames}
        self.last_tag = int(block.tags[-1])
        frontier = max(self.last_tag, self.source.frontier or self.last_tag)
        env = block_envelope(cut.with_(frames=wanted), {"frontier": frontier})
        self.out.send(env)
        self.unacked.append((env.nbytes, len(block)))
        self._timers["progress"] = time.monotonic()

    def _no_credit(self) -> bool:
        """Rank 0 has enough of this rank's blocks waiting: read no more for now."""
        return (sum(n for n, _ in self.unacked) >= CREDIT_BYTES
                or sum(shots for _, shots in self.unacked) >= CREDIT_SHOTS)

    def _learn_detectors(self, block: ShotBlock) -> None:
        """A detector appeared mid-run (FACILITY.md): tell rank 0 what the source says now."""
        assert self.source is not None and self.info is not None
        seen = {*block.frames, *(c.detector for c in block.cutouts.values() if c.detector)}
        if seen - set(self.info.detectors):
            self.info = self.source.describe()
            self.out.send(Envelope("info", {"info": self.info.model_dump(mode="json")}))

    # --- rank 0's messages ---------------------------------------------------------------------

    def _handle(self, envs: list[Envelope]) -> None:
        for env in envs:
            self.heard = time.monotonic()
            f = env.fields
            if env.kind == "ack":
                self._acked(f.get("blocks"))
            elif env.kind == "hold":
                self._hold(env)
            elif env.kind == "rois":
                self._set_active(versions_from_fields(f.get("rois", {})))
            elif env.kind == "frames":
                self._want_frames(f.get("detectors"))
            elif env.kind == "stop":
                self._stopping = True
            elif env.kind == "exit":
                self._stopping = self._exit = True

    def _acked(self, blocks: Any) -> None:
        for _ in range(blocks if isinstance(blocks, int) else 0):
            if self.unacked:
                self.unacked.popleft()

    def _hold(self, env: Envelope) -> None:
        """Answer with the last tag read, then wait for the boundary (reading nothing)."""
        self.out.send(Envelope("held", {"id": env.fields.get("id"), "last": self.last_tag,
                                        "frontier": self.source.frontier if self.source else None}))
        change = self._wait_for({"change"})
        if change is None:
            return
        boundary = change.fields.get("boundary")
        new = versions_from_fields(change.fields.get("rois", {}))
        if not isinstance(boundary, int):
            raise LinkError(f"change: expected an integer boundary tag, found {boundary!r}")
        self.pending = (boundary, new)
        assert self.source is not None
        both = {**self.active, **new}  # both sides of the boundary, until it passes
        self.source.set_rois(rois={k: v.roi for k, v in both.items()})

    def _set_active(self, versions: dict[str, RoiVersion]) -> None:
        self.active = versions
        if self.source is not None:
            self.source.set_rois(rois={k: v.roi for k, v in versions.items()})

    def _want_frames(self, detectors: Any) -> None:
        self.frames = None if detectors == "all" else {d for d in detectors or [] if isinstance(d, str)}

    def _wait_for(self, kinds: set[str]) -> Envelope | None:
        """Poll (sleeping) until a message of ``kinds`` comes; None on stop or exit."""
        while True:
            for env in self.inbox.poll():
                self.heard = time.monotonic()
                if env.kind in kinds:
                    return env
                if env.kind in ("stop", "exit"):
                    self._stopping = True
                    self._exit = self._exit or env.kind == "exit"
                    return None
                if env.kind == "ack":
                    self._acked(env.fields.get("blocks"))
            self.out.progress()
            if time.monotonic() - self.heard > ORPHAN_AFTER:
                raise _Orphaned
            nap(POLL if self.source is not None else 0.01)

    # --- what rank 0 hears besides blocks -------------------------------------------------------

    def _periodic(self) -> None:
        now = time.monotonic()
        if now - self.heard > ORPHAN_AFTER:
            raise _Orphaned
        if now - self._timers["image"] >= ROTATE_EVERY:
            for env in self.image.drain():
                self.out.send(env)
            self._timers["image"] = now
        if now - self._timers["status"] >= STATUS_EVERY:
            self._send_status()
            self._timers["status"] = now
        if now - self._timers["progress"] >= PROGRESS_EVERY:
            frontier = self.source.frontier if self.source else None
            self.out.send(Envelope("progress", {"frontier": frontier}))
            self._timers["progress"] = now

    def _send_status(self) -> None:
        if self.source is None:
            return
        s = self.source.status()
        self.out.send(Envelope("status", {"state": s.state, "missing": s.missing, "counters": s.counters,
                                          "not_in_stream": s.not_in_stream, "notices": self.source.notices()}))


class _Orphaned(Exception):
    """Rank 0 said nothing for too long."""


def _quiet_signals() -> None:
    """Rank 0 decides when a worker stops: Ctrl-C (mpiexec passes it on to every rank) and
    SIGTERM reach rank 0 too, which stops cleanly and then tells the workers. MPICH's
    process manager sends SIGUSR1 to every rank when one dies (``-disable-auto-cleanup``):
    its default action would kill this rank too."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
