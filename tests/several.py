"""Recordings for ``reduce REC [REC …]`` tests: ROI versions, analysis versions, darks, vetoes, channels.

Written with RecordingWriter from seeded blocks (no recorder, no simulator), so a set of
them takes well under a second. Each recording:

- ``bragg`` follows its own list of rectangles (ROI versions); ``bg`` never moves;
- analysis version 1 (no dark) at the start; half-way a dark version (its own seed) and
  analysis version 2 naming it, with ``i0.min`` raised (its newest, used by ``reduce``);
- aliases, channels (``i0sum`` as I0, a background-subtracted ``net``), a beam veto, a
  mask, a noisy-pixel limit on the dark, a scan and tag-modulo pump-probe;
- tags 1000, 1002, … in every recording (tags repeat across recordings).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shotwatch.cli import main
from shotwatch.recording import RecordingWriter
from shotwatch.schemas import (
    Cutout,
    DarkFrame,
    DetectorInfo,
    Roi,
    RoiTable,
    ShotBlock,
    SourceInfo,
    parse_config,
)

DET = "MPCCD-1"
SHAPE = (32, 48)
PD1, PD2, MOTOR, BEAM = "bl/pd_1/charge", "bl/pd_2/charge", "bl/motor/position", "bl/beam/status"
Rect = tuple[tuple[int, int], tuple[int, int]]  # (x, y)
A: Rect = ((0, 8), (0, 8))
B: Rect = ((4, 12), (2, 10))
C: Rect = ((20, 28), (8, 16))
BG: Rect = ((32, 48), (16, 24))
SECTIONS: dict[str, Any] = {
    "calibration": {"threshold_ev": 3.0, "dark_noise_max_adu": 4.0},
    "mask": [{"detector": DET, "x": [0, 2], "y": [0, 2]}],
    "alias": {"d1": PD1, "d2": PD2},
    "channel": [{"name": "i0sum", "expr": "d1 + d2"},
                {"name": "net", "expr": "bragg - pixels(bragg) / pixels(bg) * bg"}],
    "i0": {"name": "i0sum", "min": 0.05},
    "veto": [{"name": BEAM, "min": 0.5}],
    "scan": {"name": MOTOR, "unit": "ps", "edges": {"start": 0.0, "stop": 4.0, "count": 4}},
    "pump_probe": {"mode": "tag-modulo", "cycle": 4, "on": [0]},
}
BLOCK = 500


def sections(**changes: Any) -> dict[str, Any]:
    """SECTIONS with top-level keys of sections replaced: ``sections(i0={...})``."""
    out = copy.deepcopy(SECTIONS)
    out.update(changes)
    return out


def write(path: Path, *, seed: int, shots: int, bragg: list[tuple[int, Rect]], i0_min: float = 0.06) -> Path:
    """One recording of ``shots`` shots; ``bragg``: (first shot, rectangle), first shot 0 and
    each a multiple of BLOCK; half-way (rounded to a block) the dark and analysis version 2."""
    cfg = parse_config({**SECTIONS, "roi": [_roi("bragg", bragg[0][1]), _roi("bg", BG)]}, origin="test")
    source = SourceInfo(kind="sim", run=seed, points=[PD1, PD2, MOTOR, BEAM],
                        detectors={DET: DetectorInfo(shape=SHAPE, dtype="uint16", ev_per_adu=1.0)})
    table = RoiTable()
    table.set(Roi(**_roi("bragg", bragg[0][1])), shot=0, tag=1000)
    table.set(Roi(**_roi("bg", BG)), shot=0, tag=1000)
    rng = np.random.default_rng(seed)
    dark_mean = rng.normal(100.0, 2.0, SHAPE).astype(np.float32)
    dark_std = rng.gamma(4.0, 0.6, SHAPE).astype(np.float32)  # a few pixels above 4 ADU: masked
    half = shots // 2 // BLOCK * BLOCK
    changes = dict(bragg[1:])
    with RecordingWriter.create(path, config=cfg, source=source, rois=table, points=cfg.recorded_points([]),
                                commit_seconds=3600.0) as w:
        for first in range(0, shots, BLOCK):
            n = min(BLOCK, shots - first)
            if first in changes:
                table.set(Roi(**_roi("bragg", changes[first])), shot=first, tag=1000 + 2 * first)
                w.set_rois(table)
            if first == half:
                k = w.add_dark(DET, DarkFrame(dark_mean, dark_std, 100, 1, 199), time=1.7e9)
                w.add_analysis(sections(calibration={**SECTIONS["calibration"], "dark": {DET: k}},
                                        i0={**SECTIONS["i0"], "min": i0_min}),
                               first_shot=first, first_tag=1000 + 2 * first, by="test", time=1.7e9)
            w.write(_block(rng, first, n, table, dark_mean))
    return path


def _roi(name: str, rect: Rect) -> dict[str, Any]:
    return {"name": name, "detector": DET, "x": list(rect[0]), "y": list(rect[1])}


def _block(rng: np.random.Generator, first: int, n: int, table: RoiTable, dark: np.ndarray) -> ShotBlock:
    tags = 1000 + 2 * np.arange(first, first + n, dtype=np.int64)
    i0 = rng.gamma(4.0, 0.05, (2, n))
    points = {PD1: i0[0].copy(), PD2: i0[1].copy(), MOTOR: rng.uniform(0, 4.2, n), BEAM: (rng.random(n) > 0.05) * 1.0}
    points[PD2][rng.random(n) < 0.02] = np.nan
    cutouts = {}
    for versions in table.versions.values():
        v = versions[-1]
        (x0, x1), (y0, y1) = v.x, v.y
        signal = 20.0 * (i0.sum(0) / 0.4) if v.name == "bragg" else np.full(n, 5.0)
        pixels = rng.poisson(dark[y0:y1, x0:x1] + signal[:, None, None]).astype(np.uint16)
        valid = rng.random(n) > 0.02
        pixels[~valid] = 0
        cutouts[v.key] = Cutout(pixels, valid, DET)
    return ShotBlock(tags, 1.7e9 + tags / 60.0, points, cutouts).validate()


def standard_set(root: Path) -> dict[str, Path]:
    """The recordings the tests share.

    ``r1``: bragg A, then B for two blocks, then A again (three versions, two merge with
    ``r2``'s A); ``r2``: bragg A throughout; ``r3``: bragg C and a newest analysis that
    differs from the others' (``i0.min``).
    """
    root.mkdir(parents=True, exist_ok=True)
    return {
        "r1": write(root / "r1.zarr", seed=1, shots=9000, bragg=[(0, A), (1000, B), (2000, A)]),
        "r2": write(root / "r2.zarr", seed=2, shots=7000, bragg=[(0, A)]),
        "r3": write(root / "r3.zarr", seed=3, shots=3000, bragg=[(0, C)], i0_min=0.07),
    }


def config_file(root: Path) -> Path:
    """A ``-c`` file with the recordings' analysis, no dark (it holds no darks of its own)."""
    path = root / "analysis.toml"
    lines = ["[calibration]", "threshold_ev = 3.0", "dark_noise_max_adu = 4.0",
             "[[mask]]", f'detector = "{DET}"', "x = [0, 2]", "y = [0, 2]",
             "[alias]", f'd1 = "{PD1}"', f'd2 = "{PD2}"',
             "[[channel]]", 'name = "i0sum"', 'expr = "d1 + d2"',
             "[[channel]]", 'name = "net"', 'expr = "bragg - pixels(bragg) / pixels(bg) * bg"',
             "[i0]", 'name = "i0sum"', "min = 0.06",
             "[[veto]]", f'name = "{BEAM}"', "min = 0.5",
             "[scan]", f'name = "{MOTOR}"', 'unit = "ps"', "edges = {start = 0.0, stop = 4.0, count = 4}",
             "[pump_probe]", 'mode = "tag-modulo"', "cycle = 4", "on = [0]"]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_close(got: Any, expected: Any, where: str = "") -> None:
    """Same JSON tree: same keys, integers and strings equal, floats to 1e-9 relative."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected), f"{where}: {list(got)} != {list(expected)}"
        for k in expected:
            assert_close(got[k], expected[k], f"{where}.{k}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_close(g, e, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(got, bool):
        assert isinstance(got, float) and abs(got - expected) <= 1e-9 * abs(expected), f"{where}: {got} != {expected}"
    else:
        assert type(got) is type(expected) and got == expected, f"{where}: {got!r} != {expected!r}"


Cli = Callable[..., tuple[int, str, str]]
"""``shotwatch ARGV`` in this process: (exit code, stdout, stderr); the ``cli`` fixture."""


def main_in_process(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """``shotwatch ARGV`` in this process (a Dask client or cluster lives in the test's process)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def reduced(cli: Cli, *argv: object) -> dict[str, Any]:
    """``reduce ARGV --json``, which must succeed silently."""
    code, out, err = cli("reduce", *argv, "--json")
    assert (code, err) == (0, ""), err
    result: dict[str, Any] = json.loads(out)
    return result
