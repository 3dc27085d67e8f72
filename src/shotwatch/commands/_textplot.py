"""A scan plot as plain ASCII text, for the Markdown report (plotext lives in the console only).

``y ± err`` per bin: the point is ``o``, its error bar a column of ``|``; a bin without a value
draws nothing (a gap). Pure: numbers in, lines out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["text_plot"]


def text_plot(x: Sequence[float], y: Sequence[float | None], err: Sequence[float | None], *,
              width: int = 60, height: int = 12, xlabel: str = "") -> list[str]:
    """Lines of a ``width`` × ``height`` character plot of ``y ± err`` against ``x``.

    Returns ["(no bin has a value)"] when nothing can be drawn.
    """
    pts = [(float(xi), float(yi), float(ei) if ei is not None and math.isfinite(ei) else 0.0)
           for xi, yi, ei in zip(x, y, err, strict=True) if yi is not None and math.isfinite(yi)]
    if not pts:
        return ["(no bin has a value)"]
    lo = min(p[1] - p[2] for p in pts)
    hi = max(p[1] + p[2] for p in pts)
    if hi <= lo:
        lo, hi = lo - max(abs(lo) / 2, 0.5), hi + max(abs(hi) / 2, 0.5)
    x0, x1 = min(x), max(x)
    span = (x1 - x0) or 1.0
    grid = [[" "] * width for _ in range(height)]

    def row(v: float) -> int:
        return min(height - 1, max(0, round((hi - v) / (hi - lo) * (height - 1))))

    for xi, yi, ei in pts:
        col = min(width - 1, max(0, round((xi - x0) / span * (width - 1))))
        for r in range(row(yi + ei), row(yi - ei) + 1):
            grid[r][col] = "|"
        grid[row(yi)][col] = "o"
    labels = {0: _num(hi), height // 2: _num((hi + lo) / 2), height - 1: _num(lo)}
    pad = max(len(s) for s in labels.values())
    lines = [f"{labels.get(r, ''):>{pad}} |" + "".join(grid[r]).rstrip() for r in range(height)]
    lines.append(" " * pad + " +" + "-" * width)
    left, right = _num(x0), _num(x1)
    lines.append(" " * (pad + 2) + left + " " * max(1, width - len(left) - len(right)) + right)
    if xlabel:
        lines.append(" " * (pad + 2) + xlabel.center(width).rstrip())
    return lines


def _num(v: float) -> str:
    return f"{v:.4g}"
