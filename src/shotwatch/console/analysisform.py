"""The analysis form's fields and what they send: pure (a configuration in, text out, and back).

INTERFACE.md ("Changing the analysis while recording"): the form edits the I0 window, the veto
bounds, the scan's scale, offset and edges, the pump-probe rule, the photon threshold, the
photon energy and the channel expressions (and adds a channel). :func:`analysis_fields` fills
the fields from the analysis in force; :func:`analysis_sections` turns what was typed into the
analysis sections ``set_analysis`` sends, checked here with the same models the recorder uses
(it checks them again, against its ROIs too), so a typo is one line in the form at once
instead of a round trip over a slow link.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ..schemas import ANALYSIS_SECTIONS, Config, ConfigError, EdgesRange, PointPumpProbe, parse_config
from .format import short_name
from .lineform import Field

__all__ = ["FormError", "analysis_fields", "analysis_sections"]

_ORIGIN = "analysis"
_NUM, _WIDE, _EXPR = 8, 16, 30


class FormError(ValueError):
    """What was typed cannot be sent: ``key`` names the field (a dotted configuration key)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def _num(x: float | None) -> str:
    # repr is the shortest text that reads back as the same float: an untouched field
    # sends exactly the value in force.
    return "" if x is None else repr(x)


def _edges(edges: EdgesRange | list[float]) -> str:
    if isinstance(edges, EdgesRange):
        return f"{edges.start!r}:{edges.stop!r}:{edges.count}"
    return " ".join(repr(e) for e in edges)


def analysis_fields(cfg: Config) -> tuple[Field, ...]:
    """The form's fields for the analysis in force, I0's minimum first; a number's box is as
    wide as its value in force needs (fixed while the form is open, so pages never reflow)."""
    return tuple(f if f.width != _NUM else replace(f, width=min(_WIDE, max(6, len(f.value) + 3)))
                 for f in _fields(cfg))


def _fields(cfg: Config) -> list[Field]:
    out: list[Field] = []
    if cfg.i0 is not None:
        out += [Field("i0.min", "i0 ≥", _num(cfg.i0.min), hint=f"i0.min: smallest accepted I0 ({cfg.i0.name}), > 0"),
                Field("i0.max", "i0 ≤", _num(cfg.i0.max), hint="i0.max: largest accepted I0 (empty = no bound)")]
    for i, v in enumerate(cfg.veto):
        short = short_name(v.name)
        out += [Field(f"veto[{i}].min", f"{short} ≥", _num(v.min), hint=f"veto[{i}].min: {v.name} lower bound (empty = none)"),
                Field(f"veto[{i}].max", f"{short} ≤", _num(v.max), hint=f"veto[{i}].max: {v.name} upper bound (empty = none)")]
    if cfg.scan is not None:
        out += [Field("scan.scale", "scan ×", _num(cfg.scan.scale), hint=f"scan.scale: scan = {cfg.scan.name} × scale + offset"),
                Field("scan.offset", "+", _num(cfg.scan.offset), hint="scan.offset: scan = raw × scale + offset"),
                Field("scan.edges", "edges", _edges(cfg.scan.edges), _WIDE,
                      hint="scan.edges: start:stop:count (count bins), or increasing edges separated by spaces")]
    pp = cfg.pump_probe
    if isinstance(pp, PointPumpProbe):
        out.append(Field("pump_probe.threshold", "laser >", _num(pp.threshold),
                         hint=f"pump_probe.threshold: laser on when {pp.name} > threshold"))
    elif pp is not None:
        out += [Field("pump_probe.cycle", "laser cycle", str(pp.cycle), 4,
                      hint=f"pump_probe.cycle: {pp.mode}, laser on when n % cycle is in on"),
                Field("pump_probe.on", "on", " ".join(map(str, pp.on)),
                      hint="pump_probe.on: residues with the laser on, e.g. 0 2")]
    cal = cfg.calibration
    out += [Field("calibration.threshold_ev", "threshold eV", _num(cal.threshold_ev),
                  hint="calibration.threshold_ev: pixels below this energy count 0 (empty = no threshold)"),
            Field("calibration.photon_energy_ev", "photon eV", _num(cal.photon_energy_ev),
                  hint="calibration.photon_energy_ev: ROI values in photons of this energy (empty = in eV)")]
    for i, c in enumerate(cfg.channel):
        out.append(Field(f"channel[{i}].expr", f"{c.name} =", c.expr, _EXPR,
                         hint=f"channel[{i}].expr: + - * / ( ) abs sqrt log exp min max pixels(ROI)"))
    out.append(Field("channel[+]", "new channel", "", _WIDE, hint="a new channel: name = expression (empty = none)"))
    return out


def _float(key: str, text: str, *, optional: bool) -> float | None:
    if not text:
        if optional:
            return None
        raise FormError(key, "expected a number, found nothing")
    try:
        return float(text)
    except ValueError:
        raise FormError(key, f"expected a number, found {text!r}") from None


def _ints(key: str, text: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise FormError(key, f"expected whole numbers separated by spaces, found {text!r}") from None


def _edges_value(key: str, text: str) -> dict[str, Any] | list[float]:
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise FormError(key, f"expected start:stop:count, found {text!r}")
        start, stop = (_float(key, p.strip(), optional=False) for p in parts[:2])
        count = _ints(key, parts[2])
        if len(count) != 1:
            raise FormError(key, f"expected a whole number of bins after the second colon, found {parts[2]!r}")
        return {"start": start, "stop": stop, "count": count[0]}
    try:
        return [float(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise FormError(key, f"expected start:stop:count or numbers separated by spaces, found {text!r}") from None


def _setter(data: dict[str, Any], key: str) -> Callable[[Any], None]:
    """A function setting the dotted ``key`` (``veto[1].min``) in ``data``."""
    target: Any = data
    parts = key.split(".")
    for part in parts[:-1]:
        name, _, index = part.partition("[")
        target = target[name] if not index else target[name][int(index.rstrip("]"))]
    last = parts[-1]

    def put(value: Any) -> None:
        target[last] = value
    return put


def analysis_sections(cfg: Config, values: Mapping[str, str]) -> dict[str, Any]:
    """The analysis sections (JSON) with the typed ``values`` (field key -> text) applied.

    Raises:
        FormError: a value cannot be read, or the analysis it makes is not valid (the
            configuration's own one-line message, naming the dotted key).
    """
    data = cfg.model_dump(mode="json", include=set(ANALYSIS_SECTIONS), exclude_none=True)
    for key, text in values.items():
        if key == "channel[+]":
            if text:
                name, eq, expr = text.partition("=")
                if not eq or not name.strip() or not expr.strip():
                    raise FormError(key, f"expected name = expression, found {text!r}")
                data.setdefault("channel", []).append({"name": name.strip(), "expr": expr.strip()})
            continue
        put = _setter(data, key)
        if key == "scan.edges":
            put(_edges_value(key, text))
        elif key == "pump_probe.on":
            put(_ints(key, text))
        elif key == "pump_probe.cycle":
            cycle = _ints(key, text)
            if len(cycle) != 1:
                raise FormError(key, f"expected one whole number, found {text!r}")
            put(cycle[0])
        elif key.startswith("channel["):
            put(text)
        else:
            optional = key not in ("i0.min", "scan.scale", "scan.offset", "pump_probe.threshold")
            put(_float(key, text, optional=optional))
    _check(data, channels=len(cfg.channel))
    return data


def _check(data: dict[str, Any], *, channels: int) -> None:
    """The same models the recorder validates with (its ROIs aside: a channel may name an ROI
    added live, which the configuration in hand does not list)."""
    try:
        parse_config(data, origin=_ORIGIN)
    except ConfigError as exc:
        message = str(exc).removeprefix(f"{_ORIGIN}: ")
        key, _, what = message.partition(": ")
        if key.startswith(f"channel[{channels}]"):
            key = "channel[+]"  # the channel being added
        raise FormError(key, what) from None
