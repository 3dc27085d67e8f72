"""The karabo source reading karabo-bridge's simulated AGIPD module (128 x 512 x 64 uint16).

Rows: trains/s and shots/s per socket and pulses mode against ``SimServer`` (whose random
numbers limit it to ~50 trains/s here), the source's own ceiling against a server re-sending
one pre-serialised train, and ``record`` end to end. Gate: >= 10 trains/s (European XFEL's
rate) in train mode, for the source and for the recorder.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit
from shotwatch.recorder.acquire import Recorder
from shotwatch.schemas import KaraboSource, parse_config
from shotwatch.sources.karabo import KaraboBridgeSource

ROOT = Path(__file__).resolve().parent.parent
DET = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
SIM = ("import sys; from karabo_bridge.server import SimServer; SimServer(sys.argv[1], sock=sys.argv[2], "
       "detector='AGIPDModule', raw=True, debug=False).loop()")
REPLAY = r"""
import sys, msgpack, zmq
from karabo_bridge.serializer import serialize
from karabo_bridge.simulation import AGIPDModule
msg = serialize(*AGIPDModule(sys.argv[3], raw=True).gen_data(10**10))
head = msgpack.unpackb(msg[0])
sock = zmq.Context().socket(zmq.REP)
sock.bind(sys.argv[1])
tid = 10**10
while True:
    sock.recv()
    tid += 1
    head["metadata"]["timestamp.tid"] = tid
    msg[0] = msgpack.packb(head, use_bin_type=True)
    sock.send_multipart(msg, copy=False)
"""


def server(code: str, sock: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    proc = subprocess.Popen([sys.executable, "-c", code, endpoint, sock, DET], stdout=subprocess.DEVNULL)
    return proc, endpoint


def source_rate(endpoint: str, client: str, pulses: str, seconds: float = 3.0) -> tuple[float, float]:
    src = KaraboBridgeSource(KaraboSource(endpoint=endpoint, socket=client, detector=DET,  # type: ignore[arg-type]
                                          pulses=pulses))
    src.open()
    try:
        for _ in range(3):
            src.read(timeout=2.0)
        t0, trains, shots = time.perf_counter(), 0, 0
        while time.perf_counter() - t0 < seconds:
            block = src.read(timeout=2.0)
            if block is not None:
                trains, shots = trains + 1, shots + len(block)
        dt = time.perf_counter() - t0
    finally:
        src.close()
    return trains / dt, shots / dt


def record_rate(endpoint: str, trains: int = 100) -> tuple[float, int]:
    """``record`` of ``trains`` trains (one shot each) from the simulated module, the open
    included; (trains/s, trains recorded). At most 60 s: a source that delivers nothing shows
    as a rate of 0 rather than a hang."""
    config = parse_config({
        "source": {"kind": "karabo", "endpoint": endpoint, "socket": "REQ", "detectors": [DET], "pulses": "train"},
        "roi": [{"name": "spot", "detector": DET, "x": [40, 72], "y": [100, 132]},
                {"name": "background", "detector": DET, "x": [40, 72], "y": [400, 432]}],
        "record": {"frames_every": 10},
    }, origin="bench")
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(config, out=str(Path(tmp) / "karabo.zarr"))
        t0 = time.perf_counter()
        recorder.run(shots=trains, seconds=60.0)
        done = recorder.status().shots
        return done / (time.perf_counter() - t0), done


def main() -> None:
    for sock, client in (("REP", "REQ"), ("PUB", "SUB")):
        proc, endpoint = server(SIM, sock)
        try:
            for pulses in ("train", "::1"):
                trains, shots = source_rate(endpoint, client, pulses)
                gate = ">= 10 trains/s" if pulses == "train" else None
                emit("karabo_source", f"sim {client} pulses={pulses}", trains, "trains/s", shots_per_s=round(shots),
                     gate=gate, ok=trains >= 10 if gate else None)
            if client == "REQ":
                rate, done = record_rate(endpoint)
                emit("karabo_record", "record sim REQ pulses=train (incl. open)", rate, "trains/s",
                     gate=">= 10 trains/s", ok=rate >= 10, trains=done)
        finally:
            proc.kill()
            proc.wait()
    proc, endpoint = server(REPLAY, "REP")
    try:
        for pulses in ("train", "::1"):
            trains, shots = source_rate(endpoint, "REQ", pulses)
            emit("karabo_source", f"ceiling REQ pulses={pulses}", trains, "trains/s", shots_per_s=round(shots))
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
