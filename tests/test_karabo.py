"""The karabo source against karabo-bridge's own simulated server (FACILITY.md, European XFEL).

The server is the package's ``SimServer`` (what ``karabo-bridge-server-sim`` runs), started as a
subprocess bound to 127.0.0.1 on a free port: the console script binds every interface
(``tcp://*:PORT``), so the tests call the same class with a loopback endpoint instead.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from shotwatch.recorder.cut import cut_block
from shotwatch.reducers import Analysis, SummaryReducer
from shotwatch.schemas import Config, KaraboSource, Roi, RoiTable, ShotBlock, SourceError, load_config
from shotwatch.sources import Source
from shotwatch.sources.karabo import WENT_BACK, KaraboBridgeSource, make, parse_pulses, pulse_axis
from source_conformance import SourceConformance

pytest.importorskip("karabo_bridge")

DET = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
XGM = "SA1_XTD2_XGM/XGM/DOOCS:output/data.intensityTD"
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "karabo.toml"
SERVER = ("import sys; from karabo_bridge.server import SimServer; "
          "SimServer(sys.argv[1], sock=sys.argv[2], detector='AGIPDModule', raw=True, "
          "data_like=sys.argv[3], protocol_version=sys.argv[4], debug=False).loop()")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimBridge:
    """karabo-bridge's simulated AGIPD module server in a subprocess, on loopback only."""

    def __init__(self, *, sock: str = "REP", layout: str = "online", protocol: str = "2.2") -> None:
        self.port = free_port()
        self.sock, self.layout, self.protocol = sock, layout, protocol
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> SimBridge:
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, self.endpoint, self.sock, self.layout, self.protocol],
                                     stdout=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def bridge() -> Iterator[Callable[..., SimBridge]]:
    started: list[SimBridge] = []

    def start(**kwargs: str) -> SimBridge:
        started.append(SimBridge(**kwargs).start())
        return started[-1]

    yield start
    for b in started:
        b.stop()


def source(endpoint: str, *, pulses: str = "train", sock: str = "REQ", **kwargs: float) -> KaraboBridgeSource:
    cfg = KaraboSource(endpoint=endpoint, socket=sock, detector=DET, pulses=pulses,  # type: ignore[arg-type]
                       points={f"{DET}/image.cellId": "cell", f"{DET}/image.trainId": "train", XGM: "xgm"})
    src = KaraboBridgeSource(cfg, **kwargs)
    src.open()
    return src


def read_n(src: KaraboBridgeSource, n: int, *, timeout: float = 5.0) -> list[ShotBlock]:
    blocks = []
    for _ in range(n):
        block = src.read(timeout=timeout)
        assert block is not None, src.status()
        blocks.append(block.validate())
    return blocks


def conformance_factory(sim: SimBridge, pulses: str, sock: str) -> Callable[[], Source]:
    cfg = KaraboSource(endpoint=sim.endpoint, socket=sock, detector=DET, pulses=pulses,  # type: ignore[arg-type]
                       points={f"{DET}/image.cellId": "cell", XGM: "xgm"})
    return lambda: make(cfg, frames_every=10)


class TestKaraboTrainReqConformance(SourceConformance):
    @pytest.fixture
    def source_factory(self, bridge: Callable[..., SimBridge]) -> Callable[[], Source]:
        return conformance_factory(bridge(), "train", "REQ")


class TestKaraboPulsesSubConformance(SourceConformance):
    @pytest.fixture
    def source_factory(self, bridge: Callable[..., SimBridge]) -> Callable[[], Source]:
        return conformance_factory(bridge(sock="PUB"), "::8", "SUB")


def test_train_mode_one_shot_per_train(bridge: Callable[..., SimBridge]) -> None:
    src = source(bridge().endpoint)
    try:
        info = src.describe()
        assert info.kind == "karabo" and info.run is None
        assert info.detectors[DET].shape == (128, 512)  # (128, 512, 64): pulses last, x = 512
        assert info.detectors[DET].dtype == "float32" and info.detectors[DET].ev_per_adu == 1.0
        assert info.points == ["cell", "train", "xgm"]
        assert info.attrs["pulses_per_train"] == 64 and info.attrs["tag"] == "trainId"
        blocks = read_n(src, 5)
        tags = np.concatenate([b.tags for b in blocks])
        assert np.all(np.diff(tags) > 0)
        for b in blocks:
            assert len(b) == 1 and b.run is None and b.tags[0] == b.points["train"][0]
            frame = b.frames[DET]
            assert frame.pixels.shape == (1, 128, 512) and frame.pixels.dtype == np.float32
            assert list(frame.shot) == [0]
            assert 1500 <= frame.pixels.min() and frame.pixels.max() < 1600  # mean of uniform [1500, 1600)
            assert b.points["cell"][0] == 31.5  # per-pulse array -> mean over the train's 64 pulses
            assert math.isnan(b.points["xgm"][0])
            assert abs(b.time[0] - time.time()) < 60
        assert src.status().missing == {"xgm": 5}
        assert any("'xgm'" in n and "not in stream" in n for n in src.notices())
    finally:
        src.close()


def test_pulse_mode_one_shot_per_selected_pulse(bridge: Callable[..., SimBridge]) -> None:
    src = source(bridge().endpoint, pulses="1:64:3")
    try:
        info = src.describe()
        assert info.detectors[DET].dtype == "uint16" and info.detectors[DET].shape == (128, 512)
        assert info.attrs["tag"] == "trainId * 64 + pulse index"
        index = np.arange(1, 64, 3)
        for b in read_n(src, 3):
            train = int(b.points["train"][0])
            assert np.array_equal(b.tags, train * 64 + index)
            assert np.array_equal(b.points["cell"], index)  # cellId[k] = k in the simulator
            assert np.array_equal(b.points["train"], np.full(len(index), train))
            frames = b.frames[DET]
            assert frames.pixels.shape == (len(index), 128, 512) and frames.pixels.dtype == np.uint16
            assert np.array_equal(frames.shot, np.arange(len(index)))
            assert np.isnan(b.points["xgm"]).all()
    finally:
        src.close()


def test_pulses_first_layout(bridge: Callable[..., SimBridge]) -> None:
    # data_like="file": (64 pulses, 512, 128) -> y = 512 rows, x = 128 columns.
    src = source(bridge(layout="file").endpoint, pulses="0:4")
    try:
        assert src.describe().detectors[DET].shape == (512, 128)
        b = read_n(src, 1)[0]
        assert b.frames[DET].pixels.shape == (4, 512, 128)
        assert np.array_equal(b.tags % 64, np.arange(4))
    finally:
        src.close()


def test_protocol_1_0(bridge: Callable[..., SimBridge]) -> None:
    # Protocol 1.0: one msgpack-numpy frame, metadata inside each source's data.
    src = source(bridge(protocol="1.0").endpoint, pulses="0:4")
    try:
        b = read_n(src, 1)[0]
        assert np.array_equal(b.tags, b.points["train"] * 64 + np.arange(4))
        assert b.frames[DET].pixels.shape == (4, 128, 512) and np.isfinite(b.time).all()
    finally:
        src.close()


def test_detector_not_in_stream_is_a_notice_not_an_error(bridge: Callable[..., SimBridge]) -> None:
    other = "SPB_DET_AGIPD1M-1/DET/5CH0:xtdf"
    cfg = KaraboSource(endpoint=bridge().endpoint, detector=other, points={f"{DET}/image.cellId": "cell"})
    src = KaraboBridgeSource(cfg, open_timeout=1.0)
    src.open()
    try:
        assert src.describe().detectors == {}
        assert any(f"{other} not in stream (available: {DET})" in n for n in src.notices())
        blocks = read_n(src, 3)
        assert all(len(b) == 1 and not b.frames and b.points["cell"][0] == 31.5 for b in blocks)
        status = src.status()
        assert status.not_in_stream == [other] and status.missing[other] >= 3
    finally:
        src.close()


def test_sub_socket(bridge: Callable[..., SimBridge]) -> None:
    src = source(bridge(sock="PUB").endpoint, sock="SUB")
    try:
        tags = np.concatenate([b.tags for b in read_n(src, 5)])
        assert np.all(np.diff(tags) > 0)
    finally:
        src.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("server", "client"), [("REP", "REQ"), ("PUB", "SUB")])
def test_server_stops_and_returns(bridge: Callable[..., SimBridge], server: str, client: str) -> None:
    sim = bridge(sock=server)
    src = source(sim.endpoint, sock=client, stale_after=1.0)
    try:
        before = np.concatenate([b.tags for b in read_n(src, 3)])
        src.notices()
        sim.stop()
        states = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            t = time.monotonic()
            block = src.read(timeout=0.3)
            assert time.monotonic() - t < 1.0, "a read blocked past its timeout"
            if block is None:
                states.append(src.status().state)
        assert states and states[-1] == "disconnected"
        assert any("no train from" in n for n in src.notices())
        sim.start()  # same port; the simulator counts train ids from 10**10 again
        after = None
        t0 = time.monotonic()
        while after is None and time.monotonic() - t0 < 30:
            after = src.read(timeout=0.5)
        assert after is not None, src.status()
        status = src.status()
        assert status.state == "running"
        assert any("reconnected" in n for n in src.notices())
        assert after.tags[0] > before[-1]  # trains whose ids went back were dropped, tags increase
        if client == "REQ":  # a PUB server may have passed the old ids before SUB rejoins
            assert status.counters.get("reconnects", 0) >= 1
            assert status.counters.get(WENT_BACK, 0) >= 1
    finally:
        src.close()


def test_no_server_fails_at_open_within_timeout() -> None:
    cfg = KaraboSource(endpoint=f"tcp://127.0.0.1:{free_port()}", detector=DET)
    src = KaraboBridgeSource(cfg, open_timeout=1.0)
    t = time.monotonic()
    with pytest.raises(SourceError, match="found none within 1 s"):
        src.open()
    assert time.monotonic() - t < 3.0


def test_make_checks_config() -> None:
    cfg = load_config(FIXTURE)
    assert isinstance(make(cfg, frames_every=10), KaraboBridgeSource)
    bad = cfg.model_copy(update={"roi": [Roi(name="r", detector="MPCCD-1N0-M06-004", x=(0, 1), y=(0, 1))]})
    with pytest.raises(SourceError, match="roi 'r': detector: expected 'SPB_DET"):
        make(bad, frames_every=10)
    unmapped = cfg.model_copy(update={"i0": cfg.i0.model_copy(update={"name": "SA1_XTD2_XGM/XGM/DOOCS"})})  # type: ignore[union-attr]
    with pytest.raises(SourceError, match="source.points: expected a \"source/key\" = 'SA1_XTD2_XGM/XGM/DOOCS'"):
        make(unmapped, frames_every=10)
    with pytest.raises(SourceError, match="positive STEP"):
        make(KaraboSource(endpoint="tcp://127.0.0.1:1", detector=DET, pulses="::-1"), frames_every=1)


def test_parse_pulses_and_pulse_axis() -> None:
    assert parse_pulses("train") is None
    assert parse_pulses("0:64:2") == slice(0, 64, 2)
    assert parse_pulses("::4") == slice(None, None, 4)
    assert parse_pulses("5:") == slice(5, None)
    assert pulse_axis((128, 512, 64), 64) == 2
    assert pulse_axis((64, 512, 128), 64) == 0
    assert pulse_axis((128, 512, 128), 128) == 0  # ambiguous: the facility's pulses-first wins
    assert pulse_axis((512, 128), 1) == -1
    assert pulse_axis((16, 128, 512, 64), 64) == 3


def test_simulator_has_no_xgm_so_i0_results_are_null(bridge: Callable[..., SimBridge]) -> None:
    """The simulated bridge sends no XGM: the I0 point is NaN for every shot, never invented."""
    sim = bridge()
    cfg = load_config(FIXTURE)
    cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"endpoint": sim.endpoint})})
    src = make(cfg, frames_every=10)
    src.open()
    try:
        blocks = read_n(src, 4)
        assert all(np.isnan(b.points["xgm"]).all() for b in blocks)
        assert src.status().missing["xgm"] == 4
    finally:
        src.close()
    summary = _summary(cfg, blocks)
    assert summary["shots"] == {"total": 4, "accepted": 0, "vetoed": {"i0": 4}}
    for roi in summary["rois"].values():
        assert roi["norm"] is None and roi["mean_ratio"] is None


def _summary(cfg: Config, blocks: list[ShotBlock]) -> dict:
    """The reduce --json result for ``blocks``, cut as the recorder cuts them."""
    table = RoiTable()
    table.apply({r.name: r for r in cfg.roi}, shot=0, tag=int(blocks[0].tags[0]))
    reducer = SummaryReducer(Analysis.from_config(cfg, ev_per_adu={DET: 1.0}))
    state = reducer.init()
    for b in blocks:
        state = reducer.update(state, cut_block(b, table.active()))
    return reducer.result(state)


@pytest.mark.timeout(120)
def test_record_and_reduce_from_the_simulated_bridge(bridge: Callable[..., SimBridge], tmp_path: Path) -> None:
    """`shotwatch record -c fixtures/karabo.toml` against the simulator, then `reduce`."""
    sim = bridge()
    config = tmp_path / "karabo.toml"
    config.write_text(FIXTURE.read_text().replace("tcp://127.0.0.1:4545", sim.endpoint))
    out = tmp_path / "agipd.zarr"
    shots = 20
    rec = subprocess.run([sys.executable, "-m", "shotwatch", "record", "-c", str(config), "--shots", str(shots),
                          "-o", str(out)], capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert "'xgm'" in rec.stderr and "not in stream" in rec.stderr  # the notice reaches stderr

    def reduce(*extra: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "shotwatch", "reduce", str(out), "--json", *extra],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    # The simulator sends no XGM: every shot fails the I0 window, I0-based numbers are null.
    result = reduce()
    assert result["shots"]["total"] == shots and result["shots"]["accepted"] == 0
    assert result["shots"]["vetoed"]["i0"] == shots
    for roi in result["rois"].values():
        assert roi["count"] == 0 and roi["norm"] is None and roi["mean_ratio"] is None
    # Without [i0] every train counts: a 32 x 32 ROI of the train mean of uniform [1500, 1600) ADU.
    no_i0 = tmp_path / "no_i0.toml"
    no_i0.write_text("[calibration]\n")
    result = reduce("-c", str(no_i0))
    for roi in result["rois"].values():
        assert roi["count"] == shots and roi["norm"] is None
        assert 1500 * 1024 <= roi["mean"] < 1600 * 1024
