"""One namespace for ROI, alias and channel names, and what each channel expression names.

INTERFACE.md: ROI, alias and channel names share one namespace and may not be a reserved
column name; a channel's expression names ROIs, aliases and earlier channels only, and
``pixels()`` takes an ROI. :func:`name_errors` lists every violation as (dotted key, message),
so the configuration models (which know only the file's own ROIs) and the commands (which know
a recording's ROIs) check with the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .expr import IDENTIFIER, RESERVED, ExprError, Name, Node, Pixels, names, parse

__all__ = ["check_name", "compile_channels", "name_errors"]


def check_name(name: str) -> str:
    """``name`` if it may be an alias or channel name, else ValueError (expected …, found …)."""
    if not IDENTIFIER.match(name):
        raise ValueError(f"expected a name made of A-Z a-z 0-9 _ (not starting with a digit), found {name!r}")
    if name in RESERVED:
        raise ValueError(f"expected a name other than {', '.join(sorted(RESERVED))}, found {name!r}")
    return name


def compile_channels(channels: Sequence[tuple[str, str]]) -> list[tuple[str, Node | ExprError]]:
    """Each channel's tree, or the error its text gave (syntax is checked once, here)."""
    out: list[tuple[str, Node | ExprError]] = []
    for name, text in channels:
        try:
            out.append((name, parse(text)))
        except ExprError as exc:
            out.append((name, exc))
    return out


def name_errors(*, aliases: Mapping[str, str], channels: Sequence[tuple[str, Node]],
                roi_names: Iterable[str] | None, rois_from: str = "the configuration") -> list[tuple[str, str]]:
    """Every violation of the namespace rules, as (dotted key, ``expected …, found …``).

    Args:
        aliases: alias -> point detector.
        channels: (name, parsed expression) in configuration order.
        roi_names: the ROI names expressions may use; None = not known here (names that are
            neither aliases nor channels are then taken for ROIs, checked later).
        rois_from: what holds the ROIs, for messages ("the configuration", a recording).
    """
    rois = None if roi_names is None else set(roi_names)
    errors: list[tuple[str, str]] = []
    for name in aliases:
        if rois is not None and name in rois:
            errors.append((f"alias.{name}", f"expected a name no ROI has, found {name!r} (an ROI of {rois_from})"))
    order = {name: i for i, (name, _) in reversed(list(enumerate(channels)))}
    for i, (name, tree) in enumerate(channels):
        key = f"channel[{i}]"
        if name in aliases or (rois is not None and name in rois) or order[name] != i:
            what = ("an alias" if name in aliases else f"channel[{order[name]}]" if order[name] != i
                    else f"an ROI of {rois_from}")
            errors.append((f"{key}.name", f"expected a name no ROI, alias or other channel has, found {name!r} ({what})"))
        for ref in names(tree):
            msg = _reference_error(ref, i, aliases=aliases, order=order, channels=channels, rois=rois,
                                   rois_from=rois_from)
            if msg is not None:
                errors.append((f"{key}.expr", msg))
                break
    return errors


def _reference_error(ref: Name | Pixels, i: int, *, aliases: Mapping[str, str], order: Mapping[str, int],
                     channels: Sequence[tuple[str, Node]], rois: set[str] | None, rois_from: str) -> str | None:
    """Why ``ref`` (a name or ``pixels()`` in channel ``i``) is not allowed, or None."""
    if isinstance(ref, Pixels):
        name, col = ref.roi, ref.col
        if name in aliases:
            return f"expected pixels() of an ROI at column {col}, found pixels({name}) of an alias (a point detector)"
        if name in order:
            return f"expected pixels() of an ROI at column {col}, found pixels({name}) of a channel"
        if rois is not None and name not in rois:
            return f"expected pixels() of an ROI of {rois_from} at column {col}, found {name!r}"
        return None
    name, col = ref.name, ref.col
    if name in aliases or (name in order and order[name] < i):
        return None
    if name in order:
        cycle = _cycle(i, order[name], channels, order)
        if cycle:
            return f"expected no cycle between channels at column {col}, found {' -> '.join(cycle)}"
        return (f"expected an earlier channel at column {col}, found {name!r} "
                f"(channel[{order[name]}], defined after this one)")
    if name in RESERVED or (rois is not None and name not in rois):
        of = f" of {rois_from}" if rois is not None else ""
        return f"expected the name of an ROI{of}, an alias or an earlier channel at column {col}, found {name!r}"
    return None


def _cycle(start: int, via: int, channels: Sequence[tuple[str, Node]], order: Mapping[str, int]) -> list[str]:
    """Channel names of a path via -> … -> start, prefixed by start; empty if there is none."""
    stack: list[tuple[int, list[int]]] = [(via, [start, via])]
    seen: set[int] = set()
    while stack:
        at, path = stack.pop()
        if at == start:
            return [channels[k][0] for k in path]
        if at in seen:
            continue
        seen.add(at)
        for ref in names(channels[at][1]):
            if not isinstance(ref, Pixels) and ref.name in order:
                stack.append((order[ref.name], [*path, order[ref.name]]))
    return []
