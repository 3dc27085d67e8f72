"""The SACLA source's array detectors: olpy readers, what this run's stream holds, their info.

Shared between the poller thread (which opens readers and reads frames) and ``describe()``
(any thread): every field is read or written under :attr:`Detectors.lock`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from types import ModuleType

import numpy as np

from ..schemas.source_info import DetectorInfo
from ._sacla_api import Notices
from ._sacla_read import DetectorHandle, detector_info, open_handle, probe

__all__ = ["Detectors"]

_CHECK_EVERY = 1.0  # s between looks at read_detidlist while a wanted detector is missing


class Detectors:
    """Readers of the wanted detectors, this run's detector list and what is known of each.

    Args:
        configured: detectors of the configuration's ROIs.
        notes: where "not in stream" / "now in stream" notices go.
    """

    def __init__(self, configured: Iterable[str], notes: Notices) -> None:
        self.lock = threading.Lock()
        self._notes = notes
        self._configured = set(configured)
        self._extra: set[str] = set()
        self.handles: dict[str, DetectorHandle] = {}
        self.info: dict[str, DetectorInfo] = {}
        self.stream: tuple[str, ...] = ()
        self.not_in_stream: list[str] = []
        self.probed = False  # every detector of this run looked at once (for describe)
        self._next_check = 0.0

    def wanted(self) -> set[str]:
        return self._configured | self._extra

    def want_also(self, dets: Iterable[str]) -> None:
        """Detectors of ROIs set later (their frames are delivered too); looked for at once."""
        with self.lock:
            self._extra = set(dets)
            self._next_check = 0.0

    def due(self, *, force: bool = False) -> bool:
        """Whether the run's detector list should be read now (a wanted one has no reader)."""
        with self.lock:
            if not force and (time.monotonic() < self._next_check or self.wanted() <= set(self.handles)):
                return False
            self._next_check = time.monotonic() + _CHECK_EVERY
            return True

    def update(self, stream: Sequence[str], ol: ModuleType) -> None:
        """Open readers for the wanted detectors in ``stream``; note those it lacks."""
        missing = []
        for det in sorted(self.wanted()):
            handle = self.handles.get(det) or (open_handle(ol, det) if det in stream else None)
            with self.lock:
                if handle is None or det not in stream:
                    self.handles.pop(det, None)
                    missing.append(det)
                else:
                    self.handles[det] = handle
        with self.lock:
            self.stream = tuple(stream)
            for det in missing:
                if det not in self.not_in_stream:
                    hint = ""
                    if any(s.startswith(det + "-") for s in stream):
                        hint = "; an octal MPCCD is 8 sensors: name one, e.g. " + det + "-1"
                    self._notes.add(f"{det}: not in stream (available: {', '.join(stream) or 'none'}){hint}")
            for det in self.not_in_stream:
                if det not in missing and det in self.handles:
                    self._notes.add(f"{det}: now in stream")
            self.not_in_stream = missing

    def probe_all(self, ol: ModuleType, recent: Sequence[int]) -> None:
        """Read one recent frame of every detector in the stream, for describe()."""
        for det in self.stream:
            handle = self.handles.get(det) or open_handle(ol, det)
            if handle is not None and probe(handle, recent):
                self.note_info(handle)
        self.probed = True

    def note_info(self, handle: DetectorHandle) -> None:
        """Keep ``handle``'s shape, dtype and eV/ADU, once a frame of it was read."""
        if handle.det in self.info:
            return
        info = detector_info(handle)
        if info is not None:
            with self.lock:
                self.info[handle.det] = info

    def new_run(self) -> None:
        """A new run: look at every detector again (gains and shapes may change)."""
        with self.lock:
            self.probed = False
            self.info.clear()
            for handle in self.handles.values():
                handle.info = None

    def reading(self) -> list[DetectorHandle]:
        """The readers whose frames go into blocks."""
        with self.lock:
            wanted = self.wanted()
            return [h for d, h in self.handles.items() if d in wanted]

    def bytes_per_shot(self) -> int:
        """Full-frame bytes of one shot over the detectors read (2 MiB for one not yet seen)."""
        with self.lock:
            infos = [self.info.get(h.det) for h in self.handles.values() if h.det in self.wanted()]
        return sum(int(np.prod(i.shape)) * np.dtype(i.dtype).itemsize if i else 2 << 20 for i in infos)

    def described(self) -> tuple[dict[str, DetectorInfo], list[str]]:
        """(detectors of this run with their info, those not probed yet)."""
        with self.lock:
            return ({d: self.info[d] for d in self.stream if d in self.info},
                    [d for d in self.stream if d not in self.info])
