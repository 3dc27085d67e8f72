"""Shared contracts: configuration models, ShotBlock and errors. Imports nothing of ours."""

from __future__ import annotations

from .config import (
    ANALYSIS_SECTIONS,
    I0,
    PULSE_POINT,
    ROI_NAME,
    Alarm,
    Calibration,
    Channel,
    Config,
    EdgesRange,
    EuxfelRunSource,
    KaraboSource,
    Mask,
    PointPumpProbe,
    PulseModuloPumpProbe,
    PumpProbe,
    Record,
    ReplaySource,
    Roi,
    SaclaSource,
    Scan,
    SimEvent,
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
    "ANALYSIS_SECTIONS", "Alarm", "Channel", "Mask",
    "AnalysisVersion", "DarkFrame", "DarkVersion", "ROI_NAME", "Calibration", "Config", "ConfigError", "Cutout", "DetectorInfo", "SourceInfo", "EdgesRange", "Frames", "I0",
    "KaraboSource", "PointPumpProbe", "PumpProbe", "Record", "RecordingError", "ReplaySource",
    "Roi", "RoiTable", "RoiVersion", "SaclaSource", "Scan", "ShotBlock", "ShotwatchRuntimeError", "SimEvent", "SimSource", "Source",
    "SourceError", "TagModuloPumpProbe", "UsageError", "Veto", "demo_text", "load_config",
    "EuxfelRunSource", "PULSE_POINT", "PulseModuloPumpProbe", "TrainModuloPumpProbe",
    "parse_config", "roi_key", "split_roi_key",
]
