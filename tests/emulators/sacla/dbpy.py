"""Emulator of SACLA's ``dbpy`` (the synchronised database), for tests and demos.

Module-level functions with positional arguments, as on a SACLA analysis server
(FACILITY.md), as strict about argument types as the C extension (a tag list is a tuple of
ints) and as slow as a network round trip (``call_cost``). The state lives in :data:`_emu`
(shared with ``olpy``): drive it with ``dbpy._emu.configure(...)``, ``dbpy._emu.new_run()``,
``dbpy._emu.set_status(1)`` (pause) or ``set_status(0)`` (stop: no run until ``new_run``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _sacla_emu import EMU as _emu
from _sacla_emu import EQUIPMENT, HIGHTAG, APIError, strict, tag_tuple

__all__ = [
    "APIError", "read_detidlist", "read_end_tagnumber", "read_equiplist", "read_hightagnumber",
    "read_runnumber_newest", "read_runstatus", "read_start_tagnumber", "read_syncdatalist",
    "read_syncdatalist_float", "read_taglist_byrun", "read_tagnumber_newest",
]

_UNITS = {"voltage": "V", "charge": "nC", "position": "pulse", "status": "", "summary": ""}


def _check_bl(bl: int) -> None:
    if bl not in (1, 2, 3):
        raise APIError(f"beamline {bl} not found")


def read_runnumber_newest(bl: int) -> int:
    """Newest run number on beamline ``bl`` (running, paused or stopped)."""
    strict("read_runnumber_newest", bl=(bl, int))
    _emu.check_db("read_runnumber_newest")
    _check_bl(bl)
    return _emu.runs[-1].number


def read_runstatus(bl: int, run: int) -> int:
    """-1 not yet, 0 stopped, 1 paused, 2 running."""
    strict("read_runstatus", bl=(bl, int), run=(run, int))
    _emu.check_db("read_runstatus")
    _check_bl(bl)
    if run > _emu.runs[-1].number:
        return -1
    return _emu.run(run).status


def read_hightagnumber(bl: int, run: int) -> int:
    """The run's high tag."""
    strict("read_hightagnumber", bl=(bl, int), run=(run, int))
    _emu.check_db("read_hightagnumber")
    _emu.run(run)
    return HIGHTAG


def _tags(bl: int, run: int) -> np.ndarray:
    _check_bl(bl)
    with _emu.lock:
        return _emu.tag(_emu.run_slots(_emu.run(run)))


def read_start_tagnumber(bl: int, run: int) -> tuple[int, int]:
    """(hightag, first tag) of the run."""
    strict("read_start_tagnumber", bl=(bl, int), run=(run, int))
    _emu.check_db("read_start_tagnumber")
    tags = _tags(bl, run)
    if not len(tags):
        raise APIError(f"run {run} has no tags yet")
    return HIGHTAG, int(tags[0])


def read_end_tagnumber(bl: int, run: int) -> tuple[int, int]:
    """(hightag, last tag so far) of the run."""
    strict("read_end_tagnumber", bl=(bl, int), run=(run, int))
    _emu.check_db("read_end_tagnumber")
    tags = _tags(bl, run)
    if not len(tags):
        raise APIError(f"run {run} has no tags yet")
    return HIGHTAG, int(tags[-1])


def read_taglist_byrun(bl: int, run: int) -> tuple[int, ...]:
    """Every tag of the run so far, increasing (not contiguous: step 2, skipped shots).

    Over 100,000 tags after an hour: the cost grows with the run (``item_cost`` per tag).
    """
    strict("read_taglist_byrun", bl=(bl, int), run=(run, int))
    _emu.check_db("read_taglist_byrun")
    out = tuple(_tags(bl, run).tolist())
    _emu.pay_items(len(out))
    return out


def read_tagnumber_newest(equip: str) -> tuple[int, int]:
    """(hightag, newest tag) seen by point detector ``equip``."""
    strict("read_tagnumber_newest", equip=(equip, str))
    _emu.check_db("read_tagnumber_newest")
    with _emu.lock:
        if _emu.opts["fail_newest"] > 0:
            _emu.opts["fail_newest"] -= 1
            raise APIError("read_tagnumber_newest: database timeout")
        if not _emu.known(equip):
            raise APIError(f"equipment {equip!r} not found")
        return HIGHTAG, int(_emu.tag(_emu.newest_slot()))


def _values(call: str, equip: Any, hightag: Any, tags: Any) -> np.ndarray:
    strict(call, equip=(equip, str), hightag=(hightag, int))
    tags = tag_tuple(call, tags)
    _emu.check_db(call)
    if not _emu.known(equip):
        raise APIError(f"equipment {equip!r} not found")
    if hightag != HIGHTAG:
        raise APIError(f"hightag {hightag} not found")
    if _emu.take_failure(equip):
        raise APIError(f"{equip}: read failed (database timeout)")
    _emu.pay_items(len(tags))
    with _emu.lock:
        return _emu.values(equip, np.asarray(tags, dtype=np.int64))


def read_syncdatalist_float(equip: str, hightag: int, tags: tuple[int, ...]) -> tuple[float, ...]:
    """One float per tag (NaN where the detector has no value for it, or not yet)."""
    return tuple(_values("read_syncdatalist_float", equip, hightag, tags).tolist())


def read_syncdatalist(equip: str, hightag: int, tags: tuple[int, ...]) -> tuple[str, ...]:
    """One string per tag, with a unit where the detector has one (``"0.123 V"``)."""
    unit = _UNITS.get(str(equip).rpartition("/")[2], "")
    return tuple("not-converged" if v != v else f"{v:.6g} {unit}".strip()
                 for v in _values("read_syncdatalist", equip, hightag, tags).tolist())


def read_detidlist(bl: int, run: int) -> tuple[str, ...]:
    """Array detectors in this run (an octal MPCCD is 8 ids ending -1 ... -8)."""
    strict("read_detidlist", bl=(bl, int), run=(run, int))
    _emu.check_db("read_detidlist")
    _check_bl(bl)
    _emu.run(run)
    return _emu.detectors()


def read_equiplist() -> tuple[str, ...]:
    """Every point-detector name (thousands)."""
    _emu.check_db("read_equiplist")
    _emu.pay_items(len(EQUIPMENT))
    return EQUIPMENT
