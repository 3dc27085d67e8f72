"""A small greyscale thumbnail of a mean detector image, with axes and ROI rectangles.

Each character cell shows two image rows with the upper-half block ``▀`` (foreground = upper
pixel, background = lower pixel) in the 24 greys of the 256-colour palette. The image is
quantised to a few grey levels so that neighbouring cells share a style and merge into one
segment: every style change costs ~20 bytes on the wire (STYLE.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from rich.color import Color
from rich.style import Style
from rich.text import Text

from ..schemas import RoiVersion
from .tuning import GREY_LEVELS

__all__ = ["downsample", "thumbnail"]

_LEVELS = GREY_LEVELS
_GREY0 = 232
_MARGIN = 6
_ROI_STYLE = "bold yellow"


def downsample(image: npt.NDArray[np.floating], rows: int, cols: int, *, pool: str = "mean") -> npt.NDArray[np.float64]:
    """Block means (``pool="max"``: maxima) of ``image`` to at most ``rows`` x ``cols`` pixels
    (NaN-aware)."""
    h, w = image.shape
    ys = np.linspace(0, h, min(rows, h) + 1).astype(int)
    xs = np.linspace(0, w, min(cols, w) + 1).astype(int)
    img = np.asarray(image, np.float64)
    if pool == "max":  # one masked pixel in a block must show
        out = np.maximum.reduceat(np.maximum.reduceat(np.nan_to_num(img), ys[:-1], axis=0), xs[:-1], axis=1)
        return np.asarray(out, np.float64)
    # Sum along each axis with reduceat, then divide by block areas: O(H*W), no Python loops.
    s = np.add.reduceat(np.add.reduceat(np.nan_to_num(img), ys[:-1], axis=0), xs[:-1], axis=1)
    area = np.outer(np.diff(ys), np.diff(xs))
    return np.asarray(s / area, np.float64)


def _levels(img: npt.NDArray[np.float64], span: tuple[float, float] | None = None) -> npt.NDArray[np.int64]:
    finite = img[np.isfinite(img)]
    if not finite.size:
        return np.zeros(img.shape, np.int64)
    lo, hi = span if span is not None else np.percentile(finite, [1.0, 99.5])
    scaled = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    return np.clip((np.nan_to_num(scaled) * (_LEVELS - 1)).round(), 0, _LEVELS - 1).astype(np.int64)


def _grey(level: int) -> Color:
    return Color.from_ansi(_GREY0 + int(level) * 23 // (_LEVELS - 1))


def thumbnail(
    image: npt.NDArray[np.floating],
    rois: Sequence[RoiVersion],
    *,
    width: int,
    height: int,
    selected: str | None = None,
    mask: bool = False,
) -> Text:
    """The image in at most ``width`` x ``height`` cells, including axis labels.

    Args:
        image: ``[H, W]`` mean image (rows y, columns x), or a mask (bool).
        rois: rectangles to outline (those on this detector); the selected one double-lined.
        width, height: cells available.
        selected: name of the selected ROI.
        mask: ``image`` is a mask: a cell is white where any of its pixels is masked.
    """
    h, w = image.shape
    cols, rows = max(4, width - _MARGIN), max(2, height - 1)
    # Keep pixels square: one cell is one column wide and two image rows tall.
    scale = max(w / cols, h / (2 * rows))
    cols, rows = max(1, int(w / scale)), max(1, int(np.ceil(h / scale / 2)))
    small = downsample(image, 2 * rows, cols, pool="max" if mask else "mean")
    lv = _levels(small, (0.0, 1.0) if mask else None)
    if lv.shape[0] % 2:
        lv = np.vstack([lv, np.zeros((1, lv.shape[1]), np.int64)])
    marks = _outline(rois, lv.shape[1], lv.shape[0] // 2, w / lv.shape[1], h / lv.shape[0] * 2, selected)
    text = Text(no_wrap=True, overflow="crop")
    for r in range(lv.shape[0] // 2):
        text.append(_ylabel(r, rows, h))
        _cells(text, lv[2 * r], lv[2 * r + 1], marks.get(r, {}))
        text.append("\n")
    text.append(_xaxis(lv.shape[1], w))
    return text


def _cells(text: Text, top: npt.NDArray[np.int64], bottom: npt.NDArray[np.int64], marks: dict[int, str]) -> None:
    """One row of half-block cells, runs of equal style appended as one segment."""
    run, run_style = "", None
    for c, (a, b) in enumerate(zip(top, bottom, strict=True)):
        if c in marks:
            ch, style = marks[c], Style.parse(_ROI_STYLE) + Style(bgcolor=_grey((a + b) // 2))
        else:
            ch, style = "▀", Style(color=_grey(a), bgcolor=_grey(b))
        if style != run_style and run:
            text.append(run, run_style)
            run = ""
        run, run_style = run + ch, style
    if run:
        text.append(run, run_style)


def _outline(
    rois: Sequence[RoiVersion], cols: int, rows: int, sx: float, sy: float, selected: str | None
) -> dict[int, dict[int, str]]:
    """Cell (row, col) -> box-drawing glyph for every ROI edge."""
    marks: dict[int, dict[int, str]] = {}
    for roi in rois:
        double = roi.name == selected
        hz, vt, corners = ("═", "║", "╔╗╚╝") if double else ("─", "│", "┌┐└┘")
        c0, c1 = _cell(roi.x[0], sx, cols), _cell(roi.x[1] - 1, sx, cols)
        r0, r1 = _cell(roi.y[0], sy, rows), _cell(roi.y[1] - 1, sy, rows)
        for c in range(c0, c1 + 1):
            marks.setdefault(r0, {})[c] = hz
            marks.setdefault(r1, {})[c] = hz
        for r in range(r0, r1 + 1):
            marks.setdefault(r, {})[c0] = vt
            marks.setdefault(r, {})[c1] = vt
        for (r, c), g in zip(((r0, c0), (r0, c1), (r1, c0), (r1, c1)), corners, strict=True):
            marks[r][c] = g
    return marks


def _cell(pixel: int, scale: float, n: int) -> int:
    return int(min(n - 1, max(0, pixel / scale)))


def _ylabel(r: int, rows: int, h: int) -> str:
    every = max(1, rows // 4)
    if r % every == 0:
        return f"{round(r * h / rows):>{_MARGIN - 1}}┤"
    return " " * (_MARGIN - 1) + "│"


def _xaxis(cols: int, w: int) -> str:
    line = [" "] * cols
    step = max(10, cols // 4)
    for c in range(0, cols, step):
        label = str(round(c * w / cols))
        if c + len(label) <= cols:
            line[c:c + len(label)] = label
    return " " * _MARGIN + "".join(line) + " x"
