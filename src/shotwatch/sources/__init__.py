"""Sources of ShotBlocks: simulator, replay, SACLA, European XFEL (karabo-bridge, run files).

:func:`open_source` builds the source a configuration names. Facility adapters are imported
only when asked for, so importing this package never touches dbpy/olpy, zmq or zarr.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from ..schemas import PULSE_POINT, Config, ReplaySource, SimSource, SourceError, roi_key
from .base import Source, SourceStatus
from .sim_physics import Share

__all__ = ["Source", "SourceStatus", "open_source"]

_MODULES = {"sacla": "sacla", "karabo": "karabo", "euxfel-run": "euxfel_run"}


def open_source(config: Config, *, frames_every: int | None = None, share: Share | None = None,
                epoch: float | None = None) -> Source:
    """The source ``config.source`` describes, constructed but not yet opened.

    Call ``open()`` on the result (the simulator and replay also open themselves on the first
    ``describe``/``read``). Where ``source.points`` restricts the point detectors, the names
    the analysis sections use (i0, veto, scan, pump_probe) are added to it.

    Args:
        config: the whole configuration.
        frames_every: keep one full frame every N shots (only the simulator at rate 0 uses it);
            defaults to ``config.record.frames_every``.
        share, epoch: the simulator's share of the stream and the unix time of its first
            slot (``record --mpi``: a worker rank's; see :class:`~.sim.Simulator`); other
            sources ignore them.
    """
    every = config.record.frames_every if frames_every is None else frames_every
    src = config.source
    pp = config.pump_probe
    if pp is not None and pp.mode in PULSE_POINT and src.kind in ("sim", "sacla"):
        raise SourceError(f"pump_probe.mode: expected \"tag-modulo\" or \"point\" with source.kind = {src.kind!r} "
                          f"(pulse-modulo and train-modulo are European XFEL's), found {pp.mode!r}")
    if isinstance(src, SimSource):
        from .sim import Simulator
        from .sim_physics import POINTS

        _check_analysis_points(config, offered=POINTS, by="the simulator")
        if src.points is not None:
            src = src.model_copy(update={"points": config.recorded_points()})
        return Simulator(src, frames_every=every, rois={roi_key(r.name, 1): r for r in config.roi}, share=share,
                         epoch=epoch)
    if isinstance(src, ReplaySource):
        from .replay import Replayer

        return Replayer(src)
    # The facility sources own their construction (API paths, sockets, point maps).
    module = importlib.import_module(f"{__name__}.{_MODULES[src.kind]}")
    source: Source = module.make(config, frames_every=every)
    return source


def _check_analysis_points(config: Config, *, offered: Sequence[str], by: str) -> None:
    """A point the source cannot know at all is a configuration error naming the key."""
    for key, name in config.analysis_point_keys():
        if name not in offered:
            raise SourceError(f"{key}: expected a point detector {by} offers ({', '.join(offered)}), found {name!r}")
