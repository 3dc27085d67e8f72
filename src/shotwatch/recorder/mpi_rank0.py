"""Rank 0's view of the worker ranks: one :class:`~shotwatch.sources.Source`, the merged stream.

The recorder on rank 0 reads :class:`RankSource` like any source: each ``read`` polls the
workers (probe, then receive what has arrived; a sleep between polls, never a blocking
receive), merges their blocks in tag order (``mpi_merge``) and returns what every live rank
has passed. Workers' notices, status counters, detector lists and running-image sums are
gathered here too.

A rank is taken for dead when its process is gone (same host: its pid no longer exists) or
it said nothing for :data:`DEAD_AFTER` seconds (:data:`DEAD_AFTER_SIGNAL` after MPICH's
process manager signalled a failure with SIGUSR1): a notice says so, the status counts it
(``ranks lost``) and the merge stops waiting for it; its share of the stream is lost from
then on, the other ranks' shots keep being recorded.

ROI changes take effect at one tag on every rank (:meth:`RankSource.hold`, :meth:`boundary`,
:meth:`commit`, :meth:`at_boundary`; the recorder's side is ``mpi_recorder``).
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mpi4py import MPI

from ..schemas import Roi, RoiVersion, ShotBlock, SourceError, UsageError, split_roi_key
from ..schemas.source_info import SourceInfo
from ..sources import Source, SourceStatus
from .mpi_link import Envelope, Inbox, LinkError, Outbox, nap, open_block, versions_fields
from .mpi_merge import TagMerge

__all__ = ["DEAD_AFTER", "DEAD_AFTER_SIGNAL", "RankSource", "dead_after"]

DEAD_AFTER = 10.0
"""Seconds of silence after which a rank is taken for dead (workers speak at least every
0.5 s); the environment variable ``SHOTWATCH_MPI_DEAD_AFTER`` overrides it (a hung rank, or a
slow link between hosts)."""
DEAD_AFTER_SIGNAL = 2.0
"""... once the process manager has signalled that some rank failed."""
POLL = 0.003
"""Rank 0's sleep between polls of the workers: ~1 % of a core while idle."""
TICK_EVERY = 1.0
"""Rank 0 tells each worker it is alive this often (workers exit when it goes silent)."""
CHECK_EVERY = 0.25
_NO_TAG = -(1 << 62)


@dataclass
class _Rank:
    rank: int
    inbox: Inbox
    outbox: Outbox
    heard: float = field(default_factory=time.monotonic)
    pid: int | None = None
    host: str | None = None
    alive: bool = True
    hello: bool = False
    bye: bool = False
    reads_everything: bool = False
    status: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Round:
    """One ROI change across the ranks: held, then committed at a boundary tag."""

    id: int
    waiting: set[int]
    last: int
    boundary: int | None = None


class RankSource(Source):
    """The worker ranks' shares merged into one source (see the module docstring).

    Args:
        comm: the communicator (rank 0 is this process).
        epoch: unix time of the stream's first slot, the same on every rank (default: now).
        open_timeout: seconds to wait for every worker's ``hello`` at open.
        dead_after: seconds of silence after which a rank is taken for dead (:func:`dead_after`).
    """

    def __init__(self, comm: MPI.Comm, *, epoch: float | None = None, open_timeout: float = 120.0,
                 dead_after: float = DEAD_AFTER) -> None:
        self.comm = comm
        self.epoch = time.time() if epoch is None else epoch
        self.open_timeout = open_timeout
        self.ranks = {r: _Rank(r, Inbox(comm, r), Outbox(comm, r)) for r in range(1, comm.Get_size())}
        self.merge = TagMerge(self.ranks)
        self.dead_after = dead_after
        self.signalled = False
        """Set (by rank 0's SIGUSR1 handler) when the process manager reports a failed rank."""
        self._host = socket.gethostname()
        self._info: SourceInfo | None = None
        self._failed: str | None = None
        self._versions: dict[str, RoiVersion] = {}
        self._start_after: int | None = None
        self._started = False
        self._ended = False
        self._frames: list[str] | str = []
        self._round: _Round | None = None
        self._rounds = 0
        self._limit: int | None = None
        self._ready: deque[ShotBlock] = deque()  # merged, not yet read (slices of the workers' blocks)
        self._notices: list[str] = []
        self._recent: dict[str, float] = {}
        self._images: list[tuple[str, np.ndarray, int]] = []
        self._counters = {"ranks lost": 0, "shots late (rank merge)": 0}
        self._timers = {"tick": 0.0, "check": 0.0}

    # --- what the recorder asks of rank 0 besides a source ---------------------------------

    @property
    def live(self) -> list[int]:
        """Worker ranks still delivering."""
        return [r for r, w in self.ranks.items() if w.alive]

    def images(self) -> list[tuple[str, np.ndarray, int]]:
        """Running-image sums the workers sent since the last call: (detector, sum, frames)."""
        out, self._images = self._images, []
        return out

    def want_frames(self, detectors: list[str] | str) -> None:
        """Which detectors' full frames the workers send with their blocks ("all": every one)."""
        if detectors != self._frames:
            self._frames = detectors
            if self._started:
                self._send_all(Envelope("frames", {"detectors": detectors}))

    def finish(self) -> None:
        """Tell every worker to exit (the last thing rank 0 does)."""
        for w in self.ranks.values():  # the dead too: one taken for dead may only have been slow
            w.outbox.send(Envelope("exit", {}))
        for w in self.ranks.values():
            if w.alive:
                w.outbox.flush(1.0)

    # --- ROI changes at one tag on every rank ------------------------------------------------

    def hold(self) -> None:
        """Ask every live rank to stop after its current block and say its last tag."""
        if self._round is not None:
            return
        self._rounds += 1
        last = self.merge.last if self.merge.last is not None else _NO_TAG
        self._round = _Round(self._rounds, set(self.live), last)
        self._send_all(Envelope("hold", {"id": self._rounds}))

    def boundary(self) -> int | None:
        """The boundary tag once every live rank is held: after every tag any rank has read."""
        r = self._round
        if r is None or r.waiting or r.boundary is not None:
            return None
        return r.last + 1 if r.last != _NO_TAG else _NO_TAG

    def commit(self, boundary: int, active: Mapping[str, RoiVersion]) -> None:
        """Tell the held ranks: these versions from tag ``boundary`` on; deliver only tags before it."""
        assert self._round is not None
        self._round.boundary = self._limit = boundary
        self._versions = dict(active)
        self._send_all(Envelope("change", {"id": self._round.id, "boundary": boundary,
                                           "rois": versions_fields(active)}))

    def at_boundary(self) -> bool:
        """Every shot before the committed boundary has been delivered."""
        b = self._round.boundary if self._round is not None else None
        if b is None:
            return False
        if self._ready:
            return False
        if b == _NO_TAG:
            return True
        limit = self.merge.limit()
        head = self.merge.next_tag()
        return limit is not None and limit >= b - 1 and (head is None or head >= b)

    def end_round(self) -> None:
        """The change was applied by the recorder: deliver past the boundary again."""
        self._round = None
        self._limit = None

    # --- Source protocol -------------------------------------------------------------------

    def open(self) -> None:
        """Every worker opens its share; SourceError with the first one's error if any fails."""
        if self._info is not None:
            return
        self._send_all(Envelope("open", {"epoch": self.epoch}))
        deadline = time.monotonic() + self.open_timeout
        while any(w.alive and not w.hello for w in self.ranks.values()) and self._failed is None:
            self._poll()
            if time.monotonic() >= deadline:
                silent = [r for r, w in self.ranks.items() if w.alive and not w.hello]
                raise SourceError(f"--mpi: expected every worker rank to open its source within "
                                  f"{self.open_timeout:g} s, found ranks {silent} silent")
            nap(0.01)
        if self._failed is not None:
            raise SourceError(self._failed)
        if self._info is None:
            raise SourceError("--mpi: expected at least one worker rank, found every one gone")

    def describe(self) -> SourceInfo:
        if self._info is None:
            self.open()
        assert self._info is not None
        return self._info

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        """The active versions (``name/vK`` -> rectangle), at once unless part of a change round."""
        versions = {k: RoiVersion(r.name, split_roi_key(k)[1], r.detector, r.x, r.y, 0, 0) for k, r in rois.items()}
        if versions == self._versions:
            return
        self._versions = versions
        if self._started and (self._round is None or self._round.boundary is None):
            self._send_all(Envelope("rois", {"rois": versions_fields(versions)}))

    def start_after(self, tag: int) -> None:
        self._start_after = tag

    def read(self, *, timeout: float) -> ShotBlock | None:
        """The next merged block, or None within ``timeout`` (sleeping between polls)."""
        if not self._started:
            self._start()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self._poll()
            if self._ready:
                return self._ready.popleft()
            merged = self.merge.pop(before=self._limit)
            for rank, n in merged.consumed.items():
                if self.ranks[rank].alive:
                    self.ranks[rank].outbox.send(Envelope("ack", {"blocks": n}))
            self._counters["shots late (rank merge)"] += merged.late
            self._ready.extend(p for p in merged.parts if len(p))
            if self._ready:
                return self._ready.popleft()
            if not self.live:
                self._ended = True
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            nap(min(POLL, left))

    def status(self) -> SourceStatus:
        """The workers' states and counts, added up (taken once where every rank reads everything)."""
        missing: dict[str, int] = {}
        counters: dict[str, int] = {k: v for k, v in self._counters.items() if v}
        states, absent = set(), set()
        for w in self.ranks.values():
            s = w.status
            states.add(s.get("state", "waiting") if w.alive else "gone")
            absent |= set(s.get("not_in_stream", []))
            for into, part in ((missing, s.get("missing", {})), (counters, s.get("counters", {}))):
                for k, v in part.items():
                    into[k] = max(into.get(k, 0), v) if w.reads_everything else into.get(k, 0) + v
        state = "ended" if self._ended else next((s for s in ("running", "disconnected", "waiting", "stopped")
                                                  if s in states), "waiting")
        return SourceStatus(state=state, missing=missing, counters=counters, not_in_stream=sorted(absent))

    def notices(self) -> list[str]:
        out, self._notices = self._notices, []
        return out

    def close(self) -> None:
        """Stop every worker and wait (up to 10 s) for their last words."""
        self._send_all(Envelope("stop", {}))
        deadline = time.monotonic() + 10.0
        while any(w.alive and not w.bye for w in self.ranks.values()) and time.monotonic() < deadline:
            self._poll()
            nap(0.01)

    # --- polling -------------------------------------------------------------------------

    def _start(self) -> None:
        self._started = True
        self._send_all(Envelope("start", {"start_after": self._start_after, "rois": versions_fields(self._versions),
                                          "frames": self._frames}))

    def _send_all(self, env: Envelope) -> None:
        for w in self.ranks.values():
            if w.alive:
                w.outbox.send(env)

    def _poll(self) -> None:
        now = time.monotonic()
        for w in self.ranks.values():
            if not w.alive:
                continue
            try:
                envs = w.inbox.poll()
                for env in envs:
                    w.heard = now
                    self._on(w, env)
            except LinkError as exc:
                self._lose(w, f"sent what rank 0 cannot read ({exc})")
                continue
            w.outbox.progress()
        if now - self._timers["tick"] >= TICK_EVERY:
            self._send_all(Envelope("tick", {}))
            self._timers["tick"] = now
        if now - self._timers["check"] >= CHECK_EVERY or self.signalled:
            self._check_alive(now)
            self._timers["check"] = now

    def _on(self, w: _Rank, env: Envelope) -> None:
        f = env.fields
        if env.kind == "block":
            frontier = f.get("frontier")
            self.merge.push(w.rank, open_block(env), frontier if isinstance(frontier, int) else None)
        elif env.kind == "progress":
            if isinstance(f.get("frontier"), int):
                self.merge.advance(w.rank, f["frontier"])
        elif env.kind == "status":
            self._on_status(w, f)
        elif env.kind == "image":
            self._on_image(env)
        elif env.kind in ("hello", "info"):
            self._on_info(w, env)
        elif env.kind == "held":
            self._on_held(w, f)
        elif env.kind == "failed":
            text = str(f.get("error", "failed"))[:500]
            if self._started:
                self._lose(w, f"failed: {text}")
            else:
                self._failed = self._failed or text
        elif env.kind == "bye":
            w.bye = True

    def _on_info(self, w: _Rank, env: Envelope) -> None:
        try:
            info = SourceInfo.model_validate(env.fields.get("info"))
        except ValueError as exc:
            raise LinkError(f"{env.kind}.info: {str(exc).splitlines()[0]}") from None
        if env.kind == "hello":
            w.hello = True
            pid = env.fields.get("pid")
            w.pid = pid if isinstance(pid, int) else None
            w.host = str(env.fields.get("host", ""))
            w.reads_everything = bool(env.fields.get("reads_everything"))
        if self._info is None:
            self._info = info
        else:  # a detector one rank saw appear is the recorder's to learn
            self._info = self._info.model_copy(update={"detectors": {**self._info.detectors, **info.detectors}})

    def _on_status(self, w: _Rank, f: Mapping[str, Any]) -> None:
        w.status = {k: f.get(k) for k in ("state", "missing", "counters", "not_in_stream")
                    if isinstance(f.get(k), dict | list | str)}
        now = time.monotonic()
        for text in f.get("notices", []) if isinstance(f.get("notices"), list) else []:
            text = str(text)[:1000] if w.reads_everything else f"rank {w.rank}: {str(text)[:1000]}"
            if now - self._recent.get(text, -1e9) > 5.0:  # every rank reading everything says it
                self._notices.append(text)
            self._recent[text] = now

    def _on_image(self, env: Envelope) -> None:
        det, count = env.fields.get("detector"), env.fields.get("count")
        if not (isinstance(det, str) and isinstance(count, int) and count >= 0 and len(env.arrays) == 1
                and env.arrays[0].dtype == np.float64 and env.arrays[0].ndim == 2):
            raise LinkError("image: expected a detector, a frame count and one float64 [H, W] sum")
        self._images.append((det, env.arrays[0], count))

    def _on_held(self, w: _Rank, f: Mapping[str, Any]) -> None:
        r = self._round
        if r is None or f.get("id") != r.id:
            return
        r.waiting.discard(w.rank)
        last = f.get("last")  # the last tag it cut: every later one it reads is at or after the boundary
        if isinstance(last, int):
            r.last = max(r.last, last)

    # --- ranks that die -------------------------------------------------------------------

    def _check_alive(self, now: float) -> None:
        quiet = min(DEAD_AFTER_SIGNAL, self.dead_after) if self.signalled else self.dead_after
        for w in self.ranks.values():
            if not w.alive or w.bye:
                continue
            if w.pid is not None and w.host == self._host and not _pid_exists(w.pid):
                self._lose(w, f"died (pid {w.pid} is gone)")
            elif now - w.heard > quiet:
                self._lose(w, f"said nothing for {now - w.heard:.0f} s")

    def _lose(self, w: _Rank, why: str) -> None:
        w.alive = False
        w.inbox = Inbox(self.comm, w.rank)  # whatever was half received is dropped
        w.outbox.abandon()
        self.merge.drop(w.rank)
        self._counters["ranks lost"] += 1
        if self._round is not None:
            self._round.waiting.discard(w.rank)
        after = f" after tag {self.merge.frontier(w.rank)}" if self.merge.frontier(w.rank) is not None else ""
        self._notices.append(f"rank {w.rank} {why}: its share of the stream is lost{after}; recording goes on "
                             f"with {len(self.live)} of {len(self.ranks)} worker ranks")


def dead_after() -> float:
    """:data:`DEAD_AFTER`, or ``SHOTWATCH_MPI_DEAD_AFTER`` where set (UsageError if not seconds > 0)."""
    raw = os.environ.get("SHOTWATCH_MPI_DEAD_AFTER")
    if raw is None:
        return DEAD_AFTER
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise UsageError(f"SHOTWATCH_MPI_DEAD_AFTER: expected seconds > 0, found {raw[:40]!r}")
    return value


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
