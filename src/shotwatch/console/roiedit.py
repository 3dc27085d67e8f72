"""ROI arithmetic for the console's keys and form: pure, and every error is one readable line."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from ..schemas import Roi

__all__ = ["form_values", "grown", "moved", "new_roi_values", "parse_form"]


def form_values(roi: Roi) -> dict[str, str]:
    """The form's fields prefilled from a rectangle."""
    return {"name": roi.name, "detector": roi.detector, "x0": str(roi.x[0]), "x1": str(roi.x[1]),
            "y0": str(roi.y[0]), "y1": str(roi.y[1])}


def parse_form(values: Mapping[str, str], *, shapes: Mapping[str, tuple[int, int]]) -> Roi:
    """The rectangle typed into the form, checked against the detector's shape.

    Raises:
        ValueError: one line naming the ROI, the field and what was expected.
    """
    name = values.get("name", "")
    coords: dict[str, int] = {}
    for field in ("x0", "x1", "y0", "y1"):
        text = values.get(field, "")
        try:
            coords[field] = int(text)
        except ValueError:
            raise ValueError(f"ROI {name!r}: {field}: expected a whole number of pixels, found {text!r}") from None
    detector = values.get("detector", "")
    if detector not in shapes:
        known = ", ".join(sorted(shapes)) or "none"
        raise ValueError(f"ROI {name!r}: detector: expected one of {known}, found {detector!r}")
    try:
        roi = Roi(name=name, detector=detector, x=(coords["x0"], coords["x1"]), y=(coords["y0"], coords["y1"]))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "rectangle"
        raise ValueError(f"ROI {name!r}: {where}: {err['msg']}") from None
    roi.check_shape(shapes[detector])
    return roi


def _check(roi: Roi, shape: tuple[int, int]) -> Roi:
    roi.check_shape(shape)
    return roi


def moved(roi: Roi, dx: int, dy: int, *, shape: tuple[int, int]) -> Roi:
    """``roi`` shifted by (dx, dy) pixels; ValueError if that leaves the detector."""
    x0, y0 = roi.x[0] + dx, roi.y[0] + dy
    if x0 < 0 or y0 < 0:
        raise ValueError(f"ROI {roi.name!r} on {roi.detector}: expected to stay inside the detector, "
                         f"found x0 = {x0}, y0 = {y0}")
    return _check(Roi(name=roi.name, detector=roi.detector, x=(x0, roi.x[1] + dx), y=(y0, roi.y[1] + dy)), shape)


def grown(roi: Roi, d: int, *, shape: tuple[int, int]) -> Roi:
    """``roi`` with ``d`` pixels more (or, negative, fewer) on each side."""
    x = (roi.x[0] - d, roi.x[1] + d)
    y = (roi.y[0] - d, roi.y[1] + d)
    if x[0] < 0 or y[0] < 0:
        raise ValueError(f"ROI {roi.name!r} on {roi.detector}: expected to stay inside the detector, "
                         f"found x = {list(x)}, y = {list(y)}")
    if x[0] >= x[1] or y[0] >= y[1]:
        raise ValueError(f"ROI {roi.name!r}: expected at least 1 pixel, found {roi.x[1] - roi.x[0]} x "
                         f"{roi.y[1] - roi.y[0]} cannot shrink further")
    return _check(Roi(name=roi.name, detector=roi.detector, x=x, y=y), shape)


def new_roi_values(taken: Iterable[str], *, detector: str, shape: tuple[int, int]) -> dict[str, str]:
    """Prefill for ``n``: a free name and a 32 x 32 box in the middle of the detector."""
    names = set(taken)
    k = 1
    while f"roi{k}" in names:
        k += 1
    h, w = shape
    side = min(32, h, w)
    x0, y0 = (w - side) // 2, (h - side) // 2
    return {"name": f"roi{k}", "detector": detector, "x0": str(x0), "x1": str(x0 + side),
            "y0": str(y0), "y1": str(y0 + side)}
