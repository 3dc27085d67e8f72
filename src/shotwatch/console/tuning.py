"""The console's tuning constants, in one place, each with the reason for its value.

Most are about bytes on the wire to the operator's terminal (STYLE.md, bandwidth habits):
a slow SSH link must never queue output ahead of the keys the operator types.
"""

from __future__ import annotations

# What a console keeps is what a recomputation sends it: one definition, beside the reducers.
from ..reducers.liveset import HIST_BINS, TREND_BLOCKS, WINDOW_SHOTS

__all__ = [
    "ERROR_TOAST_S", "FEED_POLL_S", "GRAB_FRAMES", "GREY_LEVELS", "HELLO_RETRY_S", "HELLO_TIMEOUT_S",
    "DARK_FRAMES", "HIST_BINS", "IMAGE_EVERY", "NAMED_I0", "INFO_TOAST_S", "LOOP_ERROR_PAUSE_S", "NOTICE_HISTORY", "PLOT_EVERY",
    "REFRESH_HZ", "REFRESH_HZ_LOW", "SEEK_STEP_S", "SNAPSHOT_EVERY", "SPARK_MAX", "SPARK_MAX_LOW",
    "STALE_AFTER_S", "TAG_RANGES_SHOWN", "TREND_BLOCKS", "WINDOW_SHOTS",
]

# --- painting ------------------------------------------------------------------------------

REFRESH_HZ = 1.0
"""Paints per second: at 120x40 the steady state stays near 2 kB/s, well inside 64 kbit/s."""

REFRESH_HZ_LOW = 0.5
"""--low-bandwidth: half the paints, for 9600 baud (the budget there is 800 B/s)."""

PLOT_EVERY = 5.0
"""Seconds between plot repaints: a plot is the largest region (~3 kB), the numbers above it
say what changed in between."""

IMAGE_EVERY = 10.0
"""Seconds between thumbnail repaints (a grab the operator asked for is shown at once): a
colour thumbnail costs far more than the text around it."""

SNAPSHOT_EVERY = 0.5
"""Most seconds between two snapshots from the feed thread (and at least two per paint): a
painted age is then at most ~1 s behind, never a whole 2 s period, which read as STALE."""

SPARK_MAX = 48
"""Sparkline glyphs per ROI row: each is 3 bytes of UTF-8, resent on every paint as it scrolls."""

SPARK_MAX_LOW = 16
"""--low-bandwidth: a third of that."""

GREY_LEVELS = 6
"""Grey levels of the thumbnail (of the palette's 24): fewer levels, longer runs of one style,
fewer bytes (~20 per style change)."""

# --- what is kept ----------------------------------------------------------------------------

NOTICE_HISTORY = 500
"""Notices kept for ``l``."""

# --- operator actions ------------------------------------------------------------------------

GRAB_FRAMES = 10
"""Frames averaged by ``g`` (the 2019 toolkit's operator ROI used a 10-frame average)."""

DARK_FRAMES = 600
"""Frames ``D`` offers to average into a dark (as ``shotwatch dark``: 20 s at 30 Hz)."""

NAMED_I0 = "I0"
"""What the correlation and histogram choosers call the I0 monitor (its facility name is long)."""

SEEK_STEP_S = 10.0
"""Seconds of recorded time ``[`` and ``]`` move a replay."""

STALE_AFTER_S = 2.0
"""The newest shot is older than this: its age turns visibly stale (a block is due every 0.5 s)."""

TAG_RANGES_SHOWN = 3
"""Received tag ranges on the status line; ``l`` lists them all."""

INFO_TOAST_S = 4.0
"""Seconds an information toast stays (the notice history keeps it)."""

ERROR_TOAST_S = 8.0
"""Warnings and errors stay twice as long."""

# --- the feed thread ---------------------------------------------------------------------------

FEED_POLL_S = 0.1
"""Longest wait in one feed poll: bounds how late the feed thread sees a stop or a UI command."""

HELLO_TIMEOUT_S = 0.5
"""One hello's wait for the recorder before the feed thread looks at its inbox again."""

HELLO_RETRY_S = 0.2
"""Pause between hellos while no recorder answers (never a busy loop)."""

LOOP_ERROR_PAUSE_S = 0.5
"""Pause after an unexpected error in the feed thread, so a persistent one cannot spin."""
