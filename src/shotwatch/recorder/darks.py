"""The recorder's darks: the dark versions it knows, the dark file it starts from, darks it takes.

A dark applies to shots through the analysis version that names it (``calibration.dark =
{"<det>": k}``, INTERFACE.md): the dark file of the configuration becomes each of its
detectors' next dark version at start (copied into the recording, so ``reduce`` and
``replay`` never need the file), and a dark taken while recording (the ``dark`` request,
``D`` in a console) the next one after that. :class:`DarkBook` holds every version's frame so
that a console can fetch the ones it needs (``get_dark``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..recording import RecordingReader
from ..recording.analysis_config import recording_analysis
from ..recording.darkfile import read_dark_file
from ..reducers.pixels import PixelMoments, PixelReducer
from ..schemas import Config, ConfigError, DarkFrame, DarkVersion, ReplaySource, ShotBlock, UsageError
from ..schemas.source_info import DetectorInfo, SourceInfo

__all__ = [
    "NO_FRAMES_SHOTS", "DarkBook", "DarkRefused", "DarkStart", "DarkTake", "check_dark_file", "configured_darks", "configured_detectors",
    "dark_refs", "renumbered", "same_dark", "start_darks", "with_dark_refs",
]

NO_FRAMES_SHOTS = 1000
"""A dark gives up on a detector that delivered no full frame in this many shots: its source
delivers cutouts only (the simulator at ``rate = 0`` with ``frames_every = 0``), or none."""


class DarkRefused(Exception):
    """A dark was refused or abandoned; the message is the one line for the operator."""


class DarkBook:
    """Every dark version the recorder knows, per detector, numbered from 1 (as recorded)."""

    def __init__(self) -> None:
        self._versions: dict[str, dict[int, tuple[DarkVersion, DarkFrame]]] = {}
        self._reserved: dict[str, int] = {}  # versions a recording holds whose frames are not loaded

    def reserve(self, detector: str, up_to: int) -> None:
        """Versions 1 .. ``up_to`` of ``detector`` exist already (numbering continues after them)."""
        self._reserved[detector] = max(self._reserved.get(detector, 0), up_to)

    def add(self, detector: str, frame: DarkFrame, *, version: int | None = None,
            at: float | None = None) -> DarkVersion:
        """``frame`` as ``detector``'s version ``version`` (default: the next)."""
        held = self._versions.setdefault(detector, {})
        k = version if version is not None else self.next_version(detector)
        meta = DarkVersion(detector=detector, version=k, frames=frame.frames, first_tag=frame.first_tag,
                           last_tag=frame.last_tag, time=time.time() if at is None else at)
        held[k] = (meta, frame)
        return meta

    def next_version(self, detector: str) -> int:
        return max(max(self._versions.get(detector, {}), default=0), self._reserved.get(detector, 0)) + 1

    def get(self, detector: str, version: int) -> tuple[DarkVersion, DarkFrame] | None:
        return self._versions.get(detector, {}).get(version)

    def named(self, refs: Mapping[str, int]) -> dict[str, DarkFrame]:
        """detector -> frame of the versions ``refs`` names (a ``calibration.dark`` table).

        Raises:
            KeyError: a version this book does not hold.
        """
        out = {}
        for det, k in refs.items():
            got = self.get(det, k)
            if got is None:
                raise KeyError(f"calibration.dark: expected a dark version of {det} the recorder holds "
                               f"({', '.join(map(str, sorted(self._versions.get(det, {})))) or 'none'}), found {k}")
            out[det] = got[1]
        return out

    def held_versions(self) -> dict[str, list[int]]:
        """detector -> the versions whose frames this book holds (those an analysis may name)."""
        return {det: sorted(vs) for det, vs in self._versions.items()}

    def held(self) -> list[str]:
        """``<det> v<k>`` of every version whose frame this book holds."""
        return [f"{det} v{k}" for det, vs in sorted(self._versions.items()) for k in sorted(vs)]

    def versions(self, refs: Mapping[str, int]) -> list[DarkVersion]:
        """The metadata of the versions ``refs`` names that this book holds (``Hello.darks``)."""
        return [got[0] for det, k in refs.items() if (got := self.get(det, k)) is not None]


@dataclass(frozen=True)
class DarkStart:
    """The darks in force at start: the book, ``calibration.dark`` as the recording will name
    it, and the frames to write into the recording as new dark versions (numbered as ``refs`` says)."""

    book: DarkBook
    refs: dict[str, int]
    new: dict[str, DarkFrame]


def start_darks(config: Config, info: SourceInfo, *, appending: RecordingReader | None, recording: bool,
                origin: str) -> DarkStart:
    """What ``calibration.dark`` means for a recorder starting now (see :func:`configured_darks`).

    A new recording holds each dark as its detector's version 1. One appended to keeps its
    versions: a dark file equal to the version its newest analysis names is that version,
    another becomes the next one. Without a recording, dark versions named keep their
    numbers (a replay) and a dark file's frames are versions 1.

    Raises:
        ConfigError: ``<origin>: calibration.dark: …`` (see :func:`configured_darks`).
    """
    replayed = RecordingReader(config.source.path) if isinstance(config.source, ReplaySource) else None
    try:
        frames = configured_darks(config, info, appending or replayed)
    except UsageError as exc:  # a bad dark file, or a dark of the wrong detector: name the key
        text = str(exc) if str(exc).startswith("calibration.dark") else f"calibration.dark: {exc}"
        raise ConfigError(f"{origin}: {text}") from None
    book = DarkBook()
    named = dark_refs(config)
    if appending is not None:
        for det, versions in appending.darks().items():
            book.reserve(det, max(v.version for v in versions))
        _, recorded_cfg = recording_analysis(appending)
        recorded = dark_refs(recorded_cfg)
        refs, new = {}, {}
        for det, frame in frames.items():
            k = named.get(det, recorded.get(det))
            if k is not None and (det in named or same_dark(appending.dark(det, k), frame)):
                refs[det] = book.add(det, frame, version=k).version
            else:
                refs[det], new[det] = book.add(det, frame).version, frame
        return DarkStart(book, refs, new)
    if named and not recording:
        return DarkStart(_book({det: (k, frames[det]) for det, k in named.items()}), named, {})
    return renumbered(_book({det: (1, f) for det, f in frames.items()}), {det: 1 for det in frames},
                      recording=recording)


def renumbered(book: DarkBook, refs: Mapping[str, int], *, recording: bool) -> DarkStart:
    """For a new recording: the darks ``refs`` names become versions 1 (all written into it)."""
    frames = book.named(refs)
    return DarkStart(_book({det: (1, f) for det, f in frames.items()}), {det: 1 for det in frames},
                     dict(frames) if recording else {})


def _book(frames: Mapping[str, tuple[int, DarkFrame]]) -> DarkBook:
    book = DarkBook()
    for det, (k, frame) in frames.items():
        book.add(det, frame, version=k)
    return book


def check_dark_file(frames: Mapping[str, DarkFrame], *, path: str, detectors: Mapping[str, DetectorInfo],
                    configured: list[str]) -> None:
    """ConfigError unless every detector of the dark file ``path`` is one of ``configured``
    (the detectors the configuration's ROIs name) with the shape the source gives it."""
    for det, frame in frames.items():
        if det not in configured:
            raise ConfigError(f"calibration.dark: expected a dark of the configuration's detectors "
                              f"({', '.join(configured) or 'none'}), found {det!r} in {Path(path).name}")
        info = detectors.get(det)
        if info is not None and tuple(frame.mean.shape) != tuple(info.shape):
            raise ConfigError(f"calibration.dark: expected a dark of {det}'s {info.shape[0]} x {info.shape[1]} "
                              f"pixels, found {frame.mean.shape[0]} x {frame.mean.shape[1]} in {Path(path).name}")


Bool = npt.NDArray[np.bool_]


def configured_detectors(config: Config) -> list[str]:
    """The detectors the configuration's ROIs name, in order."""
    return list(dict.fromkeys(r.detector for r in config.roi))


def dark_refs(config: Config) -> dict[str, int]:
    """``calibration.dark`` when it names dark versions, else ``{}``."""
    dark = config.calibration.dark
    return dict(dark) if isinstance(dark, dict) else {}


def with_dark_refs(config: Config, refs: Mapping[str, int]) -> Config:
    """``config`` with ``calibration.dark`` naming the dark versions ``refs`` (None when empty)."""
    cal = config.calibration.model_copy(update={"dark": dict(refs) or None})
    return config.model_copy(update={"calibration": cal})


def configured_darks(config: Config, info: SourceInfo, recording: RecordingReader | None) -> dict[str, DarkFrame]:
    """detector -> the frame ``calibration.dark`` stands for: a dark file's (checked: each of
    its detectors one the ROIs name, of the source's shape), or dark versions of ``recording``
    (the one appended to, or the one a replay source plays).

    Raises:
        RecordingError: the dark file is not one (or of an unknown version); a version the
            recording does not hold.
        ConfigError: a detector of the file not in the configuration, or of another shape;
            dark versions named with no recording to hold them.
    """
    dark = config.calibration.dark
    if not dark:
        return {}
    if isinstance(dark, str):
        frames = read_dark_file(dark)
        check_dark_file(frames, path=dark, detectors=info.detectors, configured=configured_detectors(config))
        return frames
    if recording is None:
        raise ConfigError(f"calibration.dark: expected a dark file (a path), found dark versions {dark} "
                          "with no recording to hold them")
    return {det: recording.dark(det, k) for det, k in dark.items()}


def same_dark(a: DarkFrame, b: DarkFrame) -> bool:
    """Equal frames (NaN where NaN), frame counts and tags: no new version needed."""
    return ((a.frames, a.first_tag, a.last_tag) == (b.frames, b.first_tag, b.last_tag)
            and np.array_equal(a.mean, b.mean, equal_nan=True) and np.array_equal(a.std, b.std, equal_nan=True))


@dataclass
class DarkTake:
    """A dark being taken: the next ``n`` full frames of ``detector`` averaged per pixel.

    Unless ``force``, a frame of a shot where the beam veto ``beam`` passes (beam on) ends
    it: a dark with X-rays in it would be subtracted from every later shot.

    Attributes:
        future: resolved by the caller with the outcome.
        shots: shots seen since it started (to give up on a detector without frames).
    """

    detector: str
    n: int
    force: bool
    beam: str | None
    future: Future[DarkFrame]
    state: PixelMoments = field(default_factory=PixelMoments.empty)
    shots: int = 0

    def add(self, block: ShotBlock, beam_on: Bool | None) -> DarkFrame | str | None:
        """Take ``block``'s frames: the dark once ``n`` frames are in, a refusal, or None (more to come).

        Args:
            beam_on: per shot of ``block``, true where the veto ``beam`` passes (None: not known).
        """
        self.shots += len(block)
        frames = block.frames.get(self.detector)
        if frames is not None and len(frames.shot) and not self.force and beam_on is not None:
            on = np.asarray(beam_on, bool)[np.asarray(frames.shot, np.int64)[:self.n - self.state.frames]]
            if on.any():
                tag = int(block.tags[int(frames.shot[int(np.argmax(on))])])
                return (f"dark: beam on (veto {self.beam} passes): expected the beam off for a dark of {self.detector}, "
                        f"found it on at tag {tag} after {self.state.frames} of {self.n} frames (close the shutter, "
                        "or force it)")
        reducer = PixelReducer(self.detector, limit=self.n)
        self.state = reducer.update(self.state, block)
        if reducer.done(self.state):
            return reducer.result(self.state)
        if not self.state.frames and self.shots >= NO_FRAMES_SHOTS:
            return (f"dark of {self.detector}: expected full frames of {self.detector} from the source, found none "
                    f"in {self.shots} shots (it delivers cutouts only)")
        return None

    def ended(self) -> str:
        """The refusal when the source ends before ``n`` frames came."""
        return (f"dark of {self.detector}: expected {self.n} full frames of {self.detector}, found "
                f"{self.state.frames} before the source ended")
