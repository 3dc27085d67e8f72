"""The configuration a replay or reduction uses: analysis from -c, ROIs from the recording."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..schemas import Config, ConfigError, PointPumpProbe

__all__ = ["analysis_config"]

_ANALYSIS = ("calibration", "i0", "veto", "scan", "pump_probe")


def analysis_config(recorded: Config, override: Config | None, *, points: Sequence[str],
                    where: str, origin: str | None = None, detectors: Iterable[str] | None = None) -> Config:
    """``recorded`` with its analysis sections replaced by ``override``'s (when given).

    ``[source]``, ``[record]`` and ``[[roi]]`` always stay the recording's. Every point the
    analysis names must be in ``points`` (the recording's); otherwise a ConfigError names
    the key and lists what the recording holds.
    """
    cfg = recorded
    if override is not None:
        cfg = recorded.model_copy(update={k: getattr(override, k) for k in _ANALYSIS})
    held = set(points)
    named = []
    if cfg.i0:
        named.append(("i0.name", cfg.i0.name))
    named += [(f"veto[{i}].name", v.name) for i, v in enumerate(cfg.veto)]
    if cfg.scan:
        named.append(("scan.name", cfg.scan.name))
    if isinstance(cfg.pump_probe, PointPumpProbe):
        named.append(("pump_probe.name", cfg.pump_probe.name))
    for key, name in named:
        if name not in held:
            src = origin if override is not None and origin else where
            raise ConfigError(f"{src}: {key}: expected a point detector that {where} holds "
                              f"({', '.join(sorted(held))}), found {name!r}")
    if detectors is not None:
        known = sorted(detectors)
        for det in cfg.calibration.ev_per_adu:
            if det not in known:
                src = origin if override is not None and origin else where
                raise ConfigError(f"{src}: calibration.ev_per_adu: expected detectors that {where} holds "
                                  f"({', '.join(known) or 'none'}), found {det!r}")
    return cfg
