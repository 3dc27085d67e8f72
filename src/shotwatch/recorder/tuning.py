"""The recorder's tuning constants, in one place, each with the reason for its value.

Times are seconds of wall time (monotonic) unless said otherwise. The network service's own
bounds (request sizes, queue depths) live with it, in ``service.py``.
"""

from __future__ import annotations

__all__ = [
    "COMMIT_SECONDS", "HEALTH_WINDOW", "IMAGE_EVERY", "IMAGE_SLOTS", "MAX_GRAB_FRAMES",
    "MAX_PUBLISH_SHOTS", "PUBLISH_EVERY", "READ_TIMEOUT", "ROTATE_EVERY", "STATUS_EVERY",
]

PUBLISH_EVERY = 0.25
"""Blocks go out at least every 0.5 s (DESIGN.md: never more than one paint behind); half
that, so a console painting at 1 Hz always has a fresh block."""

MAX_PUBLISH_SHOTS = 2048
"""A published block holds at most this many shots: bounds what a stalled console's queue
holds (2048 shots of 4 ROIs of 64 x 64 uint16 are 67 MB) and the wire's frame sizes."""

STATUS_EVERY = 0.5
"""Heartbeat period: >= 1 Hz (DESIGN.md), so a console tells "no beam" from "recorder gone"
within its 3 s heartbeat timeout even when one status is late."""

IMAGE_EVERY = 3.0
"""Running-average images are the costliest messages (a float32 frame each) and the console
repaints its thumbnail only every few seconds anyway."""

ROTATE_EVERY = 1.0
"""One slot of the running image per second of frames..."""

IMAGE_SLOTS = 10
"""...and the newest ten slots averaged: the image follows the beam over ~10 s, like the 2019
toolkit's 10-frame average at its 1 Hz frame rate, without keeping frames."""

READ_TIMEOUT = 0.1
"""Longest one source read may wait: requests (ROI edits, stop) are applied between reads, so
this bounds how late an operator's change takes effect when no beam comes."""

COMMIT_SECONDS = 2.0
"""Commit to disk at least this often while shots come (DESIGN.md: a crash loses at most 2 s)."""

HEALTH_WINDOW = 5.0
"""The shot rate shown is averaged over this: long enough to be steady at SACLA's 30 Hz
blocks of up to 120 shots, short enough to show a beam loss within seconds."""

MAX_GRAB_FRAMES = 10_000
"""Most frames one grab averages: ~3 min at 60 Hz; past that the running image serves."""
