"""``source.kind = "euxfel-run"`` and the same run two ways (FACILITY.md, European XFEL run files).

One mock run, written with extra-data's own ``make_examples`` (a corrected AGIPD module, a raw
one with its data/gain axis, the XGM), its pixels and XGM filled with known values (the mock
writer leaves zeros), is read three ways: from files by the ``euxfel-run`` source, and served by
``karabo-bridge-serve-files`` (extra-data's real bridge server) over REQ and PUSH to the
``karabo`` source. The per-shot ROI values and ``reduce --json`` agree (counts exactly, values to
1e-9), and equal the ROI sums computed here directly with extra-data.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shotwatch.schemas import Config, EuxfelRunSource, KaraboSource, SourceError, load_config
from shotwatch.sources.euxfel_run import EuxfelRun
from shotwatch.sources.euxfel_run import make as make_run
from shotwatch.sources.karabo import KaraboBridgeSource

extra_data = pytest.importorskip("extra_data")
pytest.importorskip("karabo_bridge")

CORR = "SPB_DET_AGIPD1M-1/DET/3CH0:xtdf"
RAW = "SPB_DET_AGIPD1M-1/DET/4CH0:xtdf"
XGM_SRC = "SA1_XTD2_XGM/DOOCS/MAIN:output"
TRAINS, PULSES, FEL = 10, 8, 6  # 8 frames a train; the FEL delivers 6 pulses: XGM entries 6, 7 are filler
SERVE = Path(sys.executable).with_name("karabo-bridge-serve-files")
ROIS = {"a": (CORR, (10, 42), (300, 340)), "b": (RAW, (60, 100), (20, 52))}


def write_run(path: Path, trains: int = TRAINS, *, raw: bool = True) -> None:
    """A mock run with known pixels and XGM values (seeded), via extra-data's make_examples.

    ``raw=False`` leaves out the raw module (a longer run for the PUB test stays small).
    """
    import h5py
    from extra_data.tests import make_examples as mx

    path.mkdir()
    opts = {"ntrains": trains, "chunksize": min(trains, 32)}
    mx.write_file(str(path / "CORR-R0007-AGIPD03-S00000.h5"),
                  [mx.AGIPDModule(CORR.split(":")[0], raw=False, frames_per_train=PULSES)], **opts)
    if raw:
        mx.write_file(str(path / "RAW-R0007-AGIPD04-S00000.h5"),
                      [mx.AGIPDModule(RAW.split(":")[0], raw=True, frames_per_train=PULSES)], **opts)
    mx.write_file(str(path / "RAW-R0007-DA01-S00000.h5"), [mx.XGM(XGM_SRC.split(":")[0])], **opts)
    rng = np.random.default_rng(2026)
    n = trains * PULSES
    with h5py.File(path / "CORR-R0007-AGIPD03-S00000.h5", "r+") as f:
        f[f"INSTRUMENT/{CORR}/image/data"][:] = rng.normal(5.0, 2.0, (n, 512, 128)).astype(np.float32)
    if raw:
        with h5py.File(path / "RAW-R0007-AGIPD04-S00000.h5", "r+") as f:
            pixels = np.empty((n, 2, 512, 128), np.uint16)
            pixels[:, 0] = rng.integers(4000, 6000, (n, 512, 128))  # data
            pixels[:, 1] = 2  # gain stage: taking this axis' index 1 would give a constant
            f[f"INSTRUMENT/{RAW}/image/data"][:] = pixels
    with h5py.File(path / "RAW-R0007-DA01-S00000.h5", "r+") as f:
        xgm = np.ones((trains, 1000), np.float32)  # filler
        xgm[:, :FEL] = rng.uniform(0.5, 2.0, (trains, FEL))
        f[f"INSTRUMENT/{XGM_SRC}/data/intensityTD"][:trains] = xgm  # padded to whole chunks


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "r0007"
    write_run(path)
    return path


def config_text(source: str) -> str:
    rois = "".join(f'[[roi]]\nname = "{k}"\ndetector = "{d}"\nx = [{x[0]}, {x[1]}]\ny = [{y[0]}, {y[1]}]\n'
                   for k, (d, x, y) in ROIS.items())
    return (f'[source]\n{source}\ndetectors = ["{CORR}", "{RAW}"]\npulses = "0:{PULSES}"\nxgm_pulses = {FEL}\n'
            f'[source.points]\n"{XGM_SRC}/data.intensityTD" = "xgm"\n'
            f'[i0]\nname = "xgm"\nmin = 0.1\n{rois}'
            '[pump_probe]\nmode = "pulse-modulo"\ncycle = 2\non = [0]\n[record]\nframes_every = 0\n')


def run(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "shotwatch", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done


class ServeFiles:
    """``karabo-bridge-serve-files RUN tcp://127.0.0.1:PORT -z SOCK`` (extra-data's bridge server)."""

    def __init__(self, run_dir: Path, sock: str, *, start: bool = True) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        self.args = [str(SERVE), str(run_dir), self.endpoint, "-z", sock]
        self.proc: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def serve(run_dir: Path) -> Iterator[Any]:
    started: list[ServeFiles] = []

    def start(sock: str, **kwargs: Any) -> ServeFiles:
        started.append(ServeFiles(run_dir, sock, **kwargs))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def truth(run_dir: Path) -> dict[str, np.ndarray]:
    """ROI sums per frame computed directly with extra-data (raw: the data, not the gain stage)."""
    r = extra_data.RunDirectory(str(run_dir))
    out = {}
    for key, (det, x, y) in ROIS.items():
        data = r[det, "image.data"].ndarray()
        data = data[:, 0] if data.ndim == 4 else data
        out[key] = data[:, y[0]:y[1], x[0]:x[1]].sum(axis=(1, 2), dtype=np.float64)
    return out


def per_shot(rec: Path, cwd: Path) -> dict[str, np.ndarray]:
    rows = list(csv.DictReader(io.StringIO(run("reduce", str(rec), "--per-shot", cwd=cwd).stdout)))
    return {k: np.array([float(r[k]) if r[k] else math.nan for r in rows]) for k in ("tag", "i0", "laser_on", *ROIS)}


def close(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path  # counts, names, nulls: exactly


@pytest.mark.timeout(240)
def test_the_same_run_from_files_and_over_the_bridge_gives_the_same_numbers(run_dir: Path, tmp_path: Path,
                                                                              serve: Any) -> None:
    shots = TRAINS * PULSES
    (tmp_path / "files.toml").write_text(config_text(f'kind = "euxfel-run"\npath = "{run_dir}"\nspeed = 0'))
    done = run("record", "-c", "files.toml", "-o", "files.zarr", cwd=tmp_path)
    assert done.stdout.strip() == f"recorded {shots} shots to files.zarr"
    recordings = {"files": tmp_path / "files.zarr"}
    for server, client in (("REP", "REQ"), ("PUSH", "PULL")):
        bridge = serve(server)
        (tmp_path / f"{client}.toml").write_text(config_text(
            f'kind = "karabo"\nendpoint = "{bridge.endpoint}"\nsocket = "{client}"'))
        run("record", "-c", f"{client}.toml", "-o", f"{client}.zarr", "--shots", str(shots), cwd=tmp_path)
        recordings[client] = tmp_path / f"{client}.zarr"
    expect = truth(run_dir)
    results = {}
    for name, rec in recordings.items():
        values = per_shot(rec, tmp_path)
        tids = np.repeat(np.arange(10000, 10000 + TRAINS), PULSES)
        np.testing.assert_array_equal(values["tag"], tids * PULSES + np.tile(np.arange(PULSES), TRAINS))
        for key in ROIS:  # per shot: exactly the sums of the file's pixels
            np.testing.assert_allclose(values[key], expect[key], rtol=1e-9, err_msg=f"{name} {key}")
        assert np.isnan(values["i0"][np.tile(np.arange(PULSES), TRAINS) >= FEL]).all()  # filler never used
        np.testing.assert_array_equal(values["laser_on"], np.tile(np.arange(PULSES) % 2 == 0, TRAINS))
        results[name] = json.loads(run("reduce", str(rec), "--json", cwd=tmp_path).stdout)
    assert results["files"]["shots"] == {"total": shots, "accepted": TRAINS * FEL, "vetoed": {"i0": TRAINS * 2}}
    assert results["files"]["rois"]["a"]["on"]["count"] == TRAINS * FEL // 2
    for name in ("REQ", "PULL"):
        close(results["files"], results[name], name)


LONG_TRAINS = 96  # serve-files sends ~100 trains/s from the moment it binds: about a second of them


@pytest.mark.timeout(60)
def test_a_pub_server_drops_trains_before_the_subscriber_joins(tmp_path: Path) -> None:
    """SUB gets what a PUB bridge sends after it joined; every train it gets is the file's."""
    run_dir = tmp_path / "r0007"
    write_run(run_dir, LONG_TRAINS, raw=False)
    bridge = ServeFiles(run_dir, "PUB", start=False)
    cfg = KaraboSource(endpoint=bridge.endpoint, socket="SUB", detectors=[CORR], pulses="train")
    src = KaraboBridgeSource(cfg, open_timeout=20.0)
    threading.Timer(0.5, bridge.start).start()  # the subscriber is there first
    src.open()
    blocks = []
    while (block := src.read(timeout=3.0)) is not None:
        blocks.append(block)
    src.close()
    bridge.stop()
    frames = extra_data.RunDirectory(str(run_dir))[CORR, "image.data"].ndarray()
    frames = frames.reshape(LONG_TRAINS, PULSES, 512, 128)
    for b in blocks:  # train mode: the mean over the train's 8 frames, float32
        expect = frames[int(b.tags[0]) - 10000].mean(axis=0, dtype=np.float64).astype(np.float32)
        np.testing.assert_array_equal(b.frames[CORR].pixels[0], expect)
    assert 1 <= len(blocks) <= LONG_TRAINS


def test_euxfel_run_source(run_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(config_text('kind = "euxfel-run"\npath = "../runs/r0007"\nspeed = 0'))
    config = load_config(cfg)
    assert config.source.path == str((tmp_path.parent / "runs" / "r0007").resolve())  # type: ignore[union-attr]
    src = make_run(Config.model_validate({**json.loads(config.model_dump_json()),
                                          "source": {**config.source.model_dump(), "path": str(run_dir)}}))
    src.open()
    info = src.describe()
    assert info.kind == "euxfel-run" and info.run == 7 and info.attrs["trains"] == TRAINS
    assert info.detectors[CORR].shape == info.detectors[RAW].shape == (512, 128)
    assert info.attrs["layouts"] == {CORR: "file", RAW: "file"} and info.points == ["xgm", "pulse_index"]
    blocks = []
    while (b := src.read(timeout=1.0)) is not None:
        blocks.append(b.validate())
    assert len(blocks) == TRAINS and src.status().state == "ended" and {b.run for b in blocks} == {7}
    assert blocks[0].frames[RAW].pixels.dtype == np.uint16 and blocks[0].frames[CORR].pixels.dtype == np.float32
    src.close()


@pytest.mark.parametrize(("path", "why"), [
    ("nowhere", "source.path: expected a European XFEL run directory, found no directory"),
    (".", "source.path: expected a European XFEL run directory (HDF5 files)"),
])
def test_a_bad_run_path_is_one_line(tmp_path: Path, path: str, why: str) -> None:
    cfg = EuxfelRunSource(path=str(tmp_path / path), detectors=[CORR])
    with pytest.raises(SourceError) as err:
        EuxfelRun(cfg).open()
    assert str(err.value).startswith(why) and "\n" not in str(err.value)
