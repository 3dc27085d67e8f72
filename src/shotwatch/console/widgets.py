"""Thin widgets over the pure formatters, plus the always-present ROI form row.

Textual re-sends a widget's whole region on every refresh and never diffs frames, so
:class:`Painted` compares the new content with what it shows and refreshes only on change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Label, Static

from .lineform import Chooser, Field, FormState, chooser_key, form_key, render_chooser, render_form

__all__ = ["FormMode", "LineForm", "Painted", "RoiForm"]

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


class LineForm(Painted):
    """The one-line row the console asks on: a paged form, a filtered list, or a y/n question.

    Hidden while closed (the ROI form's row shows then); open, it takes the ROI form's place
    and, like it, never takes focus: the screen hands it every key in arrival order
    (:meth:`key`), so keys typed ahead over a slow link land where they were meant to. The
    state is a pure value (``lineform.py``); this widget paints it and posts what happened.
    ``purpose`` tells the screen which question was answered.
    """

    @dataclass
    class Submitted(Message):
        """Enter in a form: the values as typed, by field key."""

        purpose: str
        values: dict[str, str]

    @dataclass
    class Chosen(Message):
        """Enter in a chooser: the item picked."""

        purpose: str
        item: str

    @dataclass
    class Answered(Message):
        """A key after a y/n question: ``yes`` only for ``y``."""

        purpose: str
        yes: bool

    @dataclass
    class Cancelled(Message):
        """Esc: nothing asked for."""

        purpose: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.purpose: str | None = None
        self.state: FormState | Chooser | str | None = None
        self.title = ""
        self.note: str | None = None
        """A line for the message row: an error or a wait, replacing the active field's hint."""

    @property
    def is_open(self) -> bool:
        return self.purpose is not None

    @property
    def message(self) -> str:
        """What the message row shows while open: the note, else the active field's hint."""
        if self.note is not None:
            return self.note
        state = self.state
        if isinstance(state, FormState) and state.fields:
            return state.field.hint
        if isinstance(state, Chooser):
            return f"{len(state.matches)} of {len(state.items)} · type to filter · arrows move · enter picks"
        return ""

    def open_form(self, purpose: str, title: str, fields: Sequence[Field], *, active: int = 0) -> None:
        """Open a form on field ``active``, its value selected (the first key typed replaces it)."""
        self._open(purpose, title, FormState.start(fields, active))

    def open_chooser(self, purpose: str, title: str, items: Sequence[str], *, current: str | None = None) -> None:
        """Open a filtered list of ``items``, ``current`` picked."""
        self._open(purpose, title, Chooser.start(items, current))

    def ask(self, purpose: str, question: str) -> None:
        """A y/n question: ``y`` answers yes, any other key no."""
        self._open(purpose, question, question)

    def _open(self, purpose: str, title: str, state: FormState | Chooser | str) -> None:
        self.purpose, self.title, self.state, self.note = purpose, title, state, None
        self.display = True
        self._draw()

    def close(self) -> None:
        self.purpose, self.state, self.note = None, None, None
        self.display = False

    def error(self, text: str, *, key: str | None = None) -> None:
        """Show a refusal on the message row (the form stays open), on the field ``key`` names."""
        if isinstance(self.state, FormState) and key:
            self.state = self.state.focus(key)
            self._draw()
        self.note = text

    def _draw(self) -> None:
        width = self.size.width or self.screen.size.width
        state = self.state
        if isinstance(state, FormState):
            self.paint(render_form(state, width, self.title))
        elif isinstance(state, Chooser):
            self.paint(render_chooser(state, width, self.title))
        elif state is not None:
            self.paint(Text(state, style="bold"))

    def key(self, key: str, character: str | None) -> None:
        """One key while open (every key goes here, in order, until Enter or Esc)."""
        purpose, state = self.purpose, self.state
        if purpose is None or state is None:
            return
        if isinstance(state, str):
            self.post_message(self.Answered(purpose, key == "y"))
            return
        if isinstance(state, FormState):
            self.state, outcome = form_key(state, key, character)
        else:
            self.state, outcome = chooser_key(state, key, character)
        if outcome in ("edited", "moved"):
            self.note = None  # a key after an error: the hint again
            self._draw()
        elif outcome == "cancel":
            self.post_message(self.Cancelled(purpose))
        elif outcome == "submit":
            self._submit(purpose)

    def _submit(self, purpose: str) -> None:
        state = self.state
        if isinstance(state, FormState):
            self.post_message(self.Submitted(purpose, state.values()))
        elif isinstance(state, Chooser) and state.picked is not None:
            self.post_message(self.Chosen(purpose, state.picked))
