"""Pure formatters: numbers and snapshots in, text out. No Textual here, only ``rich.text``.

Every widget is a thin shell over one of these, so each can be tested as a string. Colour is
kept to a minimum on purpose (STYLE.md, bandwidth habits): one style per element, and the
stale/gone markers are words as well as styles so they survive a monochrome terminal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from rich.text import Text

from ..link.messages import Progress, Status
from ..schemas import DarkFrame, Roi
from .tuning import STALE_AFTER_S, TAG_RANGES_SHOWN

__all__ = [
    "BARS", "LAYERS", "alarm_key", "layer_head", "recompute_text", "recomputed_text", "STALE_AFTER_S", "fmt_age", "fmt_bytes", "fmt_num", "fmt_rate", "rect_text", "selected_text",
    "short_name", "sparkline", "status_text", "tag_ranges_text", "vetoes_text",
]

BARS = "▁▂▃▄▅▆▇█"
"""Sparkline glyphs, lowest to highest."""
MISSING = "missing"


def sparkline(values: Sequence[float] | np.ndarray, width: int) -> str:
    """The last ``width`` values as bar glyphs scaled between their min and max.

    NaN (a missing shot) is a space, never a low bar, so a gap is not mistaken for a zero.
    A constant series is drawn at mid height. The result is exactly ``width`` characters.
    """
    if width <= 0:
        return ""
    v = np.asarray(values, dtype=np.float64)[-width:]
    finite = np.isfinite(v)
    out = [" "] * (width - len(v))
    if not finite.any():
        return "".join(out + [" "] * len(v))
    lo, hi = float(v[finite].min()), float(v[finite].max())
    span = hi - lo
    top = len(BARS) - 1
    for x, ok in zip(v, finite, strict=True):
        if not ok:
            out.append(" ")
        elif span <= 0:
            out.append(BARS[top // 2])
        else:
            out.append(BARS[min(top, int((x - lo) / span * top + 0.5))])
    return "".join(out)


def fmt_num(x: float | None) -> str:
    """A value for the operator: 4 significant digits; None is "—" (no statistic), NaN "missing"."""
    if x is None:
        return "—"
    if not math.isfinite(x):
        return MISSING
    ax = abs(x)
    if ax != 0 and (ax >= 1e5 or ax < 1e-3):
        return f"{x:.3e}"
    return f"{x:.4g}"


def fmt_rate(hz: float | None) -> str:
    """Shot rate as ``NN.N Hz`` (width-stable up to 999.9 Hz)."""
    if hz is None or not math.isfinite(hz):
        return "  —  Hz"
    return f"{hz:4.1f} Hz"


def fmt_age(age_s: float | None, *, stale_after: float = STALE_AFTER_S) -> Text:
    """Age of the newest shot; past ``stale_after`` it reads "STALE" in reverse video."""
    if age_s is None:
        return Text("no shots yet", style="bold")
    text = f"{age_s:.1f} s" if age_s < 60 else f"{age_s / 60:.0f} min"
    if age_s > stale_after:
        return Text(f"{text} STALE", style="reverse bold")
    return Text(text)


def fmt_bytes(n: int | None) -> str:
    """Bytes in decimal units: ``12.3 MB``."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover - loop always returns


def tag_ranges_text(ranges: Sequence[tuple[int, int]], *, limit: int = TAG_RANGES_SHOWN) -> str:
    """Received tag ranges as ``reduce --tags`` would take them (``A:B``, B exclusive).

    More than ``limit`` ranges are abbreviated to the first ones and a count.
    """
    if not ranges:
        return "none"
    parts = [f"{a}:{b}" for a, b in ranges[:limit]]
    if len(ranges) > limit:
        parts.append(f"… ({len(ranges)} ranges, `l` lists all)")
    return ", ".join(parts)


def vetoes_text(shots: Mapping[str, object] | None) -> str:
    """``shots 1200  accepted 1100  vetoed i0 40 · beamstatus 60`` from a summary's ``shots``."""
    if not shots:
        return "shots 0"
    vetoed = shots.get("vetoed") or {}
    assert isinstance(vetoed, Mapping)
    parts = [f"{_short(name)} {count}" for name, count in vetoed.items()]
    text = f"shots {shots.get('total', 0)}  accepted {shots.get('accepted', 0)}"
    return text + ("  vetoed " + " · ".join(parts) if parts else "")


def short_name(name: str) -> str:
    """A facility name shortened for narrow screens: the last two path parts of ``a_b_c/d``."""
    if "/" not in name:
        return name
    head, _, tail = name.rpartition("/")
    return f"{head.rsplit('_', 1)[-1]}/{tail}"


_short = short_name


def status_text(
    status: Status | None,
    *,
    connected: bool,
    skipped: int,
    now: float,
    tag_ranges: Sequence[tuple[int, int]],
    paused: bool = False,
    source_label: str | None = None,
    analysis: tuple[int, Progress | None, bool] | None = None,
) -> Text:
    """The two status lines.

    Line 1: source, run, last tag, rate, age of the newest shot, skipped blocks. Line 2:
    alarms, recorder state, recording size, free disk, the analysis version the numbers are
    under and a recomputation under way (``analysis``: version, progress, awaiting its state;
    default: the recorder's), received tag ranges, missing detectors.
    ``now`` is the console's clock: the age shown grows between heartbeats so that a silent
    recorder ages visibly instead of freezing at its last report.
    """
    text = Text(no_wrap=True, overflow="ellipsis")
    if not connected:
        text.append("recorder gone — reconnecting", style="reverse bold")
        text.append(" · ")
    if status is None:
        text.append("waiting for the recorder…")
    else:
        _status_line1(text, status, now=now, source_label=source_label)
    if skipped:
        text.append(f" · skipped {skipped} blocks", style="bold")
    text.append("\n")
    if status is not None:
        _status_line2(text, status, analysis or (status.analysis_version, status.recompute, False))
    text.append(f"tags {tag_ranges_text(tag_ranges)}")
    if status is not None and status.not_in_stream:
        text.append(" · missing: " + ", ".join(_short(n) for n in status.not_in_stream), style="bold")
    if paused:
        text.append(" · PAUSED", style="reverse")
    return text


def _status_line1(line: Text, st: Status, *, now: float, source_label: str | None) -> None:
    age = None if st.newest_age_s is None else st.newest_age_s + max(0.0, now - st.time)
    line.append(source_label or st.source)
    if st.speed is not None and st.speed != 1.0:  # a replay off its recorded pace
        line.append(" max" if st.speed == 0 else f" x{st.speed:g}")
    if st.source_state != "running":
        line.append(f" ({st.source_state})", style="bold")
    line.append(f" · run {st.run if st.run is not None else '?'}")
    line.append(f" · tag {st.last_tag if st.last_tag is not None else '—'}")
    line.append(f" · {fmt_rate(st.rate_hz)} · age ")
    line.append_text(fmt_age(age))


def _status_line2(line: Text, st: Status, analysis: tuple[int, Progress | None, bool]) -> None:
    if st.alarms:  # first, where a narrow terminal cannot cut it off (the line is red as well)
        line.append("ALARM " + "; ".join(st.alarms), style="reverse bold")
        line.append(" · ")
    line.append(st.state, style="reverse bold" if st.state == "failed" else "")
    if st.state == "recording" or st.bytes:
        line.append(f" {fmt_bytes(st.bytes)}")
    if st.free_bytes is not None:
        line.append(f" · free {fmt_bytes(st.free_bytes)}")
    version, progress, awaiting = analysis
    line.append(f" · analysis v{version}")
    if progress is not None:
        line.append(f" · {recompute_text(progress.done, progress.total)}", style="bold")
    elif awaiting:  # the change came, its recomputed state has not (and no progress yet)
        line.append(" · recomputing…", style="bold")
    line.append(" · ")


def recompute_text(done: int, total: int) -> str:
    """``recomputing: 1,200 of 108,000 shots`` (the recorder's progress in the status line)."""
    return f"recomputing: {done:,} of {total:,} shots"


def recomputed_text(shots: int, seconds: float) -> str:
    """The notice when a recomputed state is swapped in: ``recomputed 108,000 shots in 4.2 s``."""
    return f"recomputed {shots:,} shots in {seconds:.1f} s"


def alarm_key(text: str) -> str:
    """Which alarm a line of ``Status.alarms`` is (its first word: ``stale``, ``accepted``,
    ``beam``): its figures change while it rings, its kind does not."""
    return text.split(None, 1)[0].rstrip(":") if text.strip() else ""


def roi_line(
    name: str,
    values: Sequence[float] | np.ndarray,
    *,
    width: int,
    mean: float | None,
    norm: float | None,
    count: int | None,
    missing: bool = False,
    selected: bool = False,
    spark_max: int = 48,
    plain: bool = False,
) -> Text:
    """One ROI (or I0) row: name, sparkline, current value, running mean, norm, count.

    ``missing`` (its detector is not in the stream) replaces every number by "missing";
    ``count`` None (the I0 row) leaves out norm and count. The sparkline takes the width
    left over, at most ``spark_max`` glyphs. ``plain`` (--low-bandwidth) drops the styles:
    each costs an escape sequence on every repaint.
    """
    label = f"{'▶' if selected else ' '}{name[:12]:<12} "
    nums = f" {fmt_num(_last(values)):>9} mean {fmt_num(mean):>9}"
    if count is not None:  # I0 has neither a norm nor a count of its own
        nums += f" norm {fmt_num(norm):>9} n {count}"
    if missing:
        nums = "  missing"
    # Capped: every glyph is 3 bytes of UTF-8, resent on every tick as the line scrolls.
    spark_w = max(0, min(spark_max, width - len(label) - len(nums) - 1))
    text = Text(label, style="bold" if selected and not plain else "")
    text.append(sparkline(values, spark_w), style="" if plain else "cyan")
    text.append(nums)
    return text


def _last(values: Sequence[float] | np.ndarray) -> float | None:
    return float(values[-1]) if len(values) else None


def notice_lines(notices: Iterable[tuple[float, str, str]]) -> str:
    """Notice history, newest last: ``HH:MM:SS level text``."""
    import time as _time

    return "\n".join(
        f"{_time.strftime('%H:%M:%S', _time.gmtime(t))} {level:<7} {text}" for t, level, text in notices
    )


def rect_text(roi: Roi, *, name: bool = True) -> str:
    """``bragg on DET: x [184, 216) y [100, 132)`` (without the name part if ``name`` is false)."""
    where = f"{roi.name} on {roi.detector}: " if name else ""
    return f"{where}x [{roi.x[0]}, {roi.x[1]}) y [{roi.y[0]}, {roi.y[1]})"


def selected_text(applied: Roi | None, requested: Roi | None, *, selected: str | None, view: str) -> str:
    """The selected ROI as the recorder applied it, and a rectangle asked for but not applied yet."""
    if applied is None and requested is None:
        return "no ROI — n adds one"
    text = f"▶ {rect_text(applied)}" if applied is not None else f"▶ {selected}: not applied yet"
    if requested is not None:
        text += f" → requested {rect_text(requested, name=False)}"
    return text + f" · view {view}"


LAYERS = ("image", "dark", "mask")
"""What the detector view shows, in the order ``d`` cycles through them."""


def layer_head(detector: str, layer: str, *, frame: DarkFrame | None = None, version: int | None = None,
               mask: np.ndarray | None = None) -> str:
    """The detector view's first line for the dark or the mask (or why there is none)."""
    if layer == "dark":
        if frame is None:
            return f"{detector} · dark: none in the analysis in force — D takes one"
        v = f" v{version}" if version is not None else ""
        std = np.asarray(frame.std, np.float64)
        return (f"{detector} · dark{v}: mean of {frame.frames} frames (tags {frame.first_tag}–{frame.last_tag}), "
                f"median {fmt_num(float(np.nanmedian(frame.mean)))} ADU, noise {fmt_num(float(np.nanmedian(std)))} ADU")
    if mask is None or not mask.any():
        return f"{detector} · mask: no pixel masked ([[mask]], calibration.dark_noise_max_adu)"
    return f"{detector} · mask: {int(mask.sum()):,} of {mask.size:,} pixels never count (white)"
