"""Configuration sections of real-data analysis: ``[[mask]]``, ``[[channel]]``, ``[alarm]``.

Kept beside config.py (which re-exports them) so that each module stays small; validated by
the same rules (``extra="forbid"``, frozen, strict, a docstring per field).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from ._model import _Model
from .expr import ExprError, Node, parse
from .namespace import check_name

__all__ = ["Alarm", "Channel", "Mask"]


class Mask(_Model):
    """A rectangle of one array detector whose pixels never count: columns [x0, x1), rows [y0, y1)."""

    detector: str
    """Array detector id."""
    x: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] = Field(strict=False)
    """Columns [x0, x1), end-exclusive."""
    y: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] = Field(strict=False)
    """Rows [y0, y1), end-exclusive."""

    @model_validator(mode="after")
    def _order(self) -> Mask:
        if self.x[0] >= self.x[1]:
            raise ValueError(f"expected x0 < x1, found x = {list(self.x)}")
        if self.y[0] >= self.y[1]:
            raise ValueError(f"expected y0 < y1, found y = {list(self.y)}")
        return self

    def check_shape(self, shape: tuple[int, ...], *, where: str) -> None:
        """Raise ValueError unless the rectangle lies inside a detector of ``shape`` (H, W)."""
        h, w = shape[-2], shape[-1]
        if self.x[1] > w or self.y[1] > h:
            raise ValueError(f"{where}: expected a rectangle inside {self.detector} ({h} rows x {w} columns, "
                             f"x <= {w}, y <= {h}), found x = {list(self.x)}, y = {list(self.y)}")


class Channel(_Model):
    """A derived per-shot value: an expression over ROI names, aliases and earlier channels."""

    name: Annotated[str, AfterValidator(check_name)]
    """The channel's name (A-Z a-z 0-9 _, not a reserved column name), one namespace with ROIs and aliases."""
    expr: str
    """``+ - * /``, unary minus, parentheses, numbers, ``abs sqrt log exp min max`` and ``pixels(ROI)``."""

    @field_validator("expr")
    @classmethod
    def _parse(cls, v: str) -> str:
        try:
            parse(v)
        except ExprError as exc:
            raise ValueError(str(exc)) from None
        return v

    def tree(self) -> Node:
        """The parsed expression."""
        return parse(self.expr)


class Alarm(_Model):
    """When the console rings: no new shot, too few accepted, beam lost."""

    stale_s: float = Field(5.0, gt=0)
    """No new shot for this many seconds."""
    accepted_min: float | None = Field(None, ge=0, le=1)
    """Accepted fraction over the last 10 s below this (absent = no such alarm)."""
    beam: str | None = None
    """A ``[[veto]]`` name: failing for all of the last 2 s = beam lost; while it passes, a dark is refused."""
