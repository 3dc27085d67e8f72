"""Reducers against a per-shot reference, and merge properties (any split = whole).

The reference is written independently of the code under test: Python loops, ``math.fsum``,
the INTERFACE.md definitions spelled out (dark subtraction, masks, non-finite pixels, channel
expressions, sem_norm from Σ(v − norm·I0)² directly, never from merged moments).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import synth
from shotwatch.reducers import Analysis, SummaryReducer, display_keys, roi_versions
from shotwatch.schemas import (
    I0,
    Cutout,
    DarkFrame,
    PointPumpProbe,
    RoiVersion,
    ShotBlock,
    TagModuloPumpProbe,
    Veto,
    split_roi_key,
)
from shotwatch.schemas.expr import parse

ROIS = {"a/v1": (4, 4), "a/v2": (4, 6), "b/v1": (3, 5)}
FRAME = (16, 16)
VERSIONS = roi_versions([
    RoiVersion("a", 1, synth.DET, (0, 4), (0, 4), 0, -1, 1),
    RoiVersion("a", 2, synth.DET, (2, 8), (1, 5), 1, -1),
    RoiVersion("b", 1, synth.DET, (5, 10), (8, 11), 0, -1),
])
CHANNELS = (
    ("sub", "a - pixels(a) / pixels(b) * b"),
    ("rat", "sub / (pixels(a) - 16)"),  # 0 where a/v1 (4 x 4) is valid: x/0 is NaN, never an error
    ("fun", "-sqrt(abs(sub)) + log(b) * exp(-1) + min(a, b, 7e3) - max(a, 2)"),
    ("lg", "log(sub)"),  # sub < 0 on some shots: NaN
)


def analysis(*, i0: bool = True, scan: bool = True, pp: str | None = "tag", thr: float | None = 120.0,
             photon: float | None = 9000.0, dark: bool = False, mask: bool = False,
             channels: bool = False) -> Analysis:
    rng = np.random.default_rng(99)
    darks, masks = {}, {}
    if dark:
        mean = rng.normal(22.0, 3.0, FRAME).astype(np.float32)
        mean[9, 6] = np.nan  # inside b: non-finite after subtraction at every shot
        std = rng.gamma(2.0, 1.0, FRAME).astype(np.float32)
        darks[synth.DET] = DarkFrame(mean, std, 100, 0, 99)
    if mask:
        m = np.zeros(FRAME, bool)
        m[0:2, 0:3] = True  # a/v1's corner, part of a/v2
        m[8:11, 9] = True  # b's last column
        masks[synth.DET] = m
    return Analysis(
        ev_per_adu={synth.DET: 3.65}, threshold_ev=thr, photon_energy_ev=photon,
        i0=I0(name=synth.I0, min=0.1, max=0.4) if i0 else None,
        vetoes=(Veto(name=synth.BEAM, min=0.5), Veto(name=synth.OTHER[1], max=1.0)),
        scan_name=synth.SCAN if scan else None, scan_scale=0.001, scan_offset=0.0,
        edges=tuple(np.linspace(-1.0, 3.0, 9)) if scan else (),
        pump_probe={"tag": TagModuloPumpProbe(cycle=4, on=[0]),
                    "point": PointPumpProbe(name=synth.OTHER[0], threshold=0.0), None: None}[pp],
        darks=darks, masks=masks,
        channels=tuple((n, parse(e)) for n, e in CHANNELS) if channels else (),
    )


def stream(seed: int, sizes: list[int], dtype: str = "uint16", *, nan_pixels: float = 0.0) -> list[ShotBlock]:
    """synth blocks with the versions of one ROI never valid at the same shot (as in a recording)
    and, for float pixels, a fraction of NaN/inf pixels and one shot whose b is all NaN."""
    rng = np.random.default_rng(seed + 7)
    out = []
    for b in synth.stream(seed, sizes, rois=ROIS, dtype=dtype, extra_points=2):
        cuts = dict(b.cutouts)
        v1, v2 = cuts["a/v1"], cuts["a/v2"]
        both = v1.valid & v2.valid
        pix2 = v2.pixels.copy()
        pix2[both] = 0
        cuts["a/v2"] = Cutout(pix2, v2.valid & ~both, v2.detector)
        if nan_pixels and np.dtype(dtype).kind == "f" and len(b):
            for key, c in cuts.items():
                pix = c.pixels.copy()
                pix[rng.random(pix.shape) < nan_pixels] = np.nan
                pix[rng.random(pix.shape) < nan_pixels / 4] = np.inf
                if key == "b/v1":
                    pix[0] = np.nan
                cuts[key] = Cutout(pix, c.valid, c.detector)
        out.append(b.with_(cutouts=cuts))
    return out


# --- the per-shot reference -----------------------------------------------------------------


class Tol(float):
    """A reference value compared with an absolute tolerance besides 1e-9 relative."""

    abs_tol: float = 0.0

    @classmethod
    def of(cls, value: float, abs_tol: float) -> float:
        if not math.isfinite(value):
            return value
        t = cls(value)
        t.abs_tol = abs_tol
        return t


def _value(c: Cutout, i: int, key: str, a: Analysis) -> tuple[float, int]:
    """value and non-finite count of one cutout of one shot, by the definition."""
    v = VERSIONS[key]
    x0, y0 = v.x[0], v.y[0]
    h, w = c.pixels.shape[1:]
    dark = a.darks.get(c.detector)
    mask = a.masks.get(c.detector)
    total, usable, bad = [], 0, 0
    for r in range(h):
        for col in range(w):
            x = float(c.pixels[i, r, col])
            if dark is not None:
                x -= float(dark.mean[y0 + r, x0 + col])
            if mask is not None and mask[y0 + r, x0 + col]:
                continue
            if not math.isfinite(x):
                bad += 1
                continue
            usable += 1
            e = x * a.ev_per_adu[c.detector]
            total.append(0.0 if a.threshold_ev is not None and e < a.threshold_ev else e)
    if not usable:
        return math.nan, bad
    return math.fsum(total) / (a.photon_energy_ev or 1.0), bad


def _channel(text: str, env: dict[str, float], area: dict[str, float]) -> float:
    """The channel by Python arithmetic on the shot's numbers (a tiny separate evaluator)."""
    import ast

    def ev(n: ast.AST) -> float:
        if isinstance(n, ast.Constant):
            return float(n.value)
        if isinstance(n, ast.Name):
            return env[n.id]
        if isinstance(n, ast.UnaryOp):
            return -ev(n.operand)
        if isinstance(n, ast.BinOp):
            x, y = ev(n.left), ev(n.right)
            if math.isnan(x) or math.isnan(y):
                return math.nan
            ops = {ast.Add: x + y, ast.Sub: x - y, ast.Mult: x * y}
            return ops[type(n.op)] if type(n.op) in ops else (x / y if y != 0 else math.nan)
        assert isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        if n.func.id == "pixels":
            return area[n.args[0].id]  # type: ignore[attr-defined]
        args = [ev(x) for x in n.args]
        if any(math.isnan(x) for x in args):
            return math.nan
        f = n.func.id
        if f in ("min", "max"):
            return (min if f == "min" else max)(args)
        x = args[0]
        if f == "abs":
            return abs(x)
        if (f == "sqrt" and x < 0) or (f == "log" and x <= 0):
            return math.nan
        r = {"sqrt": math.sqrt, "log": math.log, "exp": math.exp}[f](x)
        return r if math.isfinite(r) else math.nan

    return ev(ast.parse(text, mode="eval").body)


@dataclass
class Shot:
    i0: float
    ok: dict[str, bool]
    bin: int
    laser: int
    values: dict[str, tuple[float, bool, int]] = field(default_factory=dict)
    channels: dict[str, float] = field(default_factory=dict)


def _shots(blocks: list[ShotBlock], a: Analysis, channels: tuple[tuple[str, str], ...]) -> list[Shot]:
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
            shot = Shot(i0, ok, bins[0] if bins else -1, laser)
            env, area = {}, {}
            for key, c in b.cutouts.items():
                value, bad = _value(c, i, key, a) if c.valid[i] else (nan, 0)
                shot.values[key] = (value, bool(c.valid[i]), bad)
                if c.valid[i]:
                    name = split_roi_key(key)[0]
                    env[name], area[name] = value, float(c.pixels.shape[1] * c.pixels.shape[2])
            env = {"a": env.get("a", nan), "b": env.get("b", nan)}
            area = {"a": area.get("a", nan), "b": area.get("b", nan)}
            for name, text in channels:
                env[name] = shot.channels[name] = _channel(text, env, area)
            out.append(shot)
    return out


def _stats(pairs: list[tuple[float, float]], with_i0: bool) -> dict[str, Any]:
    n = len(pairs)
    none = {"count": n, "sum": None, "mean": None, "norm": None, "mean_ratio": None, "sem": None,
            "sem_norm": None}
    if n == 0:
        return none
    vs = [v for v, _ in pairs]
    out = dict(none, sum=math.fsum(vs), mean=math.fsum(vs) / n)
    if with_i0:
        si = math.fsum(i for _, i in pairs)
        norm = math.fsum(vs) / si
        rs = [v / i for v, i in pairs]
        out.update(norm=norm, mean_ratio=math.fsum(rs) / n)
        if n > 1:
            out["sem"] = float(np.std(rs, ddof=1) / math.sqrt(n))
            d2 = math.fsum((v - norm * i) ** 2 for v, i in pairs)
            scale = math.sqrt(math.fsum(v * v for v in vs)) / si  # INTERFACE.md's absolute tolerance
            out["sem_norm"] = Tol.of(math.sqrt(n / (n - 1) * d2) / si, 1e-9 * scale)
    return out


def _diff(on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(("diff", "diff_sem", "rel", "rel_sem"))
    if on["norm"] is None or off["norm"] is None:
        return out
    out["diff"] = on["norm"] - off["norm"]
    if off["norm"] != 0:
        out["rel"] = out["diff"] / off["norm"]
    s_on, s_off = on["sem_norm"], off["sem_norm"]
    if s_on is not None and s_off is not None:
        t_on, t_off = getattr(s_on, "abs_tol", 0.0), getattr(s_off, "abs_tol", 0.0)
        out["diff_sem"] = Tol.of(math.hypot(s_on, s_off), max(t_on, t_off) * 2)
        if off["norm"] != 0:
            r = on["norm"] / off["norm"]
            out["rel_sem"] = Tol.of(math.sqrt(s_on**2 + r * r * s_off**2) / abs(off["norm"]),
                                    2 * (t_on + abs(r) * t_off) / abs(off["norm"]))
    return out


def _summary(sel: list[tuple[Shot, float]], a: Analysis, nonfinite: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(top-level entry, scan entry) of one roi key or channel over S = ``sel`` (shot, value)."""
    with_i0 = a.i0 is not None

    def pick(group: list[tuple[Shot, float]]) -> list[tuple[float, float]]:
        return [(v, s.i0) for s, v in group]
    top = _stats(pick(sel), with_i0)
    entry = {k: top[k] for k in ("count", "sum", "mean", "norm", "sem_norm", "mean_ratio")}
    entry["nonfinite"] = nonfinite or 0
    groups = {"": sel}
    if a.pump_probe is not None:
        groups.update(on=[x for x in sel if x[0].laser == 1], off=[x for x in sel if x[0].laser == 0])
        sides = {g: _stats(pick(groups[g]), with_i0) for g in ("on", "off")}
        for g in ("on", "off"):
            entry[g] = {k: sides[g][k] for k in ("count", "norm", "sem_norm")}
        entry.update(_diff(sides["on"], sides["off"]))
    scan: dict[str, Any] = {}
    cells: dict[str, list[dict[str, Any]]] = {}
    for g, members in groups.items():
        cells[g] = [_stats(pick([x for x in members if x[0].bin == j]), with_i0) for j in range(a.n_bins)]
        target = scan if g == "" else scan.setdefault(g, {})
        for k in ("count", "norm", "sem", "sem_norm"):
            target[k] = [c[k] for c in cells[g]]
    if a.pump_probe is not None:
        diffs = [_diff(x, y) for x, y in zip(cells["on"], cells["off"], strict=True)]
        for k in ("diff", "diff_sem", "rel", "rel_sem"):
            scan[k] = [d[k] for d in diffs]
    return entry, scan


def reference(blocks: list[ShotBlock], a: Analysis, channels: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    shots = _shots(blocks, a, channels)
    accepted = [s for s in shots if all(s.ok.values())]
    keys = display_keys(k for s in shots for k, (_, valid, _) in s.values.items() if valid)
    rois, scan_rois, chans, scan_chans = {}, {}, {}, {}
    for key, shown in keys.items():
        sel = [(s, s.values[key][0]) for s in accepted if key in s.values and math.isfinite(s.values[key][0])]
        rois[shown], scan_rois[shown] = _summary(sel, a, sum(s.values[key][2] for s, _ in sel))
    for name, _ in channels:
        sel = [(s, s.channels[name]) for s in accepted if math.isfinite(s.channels[name])]
        chans[name], scan_chans[name] = _summary(sel, a, 0)
    e = list(a.edges)
    return {
        "shots": {"total": len(shots), "accepted": len(accepted),
                  "vetoed": {k: sum(not s.ok[k] for s in shots) for k in a.veto_keys}},
        "analysis_version": 1, "rois": rois, "channels": chans,
        "scan": None if not a.n_bins else {
            "name": a.scan_name, "unit": a.scan_unit, "edges": e,
            "centers": [(x + y) / 2 for x, y in zip(e, e[1:], strict=False)],
            "outside": sum(s.bin < 0 for s in accepted), "rois": scan_rois, "channels": scan_chans},
    }


def assert_same(got: Any, want: Any, path: str = "") -> None:
    """Counts and structure exactly, floats to 1e-9 relative (or a Tol's absolute tolerance)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{path}: {list(got)} != {list(want)}"
        for k in want:
            assert_same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        tol = max(getattr(want, "abs_tol", 0.0), 1e-300)
        assert isinstance(got, float) and math.isclose(got, want, rel_tol=1e-9, abs_tol=tol), \
            f"{path}: {got} != {want}"
    else:
        assert got == want and type(got) is type(want), f"{path}: {got!r} != {want!r}"


def reduce_whole(blocks: list[ShotBlock], a: Analysis) -> dict[str, Any]:
    r = SummaryReducer(a)
    s = r.init()
    for b in blocks:
        s = r.update(s, b, versions=VERSIONS)
    return r.result(s)


# --- cross-check against the reference ------------------------------------------------------


@pytest.mark.parametrize("kw", [
    {}, {"pp": "point"}, {"i0": False}, {"scan": False, "pp": None}, {"thr": None, "photon": None},
    {"dtype": "float32"}, {"dtype": "int16", "thr": None},
    {"dark": True}, {"mask": True}, {"dark": True, "mask": True, "thr": None},
    {"dtype": "float32", "dark": True, "mask": True, "nan": 0.02},
    {"dtype": "float64", "nan": 0.05, "thr": None},
    {"channels": True}, {"channels": True, "dark": True, "dtype": "float32", "nan": 0.02, "pp": "point"},
])
def test_matches_per_shot_reference(kw: dict[str, Any]) -> None:
    dtype, nan = kw.pop("dtype", "uint16"), kw.pop("nan", 0.0)
    blocks = stream(11, [40, 1, 0, 75, 33], dtype, nan_pixels=nan)
    a = analysis(**kw)
    want = reference(blocks, a, CHANNELS if kw.get("channels") else ())
    assert_same(reduce_whole(blocks, a), want)
    if nan:
        assert want["rois"]["b"]["nonfinite"] > 0  # the reference really saw non-finite pixels
    if kw.get("channels"):
        vals = [s.channels["rat"] for s in _shots(blocks, a, CHANNELS)]
        assert any(math.isnan(v) for v in vals) and any(math.isfinite(v) for v in vals)


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


@settings(deadline=None)
@given(seed=st.integers(0, 2**16), sizes=st.lists(st.integers(0, 40), min_size=1, max_size=4),
       cuts=st.lists(st.integers(0, 10_000), max_size=6), pp=st.sampled_from(["tag", "point", None]),
       extras=st.sampled_from(["", "dark", "mask", "channels", "all"]), order=st.randoms(use_true_random=False))
def test_any_split_merges_to_the_whole(seed: int, sizes: list[int], cuts: list[int], pp: str | None,
                                       extras: str, order: Any) -> None:
    every = extras == "all"
    a = analysis(pp=pp, dark=every or extras == "dark", mask=every or extras == "mask",
                 channels=every or extras == "channels")
    r = SummaryReducer(a)
    whole = ShotBlock.concat(stream(seed, sizes, "float32" if every else "uint16", nan_pixels=0.03 * every))
    states = [r.update(r.init(), p, versions=VERSIONS) for p in _pieces(whole, cuts)]
    # combine neighbours in a random tree shape: merge is associative, so the shape is free
    while len(states) > 1:
        i = order.randrange(len(states) - 1)
        states[i:i + 2] = [r.merge(states[i], states[i + 1])]
    want = reference([whole], a, CHANNELS if a.channels else ())
    assert_same(r.result(states[0]), want)
    assert_same(reduce_whole([whole], a), want)


@given(seed=st.integers(0, 2**16), n=st.lists(st.integers(0, 30), min_size=3, max_size=3))
def test_merge_is_associative(seed: int, n: list[int]) -> None:
    a = analysis(channels=True)
    r = SummaryReducer(a)
    x, y, z = (r.update(r.init(), b, versions=VERSIONS) for b in stream(seed, n))
    left = r.result(r.merge(r.merge(x, y), z))
    right = r.result(r.merge(x, r.merge(y, z)))
    assert_same(left, right)
    assert_same(r.result(r.merge(r.init(), x)), r.result(x))


def test_display_keys() -> None:
    assert display_keys(["b/v2", "a/v1", "a/v3"]) == {"a/v1": "a/v1", "a/v3": "a/v3", "b/v2": "b"}
    assert split_roi_key("a.b-c/v12") == ("a.b-c", 12)
