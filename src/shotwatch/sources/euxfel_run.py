"""A European XFEL run directory as a source (``source.kind = "euxfel-run"``, FACILITY.md).

The run is read with extra-data (European XFEL's own reader, the optional extra
``shotwatch[euxfel]``), train by train, and each train goes through the same mapping as a train
from the karabo bridge (:class:`~shotwatch.sources._karabo_shots.TrainShots`), so a past run
gives the same shots, tags and values as the same run served over the bridge, and goes through
the same recorder and reducers as live data. ``source.speed`` paces it: 1 = 10 trains/s
(European XFEL's rate), 0 = as fast as possible. At the end of the run the state is "ended".
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..schemas import Config, EuxfelRunSource, Roi, ShotBlock, SourceError
from ..schemas.source_info import SourceInfo
from ._karabo_shots import TrainShots, check_config
from ._karabo_train import IMAGE_KEYS
from .base import Source, SourceStatus

__all__ = ["EuxfelRun", "make"]

TRAINS_PER_S = 10.0
_PER_FRAME = ("pulseId", "cellId", "trainId")


def make(config: Config, *, frames_every: int | None = None) -> EuxfelRun:
    """The source factory's entry point (``frames_every`` unused: the recorder decimates)."""
    del frames_every
    cfg = config.source
    if not isinstance(cfg, EuxfelRunSource):
        raise SourceError(f"source.kind: expected \"euxfel-run\", found {cfg.kind!r}")
    return EuxfelRun(cfg, reserved=check_config(config))


class EuxfelRun(Source):
    """Shots from a run directory, one train per block, paced by ``source.speed``."""

    def __init__(self, cfg: EuxfelRunSource, *, reserved: list[str] | None = None) -> None:
        self.cfg = cfg
        self.shots = TrainShots(cfg, reserved=reserved or [])
        self._trains: Iterator[tuple[int, dict[str, Any]]] | None = None
        self._pending: tuple[int, dict[str, Any]] | None = None
        self._run: int | None = None
        self._ntrains = 0
        self._t0 = 0.0
        self._sent = 0

    # --- Source protocol -------------------------------------------------------------------

    def open(self) -> None:
        """Open the run, select the sources and keys needed, learn the detectors' layouts.

        Raises:
            SourceError: extra-data missing, no readable run at ``source.path``, or a
                detector's layout that cannot be told.
        """
        if self._trains is not None:
            return
        try:
            from extra_data import RunDirectory
        except ImportError:
            raise SourceError("source.kind = \"euxfel-run\": expected the extra-data package, found it missing "
                              "(pip install 'shotwatch[euxfel]')") from None
        path = Path(self.cfg.path)
        if not path.is_dir():
            raise SourceError(f"source.path: expected a European XFEL run directory, found no directory {str(path)!r}")
        try:
            run = RunDirectory(str(path))
        except Exception as exc:  # extra-data's own error for no or unreadable files
            raise SourceError(f"source.path: expected a European XFEL run directory (HDF5 files) at {str(path)!r}, "
                              f"found {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        selection = self._selection(run)
        self._run = _run_number(run, path)
        self._ntrains = len(run.train_ids)
        data = run.select(selection) if selection else run.select([])
        self._trains = iter(data.trains())
        self._pending = next(self._trains, None)
        if self._pending is not None:
            self.shots.learn(self._pending[1], strict=True)
            self.shots.absent(self._pending[1])
        self.shots.status.state = "running"
        self._t0 = time.monotonic()

    def describe(self) -> SourceInfo:
        """The detectors (once seen), the point names, the tag formula and the run's path."""
        attrs = {"path": self.cfg.path, "trains": self._ntrains, "speed": self.cfg.speed, **self.shots.attrs()}
        return SourceInfo(kind="euxfel-run", run=self._run, detectors=self.shots.detector_infos(),
                          points=[*self.shots.points, *self.shots.reserved], attrs=attrs)

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        """Ignored: full frames are delivered and the recorder cuts them."""

    def read(self, *, timeout: float) -> ShotBlock | None:
        """The next train's shots when it is due (``source.speed``), or None within ``timeout``."""
        if self._trains is None:
            self.open()
        deadline = time.monotonic() + max(0.0, timeout)
        while self._pending is not None:
            if self.cfg.speed > 0:
                due = self._t0 + self._sent / (TRAINS_PER_S * self.cfg.speed)
                if due > deadline:
                    time.sleep(max(0.0, deadline - time.monotonic()))
                    return None
                time.sleep(max(0.0, due - time.monotonic()))
            tid, data = self._pending
            self._pending = next(self._trains, None) if self._trains is not None else None
            self._sent += 1
            block = self.shots.block(data, {src: props.get("metadata", {}) for src, props in data.items()})
            if block is not None:
                return block.with_(run=self._run)
            if time.monotonic() >= deadline:
                return None
        self.shots.status.state = "ended"
        return None

    def status(self) -> SourceStatus:
        """A copy of the health counters; "ended" after the last train."""
        s = self.shots.status
        return SourceStatus(s.state, dict(s.missing), dict(s.counters), list(s.not_in_stream))

    def notices(self) -> list[str]:
        """Notices since the last call (drained)."""
        return self.shots.drain()

    def close(self) -> None:
        """Stop reading; idempotent."""
        self._trains, self._pending = iter(()), None

    # --- the run -----------------------------------------------------------------------------

    def _selection(self, run: Any) -> list[tuple[str, str]]:
        """(source, key) pairs to read: the detectors' pixels and per-frame ids, the points."""
        present = set(run.all_sources)
        pairs: list[tuple[str, str]] = []
        for spec in self.shots.dets:
            if spec.source in present:
                keys = set(run[spec.source].keys())
                pairs += [(spec.source, k) for k in IMAGE_KEYS if k in keys]
                pairs += [(spec.source, f"{k.rpartition('.')[0]}.{p}") for k in IMAGE_KEYS if k in keys
                          for p in _PER_FRAME if f"{k.rpartition('.')[0]}.{p}" in keys]
        for src, key in self.shots.points.values():
            if src in present and key in run[src].keys():
                pairs.append((src, key))
        return list(dict.fromkeys(pairs))


def _run_number(run: Any, path: Path) -> int | None:
    """The run number from the files' metadata, else from a directory named like ``r0238``."""
    try:
        number = run.run_metadata().get("runNumber")
        if number is not None:
            return int(number)
    except Exception:  # older file formats carry no run metadata
        pass
    m = re.fullmatch(r"r(\d+)", path.name)
    return int(m[1]) if m else None
