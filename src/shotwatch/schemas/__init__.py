"""Shared contracts: configuration models, ShotBlock and errors. Imports nothing of ours."""

from __future__ import annotations

from .config import (
    I0,
    PULSE_POINT,
    ROI_NAME,
    Calibration,
    Config,
    EdgesRange,
    EuxfelRunSource,
    KaraboSource,
    PointPumpProbe,
    PulseModuloPumpProbe,
    PumpProbe,
    Record,
    ReplaySource,
    Roi,
    SaclaSource,
    Scan,
    SimSource,
    Source,
    TagModuloPumpProbe,
    TrainModuloPumpProbe,
    Veto,
)
from .errors import ConfigError, RecordingError, ShotwatchRuntimeError, SourceError, UsageError
from .loading import demo_text, load_config, parse_config
from .rois import RoiTable, RoiVersion
from .shotblock import Cutout, Frames, ShotBlock, roi_key, split_roi_key
from .source_info import DetectorInfo, SourceInfo
from .versions import AnalysisVersion, DarkFrame, DarkVersion

__all__ = [
    "AnalysisVersion", "DarkFrame", "DarkVersion", "ROI_NAME", "Calibration", "Config", "ConfigError", "Cutout", "DetectorInfo", "SourceInfo", "EdgesRange", "Frames", "I0",
    "KaraboSource", "PointPumpProbe", "PumpProbe", "Record", "RecordingError", "ReplaySource",
    "Roi", "RoiTable", "RoiVersion", "SaclaSource", "Scan", "ShotBlock", "ShotwatchRuntimeError", "SimSource", "Source",
    "SourceError", "TagModuloPumpProbe", "UsageError", "Veto", "demo_text", "load_config",
    "EuxfelRunSource", "PULSE_POINT", "PulseModuloPumpProbe", "TrainModuloPumpProbe",
    "parse_config", "roi_key", "split_roi_key",
]
