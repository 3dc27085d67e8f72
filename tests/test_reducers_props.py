"""Reducers against a per-shot reference, and merge properties (any split = whole)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import synth
from shotwatch.reducers import Analysis, SummaryReducer, display_keys
from shotwatch.schemas import I0, PointPumpProbe, ShotBlock, TagModuloPumpProbe, Veto, split_roi_key

ROIS = {"a/v1": (4, 4), "a/v2": (4, 6), "b/v1": (3, 5)}


def analysis(*, i0: bool = True, scan: bool = True, pp: str | None = "tag", thr: float | None = 120.0,
             photon: float | None = 9000.0) -> Analysis:
    return Analysis(
        ev_per_adu={synth.DET: 3.65}, threshold_ev=thr, photon_energy_ev=photon,
        i0=I0(name=synth.I0, min=0.1, max=0.4) if i0 else None,
        vetoes=(Veto(name=synth.BEAM, min=0.5), Veto(name=synth.OTHER[1], max=1.0)),
        scan_name=synth.SCAN if scan else None, scan_scale=0.001, scan_offset=0.0,
        edges=tuple(np.linspace(-1.0, 3.0, 9)) if scan else (),
        pump_probe={"tag": TagModuloPumpProbe(cycle=4, on=[0]),
                    "point": PointPumpProbe(name=synth.OTHER[0], threshold=0.0), None: None}[pp],
    )


def stream(seed: int, sizes: list[int], dtype: str = "uint16") -> list[ShotBlock]:
    return list(synth.stream(seed, sizes, rois=ROIS, dtype=dtype, extra_points=2))


# --- the per-shot reference -----------------------------------------------------------------


def _shots(blocks: list[ShotBlock], a: Analysis) -> list[dict[str, Any]]:
    nan = float("nan")
    out = []
    for b in blocks:
        for i in range(len(b)):
            def point(name: str, i: int = i, b: ShotBlock = b) -> float:
                return float(b.points[name][i]) if name in b.points else nan
            i0 = point(a.i0.name) if a.i0 else nan
            ok = {}
            if a.i0:
                ok["i0"] = math.isfinite(i0) and i0 >= a.i0.min and (a.i0.max is None or i0 <= a.i0.max)
            for veto in a.vetoes:
                x = point(veto.name)
                ok[veto.name] = (not math.isnan(x) and (veto.min is None or x >= veto.min)
                                 and (veto.max is None or x <= veto.max))
            s = point(a.scan_name) * a.scan_scale + a.scan_offset if a.scan_name else nan
            e = a.edges
            bins = [j for j in range(len(e) - 1) if e[j] <= s < e[j + 1] or (j == len(e) - 2 and s == e[-1])]
            laser = -1
            if isinstance(a.pump_probe, TagModuloPumpProbe):
                laser = int(int(b.tags[i]) % a.pump_probe.cycle in a.pump_probe.on)
            elif isinstance(a.pump_probe, PointPumpProbe):
                x = point(a.pump_probe.name)
                laser = -1 if math.isnan(x) else int(x > a.pump_probe.threshold)
            values = {}
            for key, c in b.cutouts.items():
                if not c.valid[i]:
                    values[key] = (nan, False)
                    continue
                energy = c.pixels[i].astype(np.float64) * a.ev_per_adu[c.detector]
                if a.threshold_ev is not None:
                    energy = np.where(energy < a.threshold_ev, 0.0, energy)
                v = float(energy.sum()) / (a.photon_energy_ev or 1.0)
                values[key] = (v, True)
            out.append({"i0": i0, "ok": ok, "bin": bins[0] if bins else -1, "laser": laser, "values": values})
    return out


def _stats(pairs: list[tuple[float, float]], with_i0: bool) -> dict[str, Any]:
    n = len(pairs)
    if n == 0:
        return {"count": 0, "sum": None, "mean": None, "norm": None, "mean_ratio": None, "sem": None}
    vs = [v for v, _ in pairs]
    rs = [v / i for v, i in pairs]
    out = {"count": n, "sum": math.fsum(vs), "mean": math.fsum(vs) / n, "norm": None, "mean_ratio": None,
           "sem": None}
    if with_i0:
        out["norm"] = math.fsum(vs) / math.fsum(i for _, i in pairs)
        out["mean_ratio"] = math.fsum(rs) / n
        out["sem"] = float(np.std(rs, ddof=1) / math.sqrt(n)) if n > 1 else None
    return out


def reference(blocks: list[ShotBlock], a: Analysis) -> dict[str, Any]:
    shots = _shots(blocks, a)
    accepted = [s for s in shots if all(s["ok"].values())]
    keys = display_keys(k for s in shots for k, (_, valid) in s["values"].items() if valid)
    with_i0 = a.i0 is not None
    rois: dict[str, Any] = {}
    scan_rois: dict[str, Any] = {}
    for key, shown in keys.items():
        sel = [s for s in accepted if key in s["values"] and math.isfinite(s["values"][key][0])]

        def pick(group: list[dict[str, Any]], key: str = key) -> list[tuple[float, float]]:
            return [(s["values"][key][0], s["i0"]) for s in group]
        top = _stats(pick(sel), with_i0)
        rois[shown] = {k: top[k] for k in ("count", "sum", "mean", "norm", "mean_ratio")}
        groups = {"": sel}
        if a.pump_probe is not None:
            groups.update(on=[s for s in sel if s["laser"] == 1], off=[s for s in sel if s["laser"] == 0])
            for g in ("on", "off"):
                st_ = _stats(pick(groups[g]), with_i0)
                rois[shown][g] = {"count": st_["count"], "norm": st_["norm"]}
        if a.n_bins:
            scan_rois[shown] = {}
            for g, members in groups.items():
                cells = [_stats(pick([s for s in members if s["bin"] == j]), with_i0) for j in range(a.n_bins)]
                target = scan_rois[shown] if g == "" else scan_rois[shown].setdefault(g, {})
                for k in ("count", "norm", "sem"):
                    target[k] = [c[k] for c in cells]
    e = list(a.edges)
    return {
        "shots": {"total": len(shots), "accepted": len(accepted),
                  "vetoed": {k: sum(not s["ok"][k] for s in shots) for k in a.veto_keys}},
        "rois": rois,
        "scan": None if not a.n_bins else {
            "name": a.scan_name, "unit": a.scan_unit, "edges": e,
            "centers": [(x + y) / 2 for x, y in zip(e, e[1:], strict=False)],
            "outside": sum(s["bin"] < 0 for s in accepted), "rois": scan_rois},
    }


def assert_same(got: Any, want: Any, path: str = "") -> None:
    """Counts and structure exactly, floats to 1e-9 relative."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{path}: {list(got)} != {list(want)}"
        for k in want:
            assert_same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert isinstance(got, float) and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-300), \
            f"{path}: {got} != {want}"
    else:
        assert got == want and type(got) is type(want), f"{path}: {got!r} != {want!r}"


def reduce_whole(blocks: list[ShotBlock], a: Analysis) -> dict[str, Any]:
    r = SummaryReducer(a)
    s = r.init()
    for b in blocks:
        s = r.update(s, b)
    return r.result(s)


# --- cross-check against the reference ------------------------------------------------------


@pytest.mark.parametrize("kw", [
    {}, {"pp": "point"}, {"i0": False}, {"scan": False, "pp": None}, {"thr": None, "photon": None},
    {"dtype": "float32"}, {"dtype": "int16", "thr": None},
])
def test_matches_per_shot_reference(kw: dict[str, Any]) -> None:
    dtype = kw.pop("dtype", "uint16")
    blocks = stream(11, [40, 1, 0, 75, 33], dtype)
    a = analysis(**kw)
    assert_same(reduce_whole(blocks, a), reference(blocks, a))


def test_reference_sees_undecided_and_outside() -> None:
    # the synthetic stream really exercises the awkward cases the reference is meant to check
    blocks = stream(5, [200])
    want = reference(blocks, analysis(pp="point"))
    assert want["scan"]["outside"] > 0
    r = want["rois"]["a/v1"]
    assert r["on"]["count"] + r["off"]["count"] < r["count"]


# --- merge properties -----------------------------------------------------------------------


def _pieces(whole: ShotBlock, cuts: list[int]) -> list[ShotBlock]:
    edges = [0, *sorted(c % (len(whole) + 1) for c in cuts), len(whole)]
    return [whole.slice(lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)]


@given(seed=st.integers(0, 2**16), sizes=st.lists(st.integers(0, 40), min_size=1, max_size=4),
       cuts=st.lists(st.integers(0, 10_000), max_size=6), pp=st.sampled_from(["tag", "point", None]),
       order=st.randoms(use_true_random=False))
def test_any_split_merges_to_the_whole(seed: int, sizes: list[int], cuts: list[int], pp: str | None,
                                       order: Any) -> None:
    a = analysis(pp=pp)
    r = SummaryReducer(a)
    whole = ShotBlock.concat(stream(seed, sizes))
    states = [r.update(r.init(), p) for p in _pieces(whole, cuts)]
    # combine neighbours in a random tree shape: merge is associative, so the shape is free
    while len(states) > 1:
        i = order.randrange(len(states) - 1)
        states[i:i + 2] = [r.merge(states[i], states[i + 1])]
    assert_same(r.result(states[0]), reduce_whole([whole], a))


@given(seed=st.integers(0, 2**16), n=st.lists(st.integers(0, 30), min_size=3, max_size=3))
def test_merge_is_associative(seed: int, n: list[int]) -> None:
    a = analysis()
    r = SummaryReducer(a)
    x, y, z = (r.update(r.init(), b) for b in stream(seed, n))
    left = r.result(r.merge(r.merge(x, y), z))
    right = r.result(r.merge(x, r.merge(y, z)))
    assert_same(left, right)
    assert_same(r.result(r.merge(r.init(), x)), r.result(x))


def test_display_keys() -> None:
    assert display_keys(["b/v2", "a/v1", "a/v3"]) == {"a/v1": "a/v1", "a/v3": "a/v3", "b/v2": "b"}
    assert split_roi_key("a.b-c/v12") == ("a.b-c", 12)
