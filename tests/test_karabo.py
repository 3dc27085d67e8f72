"""The karabo source against karabo-bridge's own simulated server (FACILITY.md, European XFEL).

The server is the package's ``SimServer`` (what ``karabo-bridge-server-sim`` runs), started as a
subprocess bound to 127.0.0.1 on a free port: the console script binds every interface
(``tcp://*:PORT``), so the tests call the same class with a loopback endpoint instead. Modes
that work in karabo-bridge 0.7: AGIPDModule raw, AGIPD and LPD corrected, online and file
layouts, REP/PUB/PUSH, protocols 1.0 and 2.2 (2.1 is broken, ``-s pickle`` fails at its
start: a pickled message is tested against a crafted server instead).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from shotwatch.recorder.cut import cut_block
from shotwatch.reducers import Analysis, SummaryReducer
from shotwatch.reducers.analysis import shot_table
from shotwatch.schemas import Config, KaraboSource, RoiTable, ShotBlock, SourceError, load_config
from shotwatch.sources import Source, open_source
from shotwatch.sources._karabo_train import find_layout, frames, parse_pulses, point_values
from shotwatch.sources._karabo_wire import BadMessage, decode
from shotwatch.sources.karabo import REFUSED, WENT_BACK, KaraboBridgeSource, make
from source_conformance import SourceConformance

pytest.importorskip("karabo_bridge")

DET = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
AGIPD = "SPB_DET_AGIPD1M-1/CAL/APPEND_CORRECTED"
LPD = "FXE_DET_LPD1M-1/CAL/APPEND_CORRECTED"
XGM = "SA1_XTD2_XGM/DOOCS/MAIN:output/data.intensityTD"
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "karabo.toml"
SERVER = ("import sys; from karabo_bridge.server import SimServer; "
          "SimServer(sys.argv[1], sock=sys.argv[2], detector=sys.argv[3], raw=sys.argv[4] == 'raw', "
          "datagen=sys.argv[5], data_like=sys.argv[6], protocol_version=sys.argv[7], debug=False).loop()")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimBridge:
    """karabo-bridge's simulated server in a subprocess, on loopback only."""

    def __init__(self, *, sock: str = "REP", detector: str = "AGIPDModule", raw: bool = True, gen: str = "random",
                 layout: str = "online", protocol: str = "2.2") -> None:
        self.port = free_port()
        self.args = [sock, detector, "raw" if raw else "corr", gen, layout, protocol]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> SimBridge:
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, self.endpoint, *self.args], stdout=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def bridge() -> Iterator[Callable[..., SimBridge]]:
    started: list[SimBridge] = []

    def start(**kwargs: Any) -> SimBridge:
        started.append(SimBridge(**kwargs).start())
        return started[-1]

    yield start
    for b in started:
        b.stop()


def source(endpoint: str, *, pulses: str = "train", sock: str = "REQ", detectors: list[str] | None = None,
           **kwargs: Any) -> KaraboBridgeSource:
    dets = detectors or [DET]
    cfg = KaraboSource(endpoint=endpoint, socket=sock, detectors=dets, pulses=pulses,  # type: ignore[arg-type]
                       points={f"{dets[0].split('[')[0]}/image.cellId": "cell", XGM: "xgm"})
    src = KaraboBridgeSource(cfg, **kwargs)
    src.open()
    return src


def read_n(src: KaraboBridgeSource, n: int, *, timeout: float = 10.0) -> list[ShotBlock]:
    blocks = []
    for _ in range(n):
        block = src.read(timeout=timeout)
        assert block is not None, src.status()
        blocks.append(block.validate())
    return blocks


class TestKaraboTrainReqConformance(SourceConformance):
    @pytest.fixture
    def source_factory(self, bridge: Callable[..., SimBridge]) -> Callable[[], Source]:
        cfg = KaraboSource(endpoint=bridge().endpoint, socket="REQ", detectors=[DET], pulses="train")
        return lambda: KaraboBridgeSource(cfg)


class TestKaraboPulsesPullConformance(SourceConformance):
    @pytest.fixture
    def source_factory(self, bridge: Callable[..., SimBridge]) -> Callable[[], Source]:
        cfg = KaraboSource(endpoint=bridge(sock="PUSH").endpoint, socket="PULL", detectors=[DET], pulses="::8")
        return lambda: KaraboBridgeSource(cfg)


# --- the simulated server in the modes that work -----------------------------------------------

RAW = {"detector": "AGIPDModule", "raw": True}


@pytest.mark.parametrize(("server", "client", "layout", "protocol"), [
    ("REP", "REQ", "online", "2.2"), ("REP", "REQ", "file", "2.2"), ("PUB", "SUB", "online", "2.2"),
    ("PUSH", "PULL", "file", "2.2"), ("REP", "REQ", "online", "1.0"), ("PUSH", "PULL", "file", "1.0"),
])
def test_raw_agipd_module_in_file_orientation(bridge: Callable[..., SimBridge], server: str, client: str,
                                              layout: str, protocol: str) -> None:
    """Whatever the wire layout, a module frame is 512 rows x 128 columns, as in the files."""
    src = source(bridge(sock=server, layout=layout, protocol=protocol, **RAW).endpoint, sock=client, pulses="1:64:3")
    try:
        info = src.describe()
        assert info.detectors[DET].shape == (512, 128) and info.detectors[DET].dtype == "uint16"
        assert info.attrs["tag"] == "trainId * 64 + pulse index" and info.attrs["layouts"] == {DET: layout}
        index = np.arange(1, 64, 3)
        blocks = read_n(src, 2)
        for b in blocks:
            train = (b.tags[0] - 1) // 64
            assert np.array_equal(b.tags, train * 64 + index)
            assert np.array_equal(b.points["cell"], index)  # cellId[k] = k in the simulator
            fr = b.frames[DET]
            assert fr.pixels.shape == (len(index), 512, 128) and fr.pixels.dtype == np.uint16
            # ROI values: a 32 x 32 region of uniform [1500, 1600) ADU
            roi = fr.pixels[:, 100:132, 40:72].sum(axis=(1, 2), dtype=np.int64)
            assert np.all((roi >= 1500 * 1024) & (roi < 1600 * 1024)) and np.isnan(b.points["xgm"]).all()
        assert np.all(np.diff(np.concatenate([b.tags for b in blocks])) > 0)
    finally:
        src.close()


def test_train_mode_is_the_mean_over_pulses(bridge: Callable[..., SimBridge]) -> None:
    src = source(bridge(**RAW).endpoint)
    try:
        info = src.describe()
        assert info.kind == "karabo" and info.run is None and info.attrs["tag"] == "trainId"
        assert info.detectors[DET].shape == (512, 128) and info.detectors[DET].dtype == "float32"
        for b in read_n(src, 3):
            frame = b.frames[DET].pixels
            assert len(b) == 1 and frame.shape == (1, 512, 128) and frame.dtype == np.float32
            assert 1500 <= frame.min() and frame.max() < 1600 and b.points["cell"][0] == 31.5
            assert math.isnan(b.points["xgm"][0]) and abs(b.time[0] - time.time()) < 60
        assert src.status().missing == {"xgm": 3}
        assert any("'xgm'" in n and "not in stream" in n for n in src.notices())
    finally:
        src.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("layout", ["online", "file"])
def test_corrected_agipd_modules_as_detectors(bridge: Callable[..., SimBridge], layout: str) -> None:
    """AGIPD 1M corrected (16 modules): modules <source>[k] and the whole source at once."""
    dets = [f"{AGIPD}[3]", f"{AGIPD}[15]", AGIPD]
    src = source(bridge(detector="AGIPD", raw=False, gen="zeros", layout=layout).endpoint, pulses="0:4",
                 detectors=dets)
    try:
        info = src.describe()
        assert [info.detectors[d].shape for d in dets] == [(512, 128), (512, 128), (16 * 512, 128)]
        assert {info.detectors[d].dtype for d in dets} == {"float32"}
        b = read_n(src, 1)[0]
        assert [b.frames[d].pixels.shape for d in dets] == [(4, 512, 128), (4, 512, 128), (4, 8192, 128)]
        assert all(float(np.abs(b.frames[d].pixels).sum()) == 0.0 for d in dets)  # -g zeros: every ROI sum is 0
        assert np.array_equal(b.points["cell"], np.arange(4))
    finally:
        src.close()
    with pytest.raises(SourceError, match=r"source.detectors\[0\]: expected a module index below 16"):
        source(bridge(detector="AGIPD", raw=False, gen="zeros").endpoint, detectors=[f"{AGIPD}[16]"])
    with pytest.raises(SourceError, match=r"source.detectors\[0\]: expected .* to have a module axis"):
        source(bridge(**RAW).endpoint, detectors=[f"{DET}[0]"])


@pytest.mark.timeout(120)
def test_corrected_lpd_modules(bridge: Callable[..., SimBridge]) -> None:
    """LPD 1M corrected, 300 pulses of 16 x 256 x 256 float32 (1.26 GB a train): modules 256 x 256."""
    src = source(bridge(detector="LPD", raw=False, gen="zeros").endpoint, pulses="0:300:100",
                 detectors=[f"{LPD}[0]", f"{LPD}[9]"], open_timeout=60.0)
    try:
        assert src.describe().detectors[f"{LPD}[9]"].shape == (256, 256)
        assert src.describe().attrs["pulses_per_train"] == 300
        b = read_n(src, 1, timeout=30.0)[0]
        assert b.frames[f"{LPD}[9]"].pixels.shape == (3, 256, 256) and (b.tags % 300).tolist() == [0, 100, 200]
        assert float(b.frames[f"{LPD}[9]"].pixels.sum()) == 0.0
    finally:
        src.close()


def test_detector_not_in_stream_is_a_notice_not_an_error(bridge: Callable[..., SimBridge]) -> None:
    other = "SPB_DET_AGIPD1M-1/DET/5CH0:xtdf"
    cfg = KaraboSource(endpoint=bridge(**RAW).endpoint, detectors=[other], points={f"{DET}/image.cellId": "cell"})
    src = KaraboBridgeSource(cfg, open_timeout=3.0)
    src.open()
    try:
        assert src.describe().detectors == {}
        assert any(f"{other} not in stream (available: {DET})" in n for n in src.notices())
        blocks = read_n(src, 2)
        assert all(len(b) == 1 and not b.frames and b.points["cell"][0] == 31.5 for b in blocks)
        status = src.status()
        assert status.not_in_stream == [other] and status.missing[other] >= 2
    finally:
        src.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("server", "client"), [("REP", "REQ"), ("PUB", "SUB")])
def test_server_stops_and_returns(bridge: Callable[..., SimBridge], server: str, client: str) -> None:
    sim = bridge(sock=server, **RAW)
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
        assert status.state == "running" and any("reconnected" in n for n in src.notices())
        assert after.tags[0] > before[-1]  # trains whose ids went back were dropped, tags increase
        if client == "REQ":  # a PUB server may have passed the old ids before SUB rejoins
            assert status.counters.get("reconnects", 0) >= 1 and status.counters.get(WENT_BACK, 0) >= 1
    finally:
        src.close()


def test_no_server_fails_at_open_within_timeout() -> None:
    cfg = KaraboSource(endpoint=f"tcp://127.0.0.1:{free_port()}", detectors=[DET])
    src = KaraboBridgeSource(cfg, open_timeout=1.0)
    t = time.monotonic()
    with pytest.raises(SourceError, match="found none within 1 s"):
        src.open()
    assert time.monotonic() - t < 3.0


# --- layouts, XGM, configuration (pure) --------------------------------------------------------


def test_layouts_and_the_raw_gain_axis() -> None:
    rng = np.random.default_rng(1)
    file_raw = rng.integers(0, 4000, (5, 2, 512, 128), dtype=np.uint16)  # (pulses, data/gain, 512, 128)
    online_raw = np.ascontiguousarray(np.moveaxis(file_raw, 0, -1).swapaxes(-2, -3))  # (2, 128, 512, pulses)
    pid = np.arange(5, dtype=np.uint64)
    for image, name in ((file_raw, "file"), (online_raw, "online")):
        lay = find_layout("d", {"image.data": image, "image.pulseId": pid}, layout=None)
        assert lay is not None and lay.name == name and lay.gain and lay.frame == (512, 128)
        got = frames(image, lay, None)
        assert got is not None and np.array_equal(got, file_raw[:, 0])  # data, not the gain stage
    # as many pulses as rows: the shapes cannot tell; source.layout must say
    square = np.zeros((128, 512, 128), np.float32)
    props = {"image.data": square, "image.pulseId": np.arange(128)}
    with pytest.raises(SourceError, match=r'^source.layout: expected "file" or "online" \(d image.data'):
        find_layout("d", props, layout=None)
    assert find_layout("d", props, layout="online").frame == (512, 128)  # type: ignore[union-attr]
    with pytest.raises(SourceError, match=r"^source.layout: expected d to have its 64 pulses on the last axis"):
        find_layout("d", {"image.data": np.zeros((64, 512, 128)), "image.pulseId": np.arange(64)}, layout="online")


def test_xgm_entry_by_pulse_position_and_filler() -> None:
    xgm = np.array([10.0, 11.0, 12.0, 13.0] + [1.0] * 996)  # 4 FEL pulses, then filler
    pos = np.array([0, 2, 5])
    got = point_values(xgm, pos, 8, train_mode=False, per_pulse_limit=4, frames_axis=False)
    np.testing.assert_array_equal(got, [10.0, 12.0, np.nan])  # position 5 >= xgm_pulses: NaN
    assert point_values(xgm, np.zeros(1, np.int64), 8, train_mode=True, per_pulse_limit=4,
                        frames_axis=False)[0] == 11.5  # the mean of the FEL pulses only
    cell = np.arange(8.0)
    assert point_values(cell, np.zeros(1, np.int64), 8, train_mode=True, per_pulse_limit=4, frames_axis=True)[0] == 3.5


def test_parse_pulses() -> None:
    assert parse_pulses("train") is None
    assert parse_pulses("0:64:2") == slice(0, 64, 2) and parse_pulses("::4") == slice(None, None, 4)
    assert parse_pulses("5:") == slice(5, None)


def base_config(**extra: Any) -> dict[str, Any]:
    return {"source": {"kind": "karabo", "endpoint": "tcp://127.0.0.1:1", "detectors": [f"{AGIPD}[3]"],
                       "pulses": "0:64", "points": {XGM: "xgm"}, **extra.pop("source", {})}, **extra}


def test_configuration_checks() -> None:
    cfg = load_config(FIXTURE)
    assert isinstance(make(cfg, frames_every=10), KaraboBridgeSource)
    old = Config.model_validate({"source": {"kind": "karabo", "endpoint": "tcp://h:1", "detector": DET}})
    assert old.source.detectors == [DET]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="source.detector or source.detectors, found both"):
        Config.model_validate(base_config(source={"detector": DET}))
    bad = Config.model_validate(base_config(roi=[{"name": "r", "detector": DET, "x": [0, 1], "y": [0, 1]}]))
    with pytest.raises(SourceError, match=r"^roi 'r': detector: expected one of source.detectors"):
        make(bad)
    with pytest.raises(SourceError, match="source.points: expected a \"source/key\" = 'i0'"):
        make(Config.model_validate(base_config(i0={"name": "i0", "min": 1.0})))
    with pytest.raises(SourceError, match="positive STEP"):
        make(Config.model_validate(base_config(source={"pulses": "::-1"})))


def test_pump_probe_modes_fit_the_pulse_mode() -> None:
    tag_mod = {"mode": "tag-modulo", "cycle": 2, "on": [0]}
    with pytest.raises(SourceError, match=r'^pump_probe.mode: expected "pulse-modulo" or "train-modulo" with one shot'):
        make(Config.model_validate(base_config(pump_probe=tag_mod)))
    with pytest.raises(SourceError, match=r'^pump_probe.mode: expected "train-modulo", "tag-modulo" or "point" with'):
        make(Config.model_validate(base_config(source={"pulses": "train"},
                                               pump_probe={"mode": "pulse-modulo", "cycle": 2, "on": [0]})))
    make(Config.model_validate(base_config(source={"pulses": "train"}, pump_probe=tag_mod)))  # tag = trainId: fine
    src = make(Config.model_validate(base_config(pump_probe={"mode": "pulse-modulo", "cycle": 2, "on": [1]})))
    assert src.shots.reserved == ["pulse_index"]
    for kind in ("sim", "sacla"):
        with pytest.raises(SourceError, match=rf"^pump_probe.mode: expected .* source.kind = '{kind}'"):
            open_source(Config.model_validate({"source": {"kind": kind},
                                               "pump_probe": {"mode": "train-modulo", "cycle": 2, "on": [0]}}))


def test_pulse_and_train_modulo_decide_per_shot() -> None:
    """pulse-modulo: the pulse's index in its train; train-modulo: the train id; never the tag."""
    tids, ppt = np.array([1001, 1001, 1001, 1002, 1002, 1002]), 3
    idx = np.array([0, 1, 2, 0, 1, 2])
    block = ShotBlock((tids * ppt + idx).astype(np.int64), np.zeros(6),
                      {"train_id": tids.astype(float), "pulse_index": np.array([0, 1, 2, 0, np.nan, 2])})
    for mode, expect in (("pulse-modulo", [1, 0, 1, 1, -1, 1]), ("train-modulo", [0, 0, 0, 1, 1, 1])):
        cfg = Config.model_validate({"pump_probe": {"mode": mode, "cycle": 2, "on": [0]}})
        assert shot_table(block, Analysis.from_config(cfg, ev_per_adu={}), {}).laser.tolist() == expect
        assert cfg.analysis_points() == [{"pulse-modulo": "pulse_index", "train-modulo": "train_id"}[mode]]


# --- nothing from the wire runs (issue 7, item 1) ------------------------------------------------


class CraftedBridge:
    """A REP server on loopback answering each request with the next of ``messages`` (then the last)."""

    def __init__(self, messages: list[list[bytes]]) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.REP)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.messages = messages
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        k = 0
        while not self.stop.is_set():
            if self.sock.poll(50):
                self.sock.recv()
                self.sock.send_multipart(self.messages[min(k, len(self.messages) - 1)])
                k += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.ctx.destroy(linger=0)


def good_train(tid: int, pulses: int = 4) -> list[bytes]:
    """A protocol 2.2 train of one module, as karabo-bridge's serializer writes it."""
    from karabo_bridge.serializer import serialize

    data = {DET: {"image.data": np.full((pulses, 512, 128), 7, np.uint16),
                  "image.pulseId": np.arange(pulses, dtype=np.uint64)}}
    return [bytes(p) for p in serialize(data, {DET: {"source": DET, "timestamp.tid": tid}})]


def pickled_map(marker: Path) -> list[bytes]:
    """Protocol 1.0 with a msgpack-numpy object array: msgpack_numpy.decode would unpickle it."""

    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    import pickle  # only the test builds a pickle: the crafted peer's payload

    obj = {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": pickle.dumps(Boom())}
    return [msgpack.packb({DET: {"image.data": obj, "metadata": {"timestamp.tid": 5}}}, use_bin_type=True)]


def test_a_pickled_map_from_the_bridge_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    from karabo_bridge.serializer import deserialize  # what Client.next() calls: the premise holds

    deserialize(pickled_map(marker))
    assert marker.exists()
    marker.unlink()
    crafted = CraftedBridge([pickled_map(marker), pickled_map(marker), good_train(11), good_train(12)])
    try:
        cfg = KaraboSource(endpoint=crafted.endpoint, detectors=[DET], pulses="0:4")
        src = KaraboBridgeSource(cfg, open_timeout=5.0)
        src.open()
        block = src.read(timeout=2.0)
        assert block is not None and block.tags.tolist() == [11 * 4 + i for i in range(4)]
        assert int(block.frames[DET].pixels.sum()) == 7 * 4 * 512 * 128
        assert not marker.exists()  # nothing executed
        assert src.status().counters[REFUSED] == 2
        notes = src.notices()
        assert [n for n in notes if "refused" in n] == [
            f"karabo: refused a message from {crafted.endpoint} (not the karabo-bridge protocol): refused a "
            "msgpack-numpy array of kind b'O' (object arrays are pickles)"]  # once, not per message
        src.close()
    finally:
        crafted.close()
    assert "msgpack_numpy" not in subprocess.run(  # the source never imports the unpickling helpers
        [sys.executable, "-c", "import sys, shotwatch.sources.karabo as k; print(sorted(m for m in sys.modules "
         "if m.startswith(('msgpack_numpy', 'karabo_bridge', 'pickle'))))"],
        capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize(("parts", "why"), [
    ([msgpack.packb({"source": DET, "content": "msgpack"})], "expected a map of property names"),
    ([b"\xc1"], "undecodable"),
    ([msgpack.packb({"source": DET, "content": "msgpack"}), msgpack.packb({}), b"x"], "header/payload pairs"),
    ([msgpack.packb({"source": DET, "content": "pickle"}), b""], "content 'msgpack' or 'array'"),
    ([msgpack.packb({"source": DET, "content": "msgpack"}), msgpack.packb({}),
      msgpack.packb({"source": DET, "content": "array", "path": "a", "dtype": "<u2", "shape": [4]}), b"\0" * 7],
     "expected 8 bytes"),
    ([msgpack.packb({"source": DET, "content": "msgpack"}), msgpack.packb({}),
      msgpack.packb({"source": DET, "content": "array", "path": "a", "dtype": "|O", "shape": [1]}), b"\0" * 8],
     "numeric dtype"),
    ([msgpack.packb({"source": DET, "content": "msgpack"}), msgpack.packb({}),
      msgpack.packb({"source": DET, "content": "array", "path": "a", "dtype": "<f4", "shape": [2**40, 2**40]}),
      b""], "shape"),
    ([msgpack.packb({DET: msgpack.ExtType(1, b"x")})], "extension type"),
    ([msgpack.packb({1: {}})], "undecodable"),  # strict_map_key: an int key is no source name
])
def test_what_is_not_the_protocol_is_refused(parts: list[bytes], why: str) -> None:
    with pytest.raises(BadMessage, match=why):
        decode(parts)


def test_an_oversized_message_is_refused_and_the_source_goes_on() -> None:
    big = good_train(21, pulses=8)
    crafted = CraftedBridge([good_train(20), big, good_train(22)])
    try:
        cfg = KaraboSource(endpoint=crafted.endpoint, detectors=[DET], pulses="0:4")
        src = KaraboBridgeSource(cfg, open_timeout=5.0, max_bytes=sum(len(p) for p in big) - 1)
        src.open()
        tags = [b.tags[0] // 4 for b in read_n(src, 2, timeout=3.0)]
        assert tags == [20, 22] and src.status().counters[REFUSED] == 1
        src.close()
    finally:
        crafted.close()


# --- end to end ---------------------------------------------------------------------------------


def _summary(cfg: Config, blocks: list[ShotBlock]) -> dict[str, Any]:
    """The reduce --json result for ``blocks``, cut as the recorder cuts them."""
    table = RoiTable()
    table.apply({r.name: r for r in cfg.roi}, shot=0, tag=int(blocks[0].tags[0]))
    reducer = SummaryReducer(Analysis.from_config(cfg, ev_per_adu={r.detector: 1.0 for r in cfg.roi}))
    state = reducer.init()
    for b in blocks:
        state = reducer.update(state, cut_block(b, table.active()))
    return reducer.result(state)


def test_simulator_has_no_xgm_so_i0_results_are_null(bridge: Callable[..., SimBridge]) -> None:
    """The simulated bridge sends no XGM: the I0 point is NaN for every shot, never invented."""
    sim = bridge(**RAW)
    cfg = Config.model_validate(base_config(
        source={"endpoint": sim.endpoint, "detectors": [DET], "pulses": "train"}, i0={"name": "xgm", "min": 1e-6},
        roi=[{"name": "spot", "detector": DET, "x": [40, 72], "y": [100, 132]}]))
    src = make(cfg)
    src.open()
    try:
        blocks = read_n(src, 3)
        assert all(np.isnan(b.points["xgm"]).all() for b in blocks) and src.status().missing["xgm"] == 3
    finally:
        src.close()
    summary = _summary(cfg, blocks)
    assert summary["shots"] == {"total": 3, "accepted": 0, "vetoed": {"i0": 3}}
    assert summary["rois"]["spot"]["norm"] is None and summary["rois"]["spot"]["mean_ratio"] is None


@pytest.mark.timeout(120)
def test_record_and_reduce_from_the_simulated_bridge(bridge: Callable[..., SimBridge], tmp_path: Path) -> None:
    """`shotwatch record` against the simulated raw module, ROI in file coordinates, pulse pump-probe."""
    sim = bridge(**RAW)
    config = tmp_path / "karabo.toml"
    config.write_text(f'[source]\nkind = "karabo"\nendpoint = "{sim.endpoint}"\ndetectors = ["{DET}"]\n'
                      f'pulses = "0:64:8"\n[source.points]\n"{XGM}" = "xgm"\n'
                      f'[[roi]]\nname = "spot"\ndetector = "{DET}"\nx = [40, 72]\ny = [100, 132]\n'
                      '[pump_probe]\nmode = "pulse-modulo"\ncycle = 2\non = [0]\n')
    out = tmp_path / "agipd.zarr"
    rec = subprocess.run([sys.executable, "-m", "shotwatch", "record", "-c", str(config), "--shots", "16",
                          "-o", str(out)], capture_output=True, text=True, timeout=90, cwd=tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert "'xgm'" in rec.stderr and "not in stream" in rec.stderr  # the notice reaches stderr
    done = subprocess.run([sys.executable, "-m", "shotwatch", "reduce", str(out), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    spot = result["rois"]["spot"]  # 8 pulses (0, 8, ..., 56) of 2 trains; pulse index % 2 == 0: all on
    assert result["shots"]["total"] == 16 and spot["count"] == 16 and spot["on"]["count"] == 16
    assert spot["off"]["count"] == 0 and 1500 * 1024 <= spot["mean"] < 1600 * 1024
    info = json.loads(subprocess.run([sys.executable, "-m", "shotwatch", "info", str(out), "--json"],
                                     capture_output=True, text=True, timeout=60, check=True).stdout)
    assert info["detectors"][DET]["shape"] == [512, 128]
