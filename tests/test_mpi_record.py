"""``mpirun -n N shotwatch record --mpi`` (issue 12, live half; DESIGN.md, Scale).

Real MPI jobs (MPICH from PyPI), real recordings, real control sockets:

- the recording of N = 2 and N = 3 ranks equals the one-process recording of the same source,
  with ROI edits made mid-run from a console (a new version, a delete, a re-creation), vetoes,
  a dark, a channel, a scan, pump-probe and kept frames: ``reduce --json`` of both agree
  (counts exactly, values to 1e-9), and so do the live ``--summary-json`` of rank 0 and of one
  process;
- a worker rank killed mid-run: rank 0 says so (a notice, ``ranks`` and ``ranks lost`` in the
  status) and keeps recording what the other rank delivers;
- rank 0 sleeps between polls: its CPU while the source is idle.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from shotwatch.cli import main
from shotwatch.link.messages import Reply, StatusMsg
from shotwatch.link.netfeed import NetFeed
from shotwatch.link.runfile import runfile_for
from shotwatch.recorder.acquire import Recorder
from shotwatch.recording import RecordingReader
from shotwatch.recording.darkfile import write_dark_file
from shotwatch.schemas import DarkFrame, Roi, ShotBlock, load_config
from shotwatch.sources import Source, open_source
from shotwatch.sources.sim import DETECTOR, SHAPE
from test_karabo import free_port
from test_record_reduce import assert_same_summary

pytest.importorskip("mpi4py")
MPIEXEC = Path(sys.executable).with_name("mpiexec")
SHOTWATCH = Path(sys.executable).with_name("shotwatch")
pytestmark = pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec of the mpich wheel not installed")

CONFIG = """
[source]
kind = "sim"
seed = 11
rate = {rate}

[calibration]
threshold_ev = 500.0
photon_energy_ev = 9000.0
dark = "dark.zarr"

[i0]
name = "xfel_bl_3_st_5_pd_user_5_fitting_peak/voltage"
min = 0.05

[[veto]]
name = "xfel_mon_bpm_bl3_0_3_beamstatus/summary"
min = 0.5

[[mask]]
detector = "MPCCD-1N0-M06-004"
x = [190, 194]
y = [290, 300]

[[roi]]
name = "bragg"
detector = "MPCCD-1N0-M06-004"
x = [184, 216]
y = [284, 316]

[[roi]]
name = "bg"
detector = "MPCCD-1N0-M06-004"
x = [400, 432]
y = [800, 832]

[[channel]]
name = "net"
expr = "bragg - pixels(bragg)/pixels(bg)*bg"

[scan]
name = "xfel_bl_3_st_5_motor_user_1/position"
scale = 0.001
edges = {{ start = -1.0, stop = 3.0, count = 8 }}

[pump_probe]
mode = "tag-modulo"
cycle = 4
on = [0]

[record]
frames_every = {frames_every}
"""
EDITS: list[tuple[str, dict[str, Any]]] = [
    ("set_roi", {"name": "bragg", "detector": DETECTOR, "x": [180, 220], "y": [280, 320]}),
    ("delete_roi", {"name": "bg"}),
    ("set_roi", {"name": "bg", "detector": DETECTOR, "x": [300, 340], "y": [700, 740]}),
]


def write_config(tmp: Path, *, rate: float = 0, frames_every: int = 199) -> Path:
    rng = np.random.default_rng(3)
    mean = (300 + 20 * rng.standard_normal(SHAPE)).astype(np.float32)
    write_dark_file(tmp / "dark.zarr", {DETECTOR: DarkFrame(mean, np.full(SHAPE, 6, np.float32), 50, 0, 98)},
                    source={"kind": "sim"})
    cfg = tmp / "mpi.toml"
    cfg.write_text(CONFIG.format(rate=rate, frames_every=frames_every))
    return cfg


class Job:
    """An ``mpiexec -n N shotwatch record --mpi`` in the background, and a console's feed to it."""

    def __init__(self, n: int, cfg: Path, out: Path, *extra: str, disable_cleanup: bool = False,
                 env: Mapping[str, str] | None = None) -> None:
        self.control = f"tcp://127.0.0.1:{free_port()}"
        cmd = [str(MPIEXEC), *(["-disable-auto-cleanup"] if disable_cleanup else []), "-n", str(n),
               str(SHOTWATCH), "record", "--mpi", "-c", str(cfg), "-o", str(out), "--control", self.control,
               "--publish", f"tcp://127.0.0.1:{free_port()}", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True, env={**os.environ, **(env or {})})
        self.feed = NetFeed(control=self.control)
        self.status: StatusMsg | None = None
        self.err = ""

    def hello(self) -> None:
        deadline = time.monotonic() + 90
        while self.feed.hello(timeout=2) is None:
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "no hello from rank 0"

    def wait_status(self, ok: Callable[[Any], bool], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.feed.poll(timeout=0.2):
                if isinstance(msg, StatusMsg):
                    self.status = msg
                    if ok(msg.status):
                        return msg.status
            assert self.proc.poll() is None, self.proc.communicate()
        self.kill()
        raise AssertionError(f"status never satisfied the test; last {self.status}; stderr: {self.err[-1500:]}")

    def request(self, op: str, **args: Any) -> Reply:
        return self.feed.request(op, timeout=30, **args)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        self.feed.close()
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        self.feed.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.err = self.proc.communicate()[1]


@pytest.fixture
def jobs() -> Iterator[list[Job]]:
    started: list[Job] = []
    yield started
    for job in started:
        job.kill()


class EditsAt(Source):
    """The one-process reference: the simulator, with the same ROI edits at the same shots.

    Ends a block just before each edit's shot and asks the recorder for the edit then: the
    recorder applies requests between reads, so the edit takes effect from that shot on, as
    it did at rank 0's boundary. The simulator synthesises every version's cutouts all along
    (a block read before an edit already holds the new version's), the recorder keeps the
    active ones.
    """

    def __init__(self, inner: Source, edits: Mapping[int, list[Callable[[], object]]],
                 every_version: Mapping[str, Roi]) -> None:
        self.inner, self.edits, self.delivered = inner, dict(edits), 0
        self.every_version = dict(every_version)
        self._held: ShotBlock | None = None

    def read(self, *, timeout: float) -> ShotBlock | None:
        block, self._held = (self._held, None) if self._held is not None else (self.inner.read(timeout=timeout), None)
        if block is None:
            return None
        due = [s for s in self.edits if self.delivered <= s < self.delivered + len(block)]
        if due:
            at = min(due) - self.delivered
            if at == 0:
                for edit in self.edits.pop(min(due)):
                    edit()
                self._held = block
                return None  # the edits apply before the next read
            block, self._held = block.slice(0, at), block.slice(at, len(block))
        self.delivered += len(block)
        return block

    def open(self) -> None:
        self.inner.open()

    def describe(self) -> Any:
        return self.inner.describe()

    def set_rois(self, *, rois: Mapping[str, Roi]) -> None:
        self.inner.set_rois(rois={**self.every_version, **rois})

    def status(self) -> Any:
        return self.inner.status()

    def notices(self) -> list[str]:
        return self.inner.notices()

    def close(self) -> None:
        self.inner.close()


def one_process(cfg: Path, out: Path, mpi_rec: Path, log: str) -> dict[str, Any]:
    """Record the same shots in one process, with the MPI recording's ROI edits at its shots.

    A version's start is in the recording; a delete only in the log (``ROI bg deleted from
    tag T``): the recording keeps no end for a deleted version, its cutouts are invalid after.
    Returns the live summary (``record --summary-json``).
    """
    mpi = RecordingReader(mpi_rec)
    tags = mpi.tags()
    config = load_config(cfg)
    edits: dict[int, list[Callable[[], object]]] = {}
    made: list[Recorder] = []
    for v in mpi.rois.all():
        if v.first_shot > 0:
            edits.setdefault(v.first_shot, []).append(lambda v=v: made[0].set_roi(v.roi))
    for name, tag in re.findall(r"ROI (\S+) deleted from tag (\d+)", log):
        edits.setdefault(int(np.searchsorted(tags, int(tag))), []).insert(0, lambda n=name: made[0].delete_roi(n))
    every = {v.key: v.roi for v in mpi.rois.all()}
    made.append(Recorder(config, out=str(out), source=EditsAt(open_source(config), edits, every), summary=True))
    made[0].run(shots=mpi.committed)
    return made[0].summary()


def reduce_json(rec: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """``reduce REC --json`` in process (a subprocess would spend seconds importing)."""
    capsys.readouterr()
    assert main(["reduce", str(rec), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def rank0_pid(job: Job) -> int:
    info = runfile_for(job.control)
    assert info is not None, "rank 0 wrote no run file"
    return info.pid


@pytest.mark.parametrize("n", [2, 3])
def test_mpi_recording_equals_the_one_process_recording(tmp_path: Path, jobs: list[Job], n: int,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    rec, live = tmp_path / "mpi.zarr", tmp_path / "live.json"
    job = Job(n, cfg, rec, "--summary-json", str(live))
    jobs.append(job)
    job.hello()
    assert job.wait_status(lambda s: s.shots > 0).ranks == n
    for op, args in EDITS:
        reply = job.request(op, **args)
        assert reply.ok, reply.error
    job.wait_status(lambda s: s.shots > reply.data["first_shot"] + 200)  # shots under the last edit too
    assert job.request("stop").ok
    code, out, err = job.finish()
    assert code == 0, err
    assert "recorded" in out and "Traceback" not in err

    one_live = one_process(cfg, tmp_path / "one.zarr", rec, err)
    got, want = RecordingReader(rec).info(), RecordingReader(tmp_path / "one.zarr").info()
    for key in ("committed", "tags", "rois", "frames", "points", "detectors"):
        assert got[key] == want[key], key
    assert len(got["rois"]["bragg"]) == 2 and len(got["rois"]["bg"]) == 2  # the edits are in both
    mpi_json, one_json = reduce_json(rec, capsys), reduce_json(tmp_path / "one.zarr", capsys)
    assert mpi_json["shots"]["total"] == got["committed"] and mpi_json["channels"]["net"]["count"] > 0
    assert_same_summary(mpi_json, one_json)
    assert_same_summary(json.loads(live.read_text()), one_live)  # rank 0's live summary: one process's
    a, b = RecordingReader(rec).frames(DETECTOR), RecordingReader(tmp_path / "one.zarr").frames(DETECTOR)
    assert len(a.shot) >= 5
    np.testing.assert_array_equal(a.shot, b.shot)
    np.testing.assert_array_equal(a.pixels, b.pixels)


def test_rank_0_sleeps_and_outlives_a_lost_worker_rank(tmp_path: Path, jobs: list[Job]) -> None:
    """Under ``mpiexec -disable-auto-cleanup``: idle rank 0 sleeps; a worker rank that stops
    delivering (SIGSTOP: hung, as on a dead host) is reported after ``SHOTWATCH_MPI_DEAD_AFTER``
    seconds and the other worker's shots keep being recorded.

    A worker killed outright is reported the same way ("died (pid ...)"), but MPICH's hydra
    (the PyPI wheel, 5.0) then often ends the whole job itself, so that is not tested here.
    """
    cfg = write_config(tmp_path, rate=20, frames_every=0)
    rec = tmp_path / "mpi.zarr"
    job = Job(3, cfg, rec, disable_cleanup=True, env={"SHOTWATCH_MPI_DEAD_AFTER": "4"})
    jobs.append(job)
    job.hello()
    job.wait_status(lambda s: s.shots > 0)
    rank0 = psutil.Process(rank0_pid(job))
    before, t0 = rank0.cpu_times(), time.monotonic()
    time.sleep(1.5)
    after, t1 = rank0.cpu_times(), time.monotonic()
    busy = (after.user + after.system - before.user - before.system) / (t1 - t0)
    assert busy < 0.3, f"rank 0 used {busy:.0%} of a core at 20 shots/s: a busy receive?"

    dark = job.request("dark", detector=DETECTOR, n=4, force=True)  # full frames cross to rank 0 for it
    assert dark.ok and dark.data["dark_version"] >= 1, dark.error

    workers = [p for p in psutil.Process(job.proc.pid).children(recursive=True)
               if "--mpi" in p.cmdline() and p.pid != rank0.pid]
    assert len(workers) == 2
    workers[1].suspend()
    try:
        lost = job.wait_status(lambda s: s.counters.get("ranks lost") == 1, timeout=30)
        assert lost.ranks == 2
        after_loss = job.wait_status(lambda s: s.shots > lost.shots + 20, timeout=30)  # the other rank's shots
        assert after_loss.state == "recording"
        assert job.request("stop").ok
    finally:
        workers[1].resume()  # rank 0 tells it to exit; mpiexec ends once every rank has
    code, _, err = job.finish()
    assert code == 0, err
    assert re.search(r"rank \d said nothing for \d+ s: its share of the stream is lost", err), err
    assert "recording goes on with 1 of 2 worker ranks" in err
    reader = RecordingReader(rec)
    assert reader.closed and reader.committed >= after_loss.committed
