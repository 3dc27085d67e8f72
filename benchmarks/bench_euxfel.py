"""European XFEL sources: trains/s and shots/s per SimServer mode and serve-files socket.

Rows: the ``karabo`` source against karabo-bridge's ``SimServer`` in each mode that works in
karabo-bridge 0.7 (AGIPDModule raw online/file over REQ, SUB and PULL, protocols 2.2 and 1.0;
AGIPD 1M and LPD 1M corrected, ``-g zeros``, modules as detectors), and against extra-data's
``karabo-bridge-serve-files`` (REQ, PUB, PUSH) serving a mock run with known pixels, plus the
``euxfel-run`` source reading the same run from files. ``rois_checked``: ROI values compared
(SimServer random raw: each 32 x 32 sum within the uniform [1500, 1600) ADU range; zeros: each
exactly 0; a served or read run: each equal to the sum computed from the files with
extra-data). European XFEL sends 10 trains/s; the simulator's random numbers limit it here.

    python benchmarks/bench_euxfel.py [--seconds 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from _common import emit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from shotwatch.schemas import EuxfelRunSource, KaraboSource  # noqa: E402
from shotwatch.sources.euxfel_run import EuxfelRun  # noqa: E402
from shotwatch.sources.karabo import KaraboBridgeSource  # noqa: E402
from test_euxfel_run import CORR, PULSES, ServeFiles, write_run  # noqa: E402
from test_karabo import SimBridge  # noqa: E402

BENCH = "euxfel"
MODULE = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
SIM_MODES = [  # (label, SimBridge options, client socket, detectors, pulses)
    ("AGIPDModule raw online REQ 2.2", {}, "REQ", [MODULE], "::1"),
    ("AGIPDModule raw file REQ 2.2", {"layout": "file"}, "REQ", [MODULE], "::1"),
    ("AGIPDModule raw online SUB 2.2", {"sock": "PUB"}, "SUB", [MODULE], "::1"),
    ("AGIPDModule raw online PULL 2.2", {"sock": "PUSH"}, "PULL", [MODULE], "::1"),
    ("AGIPDModule raw online REQ 1.0", {"protocol": "1.0"}, "REQ", [MODULE], "::1"),
    ("AGIPDModule raw online REQ train", {}, "REQ", [MODULE], "train"),
    ("AGIPD corrected online REQ [3],[8]", {"detector": "AGIPD", "raw": False, "gen": "zeros"}, "REQ",
     ["SPB_DET_AGIPD1M-1/CAL/APPEND_CORRECTED[3]", "SPB_DET_AGIPD1M-1/CAL/APPEND_CORRECTED[8]"], "::1"),
    ("AGIPD corrected file REQ [3]", {"detector": "AGIPD", "raw": False, "gen": "zeros", "layout": "file"}, "REQ",
     ["SPB_DET_AGIPD1M-1/CAL/APPEND_CORRECTED[3]"], "::1"),
    ("LPD corrected online REQ [0]", {"detector": "LPD", "raw": False, "gen": "zeros"}, "REQ",
     ["FXE_DET_LPD1M-1/CAL/APPEND_CORRECTED[0]"], "::1"),
]


def check_sim(block: object, zeros: bool) -> int:
    checked = 0
    for fr in block.frames.values():  # type: ignore[attr-defined]
        sums = fr.pixels[:, 100:132, 40:72].sum(axis=(1, 2), dtype=np.float64)
        ok = (sums == 0) if zeros else (sums >= 1500 * 1024) & (sums < 1600 * 1024)
        assert ok.all(), "ROI value out of range"
        checked += len(sums)
    return checked


def sim_row(label: str, opts: dict, client: str, dets: list[str], pulses: str, seconds: float) -> None:
    sim = SimBridge(**opts).start()
    try:
        src = KaraboBridgeSource(KaraboSource(endpoint=sim.endpoint, socket=client, detectors=dets,  # type: ignore[arg-type]
                                              pulses=pulses), open_timeout=60.0, stale_after=30.0)
        src.open()
        src.read(timeout=30.0)
        t0, trains, shots, checked = time.perf_counter(), 0, 0, 0
        while time.perf_counter() - t0 < seconds:
            block = src.read(timeout=30.0)
            if block is not None:
                trains, shots = trains + 1, shots + len(block)
                checked += check_sim(block, zeros=opts.get("gen") == "zeros")
        dt = time.perf_counter() - t0
        src.close()
    finally:
        sim.stop()
    emit(BENCH, "trains_per_s", trains / dt, "trains/s", mode=f"SimServer {label}",
         shots_per_s=round(shots / dt, 1), rois_checked=checked)


def files_truth(run_dir: Path) -> np.ndarray:
    import extra_data

    data = extra_data.RunDirectory(str(run_dir))[CORR, "image.data"].ndarray()
    return data[:, 300:340, 10:42].sum(axis=(1, 2), dtype=np.float64)


def drain(src: object, truth: np.ndarray, first_tid: int, until_quiet: float) -> tuple[int, int, int, float]:
    trains = shots = checked = 0
    t0 = t1 = time.perf_counter()
    while (block := src.read(timeout=until_quiet)) is not None:  # type: ignore[attr-defined]
        if not trains:
            t0 = time.perf_counter()
        t1 = time.perf_counter()
        trains, shots = trains + 1, shots + len(block)
        fr = block.frames[CORR]
        rows = (block.tags - first_tid * PULSES)[fr.shot]
        sums = fr.pixels[:, 300:340, 10:42].sum(axis=(1, 2), dtype=np.float64)
        np.testing.assert_allclose(sums, truth[rows], rtol=1e-9)
        checked += len(sums)
    return trains, shots, checked, max(t1 - t0, 1e-9)


def served_rows(run_dir: Path, ntrains: int) -> None:
    truth = files_truth(run_dir)
    for server, client in (("REP", "REQ"), ("PUB", "SUB"), ("PUSH", "PULL")):
        serve = ServeFiles(run_dir, server, start=False)
        src = KaraboBridgeSource(KaraboSource(endpoint=serve.endpoint, socket=client, detectors=[CORR],  # type: ignore[arg-type]
                                              pulses="::1"), open_timeout=30.0)
        threading.Timer(0.3, serve.start).start()
        src.open()
        trains, shots, checked, dt = drain(src, truth, 10000, 3.0)
        src.close()
        serve.stop()
        emit(BENCH, "trains_per_s", (trains - 1) / dt, "trains/s", mode=f"serve-files {server} -> {client}",
             shots_per_s=round((shots - PULSES) / dt, 1), rois_checked=checked, trains=trains, of=ntrains)
    src2 = EuxfelRun(EuxfelRunSource(path=str(run_dir), detectors=[CORR], pulses="::1", speed=0))
    src2.open()
    trains, shots, checked, dt = drain(src2, truth, 10000, 1.0)
    emit(BENCH, "trains_per_s", (trains - 1) / dt, "trains/s", mode="euxfel-run from files (speed 0)",
         shots_per_s=round((shots - PULSES) / dt, 1), rois_checked=checked, trains=trains, of=ntrains)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="measured seconds per SimServer mode")
    ap.add_argument("--trains", type=int, default=200, help="trains in the served mock run")
    args = ap.parse_args()
    for label, opts, client, dets, pulses in SIM_MODES:
        sim_row(label, opts, client, dets, pulses, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "r0001"
        write_run(run_dir, trains=args.trains)
        served_rows(run_dir, args.trains)


if __name__ == "__main__":
    main()
