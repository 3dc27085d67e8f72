"""One-line forms, choosers and questions: pure state, key transitions and rendering (no Textual).

The console asks for everything on one screen row (STYLE.md: enabling an always-present row
costs a fraction of a ModalScreen): the analysis form (many fields, paged to the width), the
number of dark frames, a y/n question, and the filtered list the correlation and histogram
views choose their values from. Each is a frozen value; :func:`form_key` and
:func:`chooser_key` return the next value and what the key did, and the ``render_*``
functions draw them, so the widget (``widgets.LineForm``) is a thin shell, tested as strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from rich.text import Text

__all__ = [
    "Chooser", "Field", "FormState", "Outcome", "chooser_key", "form_key", "form_page", "matches",
    "render_chooser", "render_form",
]

Outcome = Literal["submit", "cancel", "moved", "edited", "ignored"]
_ACTIVE = "reverse"
_MORE = "…"


@dataclass(frozen=True)
class Field:
    """One field of a form.

    Attributes:
        key: what the field sets, as a dotted configuration key (``i0.min``, ``veto[0].max``).
        label: what the row shows before the value.
        value: the text as typed.
        width: cells of the value's box (longer values scroll; the box never grows, so the
            pages do not reflow while the operator types).
        hint: one line for the message row while the field is active.
    """

    key: str
    label: str
    value: str = ""
    width: int = 8
    hint: str = ""


@dataclass(frozen=True)
class FormState:
    """The fields, the active one, the cursor in it, and whether its value is "selected"
    (the first key typed replaces it, as in the ROI form)."""

    fields: tuple[Field, ...]
    active: int = 0
    cursor: int = 0
    fresh: bool = True

    @classmethod
    def start(cls, fields: Sequence[Field], active: int = 0) -> FormState:
        """The form open on field ``active`` with its value selected."""
        fields = tuple(fields)
        return cls(fields, active, len(fields[active].value) if fields else 0, True)

    @property
    def field(self) -> Field:
        return self.fields[self.active]

    def values(self) -> dict[str, str]:
        """key -> text as typed (stripped)."""
        return {f.key: f.value.strip() for f in self.fields}

    def focus(self, key: str) -> FormState:
        """Make the field whose key matches ``key`` (an error's dotted key) active, if any."""
        for i, f in enumerate(self.fields):
            if key == f.key or key.startswith(f.key + ".") or key.startswith(f.key + "["):
                return replace(self, active=i, cursor=len(f.value), fresh=True)
        if self.field.key.startswith(key + "."):  # a whole section (``i0``): where the operator was
            return replace(self, cursor=len(self.field.value), fresh=True)
        for i, f in enumerate(self.fields):  # else its first field
            if f.key.startswith(key + ".") or f.key.startswith(key + "["):
                return replace(self, active=i, cursor=len(f.value), fresh=True)
        return self

    def _set(self, value: str, cursor: int) -> FormState:
        fields = list(self.fields)
        fields[self.active] = replace(self.field, value=value)
        return replace(self, fields=tuple(fields), cursor=cursor, fresh=False)

    def _go(self, index: int) -> FormState:
        index %= len(self.fields)
        return replace(self, active=index, cursor=len(self.fields[index].value), fresh=True)


def form_key(state: FormState, key: str, character: str | None) -> tuple[FormState, Outcome]:
    """The form after one key (Textual's key name and character)."""
    if not state.fields:
        return state, "cancel" if key == "escape" else "ignored"
    value, cur = state.field.value, state.cursor
    if key in ("tab", "down"):
        return state._go(state.active + 1), "moved"
    if key in ("shift+tab", "up"):
        return state._go(state.active - 1), "moved"
    if key == "enter":
        return state, "submit"
    if key == "escape":
        return state, "cancel"
    if key == "backspace":
        if state.fresh:
            return state._set("", 0), "edited"
        return (state._set(value[:cur - 1] + value[cur:], cur - 1), "edited") if cur else (state, "ignored")
    if key == "delete":
        if state.fresh:
            return state._set("", 0), "edited"
        return state._set(value[:cur] + value[cur + 1:], cur), "edited"
    moves = {"left": max(0, cur - 1), "right": min(len(value), cur + 1), "home": 0, "end": len(value)}
    if key in moves:
        return replace(state, cursor=moves[key], fresh=False), "moved"
    if character is not None and len(character) == 1 and character.isprintable():
        if state.fresh:
            return state._set(character, 1), "edited"
        return state._set(value[:cur] + character + value[cur:], cur + 1), "edited"
    return state, "ignored"


def _cell(f: Field) -> int:
    return len(f.label) + f.width + 5  # "  label [value]"


def form_page(state: FormState, width: int, title: str) -> tuple[int, int, range]:
    """(page, pages, the field indices on the active field's page) at ``width`` cells.

    Fields fill pages greedily in order; the page breaks depend on labels and box widths
    only, never on the values, so typing never moves a field to another page.
    """
    room = max(10, width - len(title) - 6)  # " pp/PP"
    starts, used = [0], 0
    for i, f in enumerate(state.fields):
        if used and used + _cell(f) > room:
            starts.append(i)
            used = 0
        used += _cell(f)
    ends = [*starts[1:], len(state.fields)]
    page = max(p for p, s in enumerate(starts) if s <= state.active) if state.fields else 0
    return page + 1, len(starts), range(starts[page], ends[page]) if state.fields else range(0)


def _window(value: str, cursor: int, box: int) -> tuple[str, int]:
    """The part of ``value`` shown in a box of ``box`` cells, and the cursor's cell in it."""
    if len(value) < box:
        return value, cursor
    start = min(max(0, cursor - box + 1), len(value) - box + 1)
    shown = value[start:start + box]
    if start > 0:
        shown = _MORE + shown[1:]
    return shown, cursor - start


def render_form(state: FormState, width: int, title: str) -> Text:
    """The active field's page: ``title p/P  label [value] …``; the active value in reverse
    (all of it while selected, else with the cursor cell plain)."""
    page, pages, shown = form_page(state, width, title)
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{title} {page}/{pages}" if pages > 1 else title)
    for i in shown:
        f = state.fields[i]
        text.append(f"  {f.label} [")
        if i != state.active:
            value, _ = _window(f.value, len(f.value), f.width)
            text.append(value.ljust(f.width))
        elif state.fresh:
            value, _ = _window(f.value, len(f.value), f.width)
            text.append(value.ljust(f.width), style=_ACTIVE)
        else:
            value, at = _window(f.value, state.cursor, f.width)
            value = value.ljust(f.width)
            text.append(value[:at], style=_ACTIVE)
            text.append(value[at:at + 1] if at < len(value) else " ")
            text.append(value[at + 1:], style=_ACTIVE)
        text.append("]")
    return text


# --- choosing a value from a filtered list ------------------------------------------------------


@dataclass(frozen=True)
class Chooser:
    """A list filtered by what is typed (case-insensitive substring), one of the matches picked."""

    items: tuple[str, ...]
    filter: str = ""
    index: int = 0

    @classmethod
    def start(cls, items: Sequence[str], current: str | None = None) -> Chooser:
        """Open on ``current`` (if it is one of ``items``), nothing typed."""
        items = tuple(items)
        return cls(items, "", items.index(current) if current in items else 0)

    @property
    def matches(self) -> tuple[str, ...]:
        return matches(self.items, self.filter)

    @property
    def picked(self) -> str | None:
        m = self.matches
        return m[min(self.index, len(m) - 1)] if m else None


def matches(items: Sequence[str], typed: str) -> tuple[str, ...]:
    """Items containing ``typed`` (case-insensitive); those starting with it first."""
    t = typed.lower()
    hits = [x for x in items if t in x.lower()]
    return tuple(sorted(hits, key=lambda x: not x.lower().startswith(t)) if t else hits)


def chooser_key(state: Chooser, key: str, character: str | None) -> tuple[Chooser, Outcome]:
    """The chooser after one key: type to filter, arrows (or tab) to move, enter picks."""
    n = len(state.matches)
    if key == "enter":
        return state, "submit" if state.picked is not None else "ignored"
    if key == "escape":
        return state, "cancel"
    if key in ("down", "right", "tab"):
        return replace(state, index=(state.index + 1) % n if n else 0), "moved"
    if key in ("up", "left", "shift+tab"):
        return replace(state, index=(state.index - 1) % n if n else 0), "moved"
    if key == "backspace":
        return replace(state, filter=state.filter[:-1], index=0), "edited"
    if character is not None and len(character) == 1 and character.isprintable():
        return replace(state, filter=state.filter + character, index=0), "edited"
    return state, "ignored"


def render_chooser(state: Chooser, width: int, title: str) -> Text:
    """``title: typed▏  match  [picked]  match … (+N)`` scrolled so the picked one shows."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{title}: ")
    text.append(state.filter + "▏")
    found = state.matches
    if not found:
        text.append("  no match — backspace")
        return text
    at = min(state.index, len(found) - 1)
    room = max(10, width - text.cell_len - 10)
    start, used = at, len(found[at]) + 2
    while start > 0 and used + len(found[start - 1]) + 2 <= room // 2:
        start -= 1
        used += len(found[start]) + 2
    if start:
        text.append(f"  {_MORE}")
    end = at + 1
    used = sum(len(found[i]) + 2 for i in range(start, at + 1))
    while end < len(found) and used + len(found[end]) + 2 <= room:
        used += len(found[end]) + 2
        end += 1
    for i in range(start, end):
        text.append("  ")
        text.append(found[i], style=_ACTIVE if i == at else "")
    if end < len(found):
        text.append(f"  {_MORE} (+{len(found) - end})")
    return text
