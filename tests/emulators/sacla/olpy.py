"""Emulator of SACLA's ``olpy`` (the online detector buffer), for tests and demos.

``StorageReader(det_id)`` raises if the detector is not in the stream; ``collect`` raises for
a tag that has left the buffer (older than ``buffer_seconds`` of emulated time), has not
arrived yet (``image_latency``) or never existed (skipped shot, ``drop_images``). Shares its
state with ``dbpy`` through :data:`_emu`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from _sacla_emu import EMU as _emu
from _sacla_emu import GAIN, APIError, salt_of, strict, u01

__all__ = ["APIError", "StorageBuffer", "StorageReader"]


class StorageReader:
    """A reader of one detector's image stream."""

    def __init__(self, det_id: str) -> None:
        strict("StorageReader", det_id=(det_id, str))
        if det_id not in _emu.detectors():
            raise APIError(f"StorageReader: detector {det_id!r} not in stream")
        self.det_id = det_id

    def collect(self, buffer: StorageBuffer, tag: int) -> int:
        """Load ``tag``'s image into ``buffer``; returns the tag collected."""
        strict("collect", tag=(tag, int))
        with _emu.lock:
            _emu.calls["collect"] = _emu.calls.get("collect", 0) + 1
            if self.det_id not in _emu.detectors():
                raise APIError(f"collect: detector {self.det_id!r} not in stream")
            tags = np.array([tag], dtype=np.int64)
            k, ok = _emu.slot_of(tags)
            rate, now = float(_emu.opts["rate"]), _emu.now()
            drop = float(_emu.opts["drop_images"])
            if drop > 0:
                ok &= u01(k, salt_of("img:" + self.det_id, int(_emu.opts["seed"]))) >= drop
            age = now - float(k[0]) / rate
            if not ok[0] or age < float(_emu.opts["image_latency"]):
                raise APIError(f"collect: tag {tag} not found in buffer")
            if age > float(_emu.opts["buffer_seconds"]):
                raise APIError(f"collect: tag {tag} has left the buffer")
        buffer._load(self.det_id, int(tag))
        return int(tag)


class StorageBuffer:
    """Holds the last collected image."""

    def __init__(self, reader: StorageReader) -> None:
        self._reader = reader
        self._det: str | None = None
        self._tag = 0

    def _load(self, det: str, tag: int) -> None:
        self._det, self._tag = det, tag

    def read_det_data(self, index: int) -> np.ndarray:
        """The collected image: float32 (1024, 512) raw ADU per MPCCD sensor."""
        if self._det is None or index != 0:
            raise APIError("read_det_data: nothing collected")
        return _emu.frame(self._det, self._tag)

    def read_det_info(self, index: int) -> dict[str, Any]:
        """The keys public SACLA code reads: gain ``mp_absgain``, pixel size and position (um)."""
        if self._det is None or index != 0:
            raise APIError("read_det_info: nothing collected")
        sensor = self._det.rpartition("-")[2]
        pos = (int(sensor) - 1) * 512.0 if self._det.startswith("MPCCD-8") else 0.0
        return {"mp_absgain": GAIN, "mp_pixelsizex": 50.0, "mp_pixelsizey": 50.0,
                "mp_posx": pos * 50.0, "mp_posy": 0.0, "mp_posz": 50000.0,
                "mp_rotationangle": 0.0}
