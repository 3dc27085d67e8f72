"""Where recordings and their logs go."""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["fill_template", "free_path", "log_path_for"]


def fill_template(template: str, *, run: int | None, now: float | None = None, first: bool = True) -> Path:
    """``record.out`` with ``{run}`` and ``{time}`` filled in (UTC, YYYYmmdd-HHMMSS).

    Where the template has no ``{run}``, a later run of the source (``first`` false) gets
    ``-<run>`` inserted before ``.zarr`` so that every run has its own recording.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    run_text = "none" if run is None else str(run)
    path = template.replace("{run}", run_text).replace("{time}", stamp)
    if "{run}" not in template and not first:
        path = path[: -len(".zarr")] + f"-{run_text}.zarr" if path.endswith(".zarr") else f"{path}-{run_text}"
    return Path(path)


def free_path(path: Path) -> Path:
    """``path``, or where it exists already, the first free ``<stem>-2.zarr``, ``-3``, ...

    (INTERFACE.md, ``record``: a later run's recording never overwrites nor joins another.)
    """
    if not path.exists():
        return path
    stem, suffix = (path.name[: -len(".zarr")], ".zarr") if path.name.endswith(".zarr") else (path.name, "")
    k = 2
    while (candidate := path.with_name(f"{stem}-{k}{suffix}")).exists():
        k += 1
    return candidate


def log_path_for(recording: Path) -> Path:
    """``<name>.log`` beside ``<name>.zarr``."""
    return recording.with_suffix(".log") if recording.suffix == ".zarr" else recording.with_name(recording.name + ".log")
