"""Error propagation against a Monte-Carlo: sem_norm must predict the scatter of norm.

K = 240 independent runs of a small physical model with known truth (a pedestal under every
pixel, removed by a dark; Poisson photons proportional to I0 and to a per-bin signal that the
pump laser raises; Gaussian read noise; gamma-distributed I0), each reduced by the real
reducers from synthetic blocks (no recorder). Over the runs, the standard deviation of
``norm`` (per scan bin, on and off) must equal the mean ``sem_norm`` within 15 %, and the
scatter of ``diff`` the mean ``diff_sem``. With K = 240 the standard deviation itself is known
to about ±5 % (1/√(2K)), so 15 % is three of its standard errors: a wrong error formula
(e.g. the old sem of the mean of ratios, or a missing I0 term) fails by far more.

Run ``python tests/test_sem_norm_mc.py`` for the table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shotwatch.reducers import Analysis, SummaryReducer
from shotwatch.schemas import I0, Cutout, DarkFrame, RoiVersion, ShotBlock, TagModuloPumpProbe

DET = "det"
K = 240
SHOTS = 1600
EDGES = (0.0, 1.0, 2.0, 3.0, 4.0)
SIGNAL = np.array([40.0, 55.0, 80.0, 65.0])  # photons per unit I0, per bin (laser off)
PUMP = np.array([0.0, 0.1, 0.25, 0.15])  # relative rise with the laser on
GAIN_ADU = 3.0  # ADU per photon
READ = 2.0  # ADU read noise
PEDESTAL = np.array([[100.0, 140.0], [90.0, 120.0]])
VERSION = {"r/v1": RoiVersion("r", 1, DET, (0, 2), (0, 2), 0, 0)}
ANALYSIS = Analysis(
    ev_per_adu={DET: 1.0}, i0=I0(name="i0", min=1e-6), scan_name="delay", edges=EDGES,
    pump_probe=TagModuloPumpProbe(cycle=4, on=[0]),
    darks={DET: DarkFrame(PEDESTAL.astype(np.float32), np.full((2, 2), READ, np.float32), 1000, 0, 999)},
)


def run(seed: int) -> dict[str, Any]:
    """One run: SHOTS shots in three blocks, reduced and merged; the summary result."""
    rng = np.random.default_rng(seed)
    tags = 2 * np.arange(SHOTS, dtype=np.int64) + 1000
    i0 = rng.gamma(4.0, 0.25, SHOTS)
    delay = rng.uniform(EDGES[0], EDGES[-1], SHOTS)
    j = np.minimum(delay.astype(int), len(SIGNAL) - 1)
    on = tags % 4 == 0
    photons = rng.poisson(SIGNAL[j] * (1 + PUMP[j] * on) * i0)
    share = rng.multinomial(photons, [0.4, 0.3, 0.2, 0.1]).reshape(SHOTS, 2, 2)  # spot profile
    raw = PEDESTAL + GAIN_ADU * share + rng.normal(0.0, READ, (SHOTS, 2, 2))
    block = ShotBlock(tags, np.zeros(SHOTS), {"i0": i0, "delay": delay},
                      {"r/v1": Cutout(raw.astype(np.float32), np.ones(SHOTS, bool), DET)})
    r = SummaryReducer(ANALYSIS)
    parts = [r.update(r.init(), block.slice(a, b), versions=VERSION) for a, b in ((0, 500), (500, 1100), (1100, SHOTS))]
    return r.result(r.merge(parts[0], r.merge(parts[1], parts[2])))


def scatter_table() -> list[tuple[str, int, float, float, float]]:
    """(series, bin, observed std of norm or diff, mean sem_norm or diff_sem, ratio) per bin."""
    runs = [run(seed)["scan"]["rois"]["r"] for seed in range(K)]
    rows = []
    for series, value, error in (("all", ("norm",), ("sem_norm",)), ("on", ("on", "norm"), ("on", "sem_norm")),
                                 ("off", ("off", "norm"), ("off", "sem_norm")), ("diff", ("diff",), ("diff_sem",))):
        def pick(r: dict[str, Any], path: tuple[str, ...]) -> list[float]:
            for p in path:
                r = r[p]
            return r  # type: ignore[return-value]
        v = np.array([pick(r, value) for r in runs], np.float64)
        e = np.array([pick(r, error) for r in runs], np.float64)
        for b in range(len(SIGNAL)):
            observed, predicted = float(np.std(v[:, b], ddof=1)), float(np.mean(e[:, b]))
            rows.append((series, b, observed, predicted, predicted / observed))
    return rows


def test_sem_norm_matches_the_monte_carlo_scatter() -> None:
    rows = scatter_table()
    bad = [row for row in rows if abs(row[4] - 1) > 0.15]
    assert not bad, bad
    # the old error bar (sem of the mean of ratios) is not what norm scatters by: it must differ
    runs = [run(seed)["scan"]["rois"]["r"] for seed in range(40)]
    sem = np.mean([r["sem"][0] for r in runs])
    sem_norm = np.mean([r["sem_norm"][0] for r in runs])
    assert abs(sem / sem_norm - 1) > 0.05


if __name__ == "__main__":
    print(f"| series | bin | observed std (K = {K}) | mean sem_norm | ratio |")
    print("|---|---|---|---|---|")
    for series, b, observed, predicted, ratio in scatter_table():
        print(f"| {series} | {b} | {observed:.5g} | {predicted:.5g} | {ratio:.3f} |")
