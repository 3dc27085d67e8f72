"""The console's reduction with a [[mask]] and channels equals reduce, across an ROI edit.

A mask needs the rectangle of every version a block carries, including one that ended with an
edit while its shots were still on the wire.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from shotwatch.console.model import LiveModel
from shotwatch.link.messages import BlockMsg, Hello, RoisMsg
from shotwatch.reducers import Analysis, SummaryReducer, roi_versions
from shotwatch.schemas import Cutout, DetectorInfo, Roi, RoiTable, ShotBlock, SourceInfo, parse_config

DET = "det"
CONFIG = {"roi": [{"name": "a", "detector": DET, "x": [0, 4], "y": [0, 4]}],
          "mask": [{"detector": DET, "x": [2, 6], "y": [0, 1]}],
          "channel": [{"name": "twice", "expr": "2 * a / pixels(a)"}]}


def test_live_model_with_a_mask_and_an_roi_edit_equals_reduce() -> None:
    cfg = parse_config(CONFIG, origin="test")
    table = RoiTable()
    table.apply({"a": cfg.roi[0]}, shot=0, tag=2)
    info = SourceInfo(kind="sim", detectors={DET: DetectorInfo(shape=(8, 8), dtype="uint16", ev_per_adu=1.0)})
    model = LiveModel(Hello(publish="m", control="m", config=cfg, source=info,
                            rois=[asdict(v) for v in table.all()], version="t"))
    table.set(Roi(name="a", detector=DET, x=(1, 6), y=(0, 2)), shot=3, tag=8)  # a/v2 from the 4th shot
    model.apply(RoisMsg(tuple(table.all())))
    rng = np.random.default_rng(1)
    v1 = rng.integers(0, 50, (6, 4, 4)).astype(np.uint16)
    v2 = rng.integers(0, 50, (6, 2, 5)).astype(np.uint16)
    on1 = np.array([1, 1, 1, 0, 0, 0], bool)
    v1[~on1] = 0
    v2[on1] = 0
    block = ShotBlock(np.arange(2, 14, 2, dtype=np.int64), np.zeros(6), {},
                      {"a/v1": Cutout(v1, on1, DET), "a/v2": Cutout(v2, ~on1, DET)}).validate()
    model.apply(BlockMsg(0, block))  # the block straddles the edit: it carries both versions
    got = model.snapshot().summary
    reducer = SummaryReducer(Analysis.from_config(cfg, detectors=info.detectors))
    want = reducer.result(reducer.update(reducer.init(), block, versions=roi_versions(table.all())))
    assert got == want
    # by hand: the mask covers columns 2..5 of row 0 (v1: its (0, 2..3); v2 at x 1..5: (0, 1..4))
    assert got["rois"]["a/v1"]["sum"] == float(v1[:3].sum() - v1[:3, 0, 2:4].sum())
    assert got["rois"]["a/v2"]["sum"] == float(v2[3:].sum() - v2[3:, 0, 1:5].sum())
    assert got["channels"]["twice"]["count"] == 6
