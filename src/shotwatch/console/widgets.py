"""Thin widgets over the pure formatters, plus the always-present ROI form row.

Textual re-sends a widget's whole region on every refresh and never diffs frames, so
:class:`Painted` compares the new content with what it shows and refreshes only on change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Label, Static

__all__ = ["FormMode", "Painted", "RoiForm"]

FormMode = Literal["edit", "new", "mark"]
_FIELDS = ("name", "detector", "x0", "x1", "y0", "y1")


class Painted(Static):
    """A Static that repaints only when the content it is given differs from what it shows."""

    def __init__(self, content: Text | str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(content, id=id, classes=classes)
        self._shown: Text | str | None = content
        self.paints = 0
        """How many times the content changed (tests and the bandwidth harness read it)."""

    def paint(self, content: Text | str) -> bool:
        """Show ``content`` unless it is already shown; returns whether it repainted."""
        if _same(content, self._shown):
            return False
        # A layout pass only when the height may change (the ROI rows grow with the ROIs).
        relayout = _lines(content) != _lines(self._shown)
        self._shown = content
        self.paints += 1
        self.update(content, layout=relayout)
        return True

    @property
    def shown(self) -> str:
        """The plain text currently shown."""
        s = self._shown
        return "" if s is None else s.plain if isinstance(s, Text) else s


def _lines(content: Text | str | None) -> int:
    if content is None:
        return 0
    return (content.plain if isinstance(content, Text) else content).count("\n") + 1


def _same(a: Text | str | None, b: Text | str | None) -> bool:
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.spans == b.spans
    return type(a) is type(b) and a == b


class RoiForm(Horizontal):
    """A one-line form (name, detector, x0, x1, y0, y1) that is always there, disabled.

    Enabling an existing row of compact Inputs costs a fraction of pushing a ModalScreen
    or mounting new widgets (STYLE.md). The fields never take focus: while the form is
    open the screen hands it every key in arrival order (:meth:`key`). Textual picks a
    key's target when the app dequeues it, so with focusable fields a burst typed ahead
    over a slow link would be split between the screen and the fields and reordered.
    """

    @dataclass
    class Submitted(Message):
        """Enter in any field: the values as typed (strings), and the mode."""

        mode: FormMode
        values: dict[str, str]

    @dataclass
    class Cancelled(Message):
        """Esc: nothing is applied."""

        mode: FormMode

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.mode: FormMode | None = None
        self._editable: tuple[str, ...] = ()
        self._active = 0
        self._fresh = True  # the active field is "selected": the first key typed replaces it

    def compose(self) -> ComposeResult:
        yield Label("ROI", id="form-label")
        for name in _FIELDS:
            placeholder = {"name": "name", "detector": "detector"}.get(name, name)
            field = Input(placeholder=placeholder, id=f"f-{name}", compact=True, disabled=True,
                          classes=f"field {name}")
            field.can_focus = False
            yield field

    @property
    def is_open(self) -> bool:
        return self.mode is not None

    @property
    def active_field(self) -> str | None:
        """The field typing goes to (None when closed)."""
        return self._editable[self._active] if self.mode is not None else None

    def _field(self, name: str) -> Input:
        return self.query_one(f"#f-{name}", Input)

    def open(self, mode: FormMode, values: dict[str, str], *, label: str) -> None:
        """Fill and enable the fields ``mode`` needs and make the first one active."""
        self.mode = mode
        self._editable = {"edit": _FIELDS[2:], "new": _FIELDS, "mark": ("name",)}[mode]
        self.query_one("#form-label", Label).update(label)
        for name in _FIELDS:
            field = self._field(name)
            field.value = values.get(name, "")
            field.disabled = name not in self._editable
        self._activate(0)

    def close(self, label: str = "ROI") -> None:
        """Disable every field and give the keys back to the screen."""
        self.mode = None
        for field in self.query(Input):
            field.disabled = True
            field.remove_class("-active")
        self.query_one("#form-label", Label).update(label)

    def prompt(self, text: str) -> None:
        """Show a one-line question in the label (the delete confirmation)."""
        self.query_one("#form-label", Label).update(text)

    def values(self) -> dict[str, str]:
        return {name: self._field(name).value.strip() for name in _FIELDS}

    def _activate(self, index: int) -> None:
        if self.active_field is not None:
            self._field(self.active_field).remove_class("-active")
        self._active = index % len(self._editable)
        self._fresh = True
        self._field(self._editable[self._active]).add_class("-active")

    def action_move(self, step: int) -> None:
        """Tab / shift+Tab: cycle through the editable fields."""
        if self.mode is not None:
            self._activate(self._active + step)

    def action_cancel(self) -> None:
        if self.mode is not None:
            self.post_message(self.Cancelled(self.mode))

    def submit(self) -> None:
        """Enter, from any field: hand the values to the screen."""
        if self.mode is not None:
            self.post_message(self.Submitted(self.mode, self.values()))

    def key(self, key: str, character: str | None) -> bool:
        """One key while open; returns False for keys the form does not use."""
        name = self.active_field
        if name is None:
            return False
        field = self._field(name)
        if key in ("tab", "shift+tab"):
            self.action_move(1 if key == "tab" else -1)
        elif key == "escape":
            self.action_cancel()
        elif key == "enter":
            self.submit()
        elif key == "backspace":
            field.value = "" if self._fresh else field.value[:-1]
            self._fresh = False
        elif character is not None and len(character) == 1 and character.isprintable():
            field.value = character if self._fresh else field.value + character
            self._fresh = False
        else:
            return False
        return True
