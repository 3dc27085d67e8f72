"""argparse types for positive numbers, phrased `expected …, found …` like every other error."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

__all__ = ["positive"]

N = TypeVar("N", int, float)


def positive(cast: Callable[[str], N], expected: str, when_not_positive: str | None = None) -> Callable[[str], N]:
    """A parser of numbers > 0: ``expected`` names what is wanted in the error line."""

    def parse(text: str) -> N:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, found {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected {when_not_positive or expected}, found {text}")
        return value

    return parse
