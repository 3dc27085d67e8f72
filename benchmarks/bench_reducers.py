"""Throughput of shot_table and SummaryReducer.update (4 ROIs of 64x64 uint16).

`make bench` runs it; it prints JSON lines. The baseline, measured in the same run, is a
plain ``numpy.sum`` over the same cutouts (the floor any reduction pays to read pixels).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import numpy as np

from _common import emit
from shotwatch.reducers import Analysis, SummaryReducer, shot_table
from shotwatch.schemas import I0, Cutout, RoiVersion, ShotBlock, TagModuloPumpProbe, Veto

DET = "MPCCD-1N0-M06-004"
PD, BEAM, MOTOR = "pd/charge", "beam/status", "motor/position"


def perf_block(n: int = 1200, *, dense: bool = False, dtype: str = "uint16") -> ShotBlock:
    """Dark noise around 30 ADU with sparse photons (~300 ADU), like a thresholded MPCCD ROI.

    ``dense`` puts half the pixels above the threshold instead (the slowest case).
    """
    rng = np.random.default_rng(0)
    cutouts = {}
    for k in range(4):
        pix = rng.poisson(30.0, (n, 64, 64)).astype(np.uint16)
        hits = rng.random(pix.shape) < (0.5 if dense else 0.01)
        pix[hits] += 300
        cutouts[f"r{k}/v1"] = Cutout(pix.astype(dtype), rng.random(n) > 0.01, DET)
    points = {PD: rng.gamma(4, 0.05, n), BEAM: np.ones(n), MOTOR: rng.uniform(-1000, 3000, n)}
    return ShotBlock(np.arange(n, dtype=np.int64) * 2, np.zeros(n), points, cutouts).validate()


ANALYSIS = Analysis(ev_per_adu={DET: 10.95}, threshold_ev=1000.0, photon_energy_ev=9000.0,
                    i0=I0(name=PD, min=0.05), vetoes=(Veto(name=BEAM, min=0.5),), scan_name=MOTOR,
                    scan_scale=0.001, edges=tuple(np.linspace(-1, 3, 21)),
                    pump_probe=TagModuloPumpProbe(cycle=4, on=[0]))


def shots_per_second(fn: Callable[[], object], n: int, repeat: int = 7) -> float:
    """Best of ``repeat`` runs, in CPU time of this process (other jobs on a shared machine
    take wall time, not CPU time; the work is single-threaded)."""
    fn()
    best = min(_time(fn) for _ in range(repeat))
    return n / best


def _time(fn: Callable[[], object]) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


NO_RECTS: dict[str, RoiVersion] = {}
"""shot_table's ROI rectangles: none needed without a dark, a mask or pixels()."""


def main() -> None:
    reducer = SummaryReducer(ANALYSIS)
    state = reducer.init()
    rates = {}
    for label, block in (("sparse", perf_block()), ("dense", perf_block(dense=True))):
        table = shot_table(block, ANALYSIS, NO_RECTS)
        rates[f"shot_table {label}"] = shots_per_second(partial(shot_table, block, ANALYSIS, NO_RECTS), len(block))
        rates[f"update {label}"] = shots_per_second(partial(reducer.update, state, block), len(block))
        rates["update given table"] = shots_per_second(partial(reducer.update, state, block, table=table),
                                                       len(block))
    no_threshold = replace(ANALYSIS, threshold_ev=None)
    block = perf_block()
    rates["shot_table no threshold"] = shots_per_second(partial(shot_table, block, no_threshold, NO_RECTS), len(block))
    block = perf_block(dtype="float32")
    rates["shot_table float32"] = shots_per_second(partial(shot_table, block, ANALYSIS, NO_RECTS), len(block))
    block = perf_block()
    base = shots_per_second(lambda: [c.pixels.sum(axis=(1, 2)) for c in block.cutouts.values()], len(block))
    for label, rate in rates.items():
        emit("reducers", label, rate, "shots/s (CPU time, best of 7)", baseline="numpy.sum of the same cutouts",
             baseline_value=base)


if __name__ == "__main__":
    main()
