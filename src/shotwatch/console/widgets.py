"""Thin widgets over the pure formatters, plus the always-present ROI form row.

Textual re-sends a widget's whole region on every refresh and never diffs frames, so
:class:`Painted` compares the new content with what it shows and refreshes only on change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
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
    or mounting new widgets (STYLE.md), and a disabled Input neither takes focus nor
    swallows the screen's keys. While open, keys go to the form until Enter or Esc.
    """

    BINDINGS = [
        Binding("escape", "cancel", "cancel", show=False),
        Binding("tab", "move(1)", "next field", show=False, priority=False),
        Binding("shift+tab", "move(-1)", "previous field", show=False),
    ]

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

    def compose(self) -> ComposeResult:
        yield Label("ROI", id="form-label")
        for name in _FIELDS:
            placeholder = {"name": "name", "detector": "detector"}.get(name, name)
            yield Input(placeholder=placeholder, id=f"f-{name}", compact=True, disabled=True,
                        classes=f"field {name}", select_on_focus=True)

    @property
    def is_open(self) -> bool:
        return self.mode is not None

    def open(self, mode: FormMode, values: dict[str, str], *, label: str) -> None:
        """Fill and enable the fields ``mode`` needs, select the first, and take the keys."""
        self.mode = mode
        editable = {"edit": _FIELDS[2:], "new": _FIELDS, "mark": ("name",)}[mode]
        self.query_one("#form-label", Label).update(label)
        for name in _FIELDS:
            field = self.query_one(f"#f-{name}", Input)
            field.value = values.get(name, "")
            field.disabled = name not in editable
        self.query_one(f"#f-{editable[0]}", Input).focus()

    def close(self, label: str = "ROI") -> None:
        """Disable every field and give the keys back to the screen."""
        self.mode = None
        for field in self.query(Input):
            field.disabled = True
        self.query_one("#form-label", Label).update(label)
        self.screen.set_focus(None)

    def prompt(self, text: str) -> None:
        """Show a one-line question in the label (the delete confirmation)."""
        self.query_one("#form-label", Label).update(text)

    def values(self) -> dict[str, str]:
        return {name: self.query_one(f"#f-{name}", Input).value.strip() for name in _FIELDS}

    def action_move(self, step: int) -> None:
        """Tab / shift+Tab: cycle through the enabled fields only."""
        fields = [f for f in self.query(Input) if not f.disabled]
        if not fields:
            return
        focused = self.screen.focused
        index = fields.index(focused) if focused in fields else -1
        fields[(index + step) % len(fields)].focus()

    def action_cancel(self) -> None:
        if self.mode is not None:
            self.post_message(self.Cancelled(self.mode))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.mode is not None:
            self.post_message(self.Submitted(self.mode, self.values()))
