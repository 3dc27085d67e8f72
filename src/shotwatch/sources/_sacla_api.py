"""Helpers of the SACLA source: lazy import of dbpy/olpy, name suggestions, throttled notices."""

from __future__ import annotations

import difflib
import importlib
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType

from ..schemas import Config, PointPumpProbe, SaclaSource, ShotwatchRuntimeError, SimSource, SourceError

__all__ = ["DbDown", "Notices", "close_matches", "equipment_list", "import_api", "point_origins", "unknown_points_error"]



class DbDown(ConnectionError):
    """A dbpy call the poller needs failed: the database is (for now) unreachable."""


_HOW = "on a SACLA analysis server add their directory to PYTHONPATH or set source.api_path"


def import_api(api_path: str | None) -> tuple[ModuleType, ModuleType]:
    """Import ``dbpy`` and ``olpy``, from ``api_path`` first if given.

    Raises:
        SourceError: one line saying which module is missing and how to point at it.
    """
    where = "PYTHONPATH"
    if api_path:
        path = Path(api_path).expanduser().resolve()
        if not path.is_dir():
            raise SourceError(f"source.api_path: expected a directory holding dbpy and olpy, "
                              f"found no directory {str(path)!r}; {_HOW}")
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
        where = f"source.api_path {str(path)!r} or PYTHONPATH"
    modules = []
    for name in ("dbpy", "olpy"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            raise SourceError(f"source: expected SACLA's {name} module, found none importable from "
                              f"{where} ({exc}); {_HOW}") from None
    return modules[0], modules[1]


def equipment_list(db: ModuleType, *, tries: int = 4) -> tuple[str, ...]:
    """``dbpy.read_equiplist()``, retried with back-off (0.25, 0.5, 1 s).

    Raises:
        ShotwatchRuntimeError: the database did not answer in ``tries`` tries.
    """
    for attempt in range(tries):
        try:
            return tuple(str(n) for n in db.read_equiplist())
        except Exception as exc:
            if attempt == tries - 1:
                raise ShotwatchRuntimeError(
                    f"source: expected the SACLA database to answer dbpy.read_equiplist(), "
                    f"found an error after {tries} tries: {exc}") from None
            time.sleep(0.25 * 2**attempt)
    return ()


def close_matches(name: str, names: Sequence[str], *, n: int = 4) -> list[str]:
    """Up to ``n`` names like ``name``, best first.

    Names containing ``name`` (or its part before ``/``) come first, ranked by similarity;
    then difflib's close matches. The equipment list is thousands long: never list it all.
    """
    low = name.lower()
    stem = low.rpartition("/")[0] or low
    subs = [c for c in names if len(stem) >= 4 and (low in c.lower() or stem in c.lower())]
    if len(subs) > n:
        subs.sort(key=lambda c: -difflib.SequenceMatcher(None, low, c.lower()).ratio())
    found = subs[:n] + difflib.get_close_matches(name, names, n=n, cutoff=0.6)
    return list(dict.fromkeys(found))[:n]


def point_origins(config: Config) -> dict[str, str]:
    """Point detector -> the configuration key that asked for it (first one wins)."""
    origins: dict[str, str] = {}
    src = config.source
    for i, name in enumerate((src.points if isinstance(src, SaclaSource | SimSource) else None) or []):
        origins.setdefault(name, f"source.points[{i}]")
    if config.i0:
        origins.setdefault(config.i0.name, "i0.name")
    for i, veto in enumerate(config.veto):
        origins.setdefault(veto.name, f"veto[{i}].name")
    if config.scan:
        origins.setdefault(config.scan.name, "scan.name")
    if isinstance(config.pump_probe, PointPumpProbe):
        origins.setdefault(config.pump_probe.name, "pump_probe.name")
    return origins


def unknown_points_error(unknown: Iterable[str], equip: Sequence[str],
                         origins: Mapping[str, str]) -> SourceError:
    """One line naming each unknown point detector, where it was asked for, and close matches."""
    parts = []
    for name in unknown:
        matches = close_matches(name, equip)
        hint = f"close matches: {', '.join(matches)}" if matches else "no close match"
        parts.append(f"{origins.get(name, 'source.points')}: expected a point detector of "
                     f"dbpy.read_equiplist() ({len(equip)} names), found {name!r} ({hint})")
    return SourceError("; ".join(parts))


class Notices:
    """One-line notices, drained by the caller; a repeated key speaks at most every ``every`` s.

    Thread-safe: the poller adds while the recorder drains.
    """

    def __init__(self, *, every: float = 10.0, keep: int = 200) -> None:
        self._every, self._keep = every, keep
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def add(self, text: str, *, key: str | None = None) -> None:
        """Queue ``text``; with ``key``, repeats within ``every`` s are counted, not queued."""
        with self._lock:
            self._add(text, key)

    def _add(self, text: str, key: str | None) -> None:
        if key is not None:
            now = time.monotonic()
            if now - self._last.get(key, -1e9) < self._every:
                self._held[key] = self._held.get(key, 0) + 1
                return
            self._last[key] = now
            held = self._held.pop(key, 0)
            if held:
                text += f" (and {held} more like it in the last {self._every:g} s)"
        self._lines.append(text)
        del self._lines[:-self._keep]

    def drain(self) -> list[str]:
        """The notices since the last drain, oldest first."""
        with self._lock:
            lines, self._lines = self._lines, []
        return lines
