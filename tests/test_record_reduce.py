"""record → recording → reduce, end to end, with the real simulator and real zarr stores."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shotwatch.cli import main
from shotwatch.link.protocols import NullListener
from shotwatch.recorder.acquire import Recorder
from shotwatch.schemas import Roi, load_config, parse_config
from shotwatch.schemas.loading import demo_text

try:
    import tomllib
except ImportError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]


def fast_config_text(*, seed: int = 7, rate: float = 0.0, frames_every: int = 60) -> str:
    """The demo configuration, with the simulator as fast as possible."""
    text = demo_text().replace("rate = 30.0", f"rate = {rate}").replace("seed = 2019", f"seed = {seed}")
    return text.replace("frames_every = 30", f"frames_every = {frames_every}")


def fast_config(tmp_path: Path, **kw: Any) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(fast_config_text(**kw))
    return path


def assert_same_summary(a: Any, b: Any, where: str = "") -> None:
    """Counts exactly, values to 1e-9 relative (INTERFACE.md's live == replay promise)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same_summary(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_summary(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shotwatch", *args], capture_output=True, text=True,
                          check=False, timeout=120)


def test_record_then_reduce_equals_live_summary(tmp_path: Path) -> None:
    cfg = fast_config(tmp_path)
    out = tmp_path / "run.zarr"
    live = tmp_path / "live.json"
    proc = run_cli("record", "-c", str(cfg), "-o", str(out), "--shots", "3000", "--summary-json", str(live))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run.log").exists()
    info = json.loads(run_cli("info", str(out), "--json").stdout)
    assert info["committed"] == 3000 and info["closed"] is True
    reduced = run_cli("reduce", str(out), "--json")
    assert reduced.returncode == 0, reduced.stderr
    offline = json.loads(reduced.stdout)
    assert offline["shots"]["total"] == 3000
    assert_same_summary(json.loads(live.read_text()), offline)
    # the human table and the CSV layouts work on the same recording
    assert run_cli("reduce", str(out)).returncode == 0
    csv = run_cli("reduce", str(out), "--csv").stdout.splitlines()
    assert csv[0].startswith("center,") and len(csv) == 1 + 20
    per_shot = run_cli("reduce", str(out), "--per-shot", "--tags", f"{info['tags']['first']}:").stdout.splitlines()
    assert per_shot[0].split(",")[:6] == ["tag", "time", "i0", "accepted", "scan", "laser_on"]
    assert len(per_shot) == 1 + 3000


def test_existing_output_refused_unless_append(tmp_path: Path) -> None:
    cfg = fast_config(tmp_path)
    out = tmp_path / "a.zarr"
    assert run_cli("record", "-c", str(cfg), "-o", str(out), "--shots", "200").returncode == 0
    again = run_cli("record", "-c", str(cfg), "-o", str(out), "--shots", "200")
    assert again.returncode == 2 and "--append" in again.stderr and "Traceback" not in again.stderr
    more = run_cli("record", "-c", str(cfg), "-o", str(out), "--shots", "300", "--append")
    assert more.returncode == 0, more.stderr
    info = json.loads(run_cli("info", str(out), "--json").stdout)
    assert info["committed"] == 500


@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(seed=st.integers(0, 10_000), shots=st.integers(50, 2500),
       edit_after=st.one_of(st.none(), st.integers(1, 3)), dx=st.integers(-20, 20))
def test_live_equals_replay_with_roi_edits(tmp_path_factory: pytest.TempPathFactory, seed: int, shots: int,
                                           edit_after: int | None, dx: int) -> None:
    """Whatever the stream and whenever the ROI moves, the live summary equals reduce of the recording."""
    tmp = tmp_path_factory.mktemp("live")
    config = parse_config(tomllib.loads(fast_config_text(seed=seed)), origin="test")
    recorder = Recorder(config, out=str(tmp / "r.zarr"), summary=True)
    calls = {"n": 0}

    class EditOnce(NullListener):
        wants_blocks = True

        def on_block(self, msg: Any) -> None:
            calls["n"] += 1
            if edit_after is not None and calls["n"] == edit_after:
                roi = config.roi[0]
                recorder.set_roi(Roi(name=roi.name, detector=roi.detector,
                                     x=(roi.x[0] + dx + 20, roi.x[1] + dx + 20), y=roi.y))

    recorder.add_listener(EditOnce())
    recorder.run(shots=shots)
    live = recorder.summary()
    out = tmp / "live.json"
    out.write_text(json.dumps(live))
    proc = run_cli("reduce", str(tmp / "r.zarr"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert_same_summary(live, json.loads(proc.stdout))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["reduce", "/nonexistent.zarr"], "/nonexistent.zarr"),
        (["info", "/nonexistent.zarr"], "/nonexistent.zarr"),
        (["reduce", "{rec}", "--tags", "a:b"], "--tags"),
        (["reduce", "{rec}", "-c", "{badpoint}"], "scan.name"),
        (["reduce", "{rec}", "--json", "--csv"], "--json"),
        (["record", "-c", "{badcfg}"], "source.rate"),
        (["record", "--shots", "0"], "--shots"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    rec = tmp_path / "rec.zarr"
    if "{rec}" in args:
        assert main(["record", "-c", str(fast_config(tmp_path)), "-o", str(rec), "--shots", "50"]) == 0
    badpoint = tmp_path / "badpoint.toml"
    badpoint.write_text("[scan]\nname='no_such/point'\nedges=[0, 1]\n")
    badcfg = tmp_path / "bad.toml"
    badcfg.write_text("[source]\nrate = 'fast'\n")
    args = [a.format(rec=rec, badpoint=badpoint, badcfg=badcfg) for a in args]
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("shotwatch: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_reduce_with_other_analysis_uses_recorded_rois(tmp_path: Path) -> None:
    cfg = fast_config(tmp_path)
    rec = tmp_path / "rec.zarr"
    assert main(["record", "-c", str(cfg), "-o", str(rec), "--shots", "400"]) == 0
    other = tmp_path / "other.toml"
    other.write_text("[[roi]]\nname='ignored'\ndetector='X'\nx=[0,1]\ny=[0,1]\n")
    proc = run_cli("reduce", str(rec), "-c", str(other), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["rois"]) == {"bragg", "background"}
    assert result["scan"] is None and "i0" not in result["shots"]["vetoed"]
    assert all(r["norm"] is None for r in result["rois"].values())


def test_demo_config_loads() -> None:
    assert load_config(None).record.frames_every == 30


def test_append_with_changed_roi_continues_history(tmp_path: Path) -> None:
    cfg = fast_config(tmp_path)
    out = tmp_path / "a.zarr"
    assert run_cli("record", "-c", str(cfg), "-o", str(out), "--shots", "300").returncode == 0
    moved = tmp_path / "moved.toml"
    moved.write_text(cfg.read_text().replace("x = [184, 216]", "x = [180, 212]"))
    proc = run_cli("record", "-c", str(moved), "-o", str(out), "--shots", "200", "--append")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(run_cli("info", str(out), "--json").stdout)
    assert info["committed"] == 500
    bragg = info["rois"]["bragg"]
    assert [(v["version"], v["first_shot"], v["x"]) for v in bragg] == [(1, 0, [184, 216]), (2, 300, [180, 212])]
    assert [v["version"] for v in info["rois"]["background"]] == [1]
    result = json.loads(run_cli("reduce", str(out), "--json").stdout)
    assert {"bragg/v1", "bragg/v2", "background"} <= set(result["rois"])
