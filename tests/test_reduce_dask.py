"""``reduce --workers N`` and ``--scheduler ADDR``: the one-process result from Dask workers.

One local cluster of 2 worker processes serves the module (it starts in about a second):
it stands for "the user's own cluster" of ``--scheduler`` and is secured the way README
tells users to secure theirs (TLS, the client's credentials in Dask's configuration). One
test runs ``--workers 2`` end to end, starting its own cluster as a user would. Results are
compared with the one-process reduction: counts exactly, values to 1e-9 relative, on
recordings with ROI versions, analysis versions, vetoes, darks and channels
(tests/several.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import dask
import pytest
from distributed import Client, LocalCluster, WorkerPlugin
from distributed.security import Security

import several
from several import Cli, assert_close, main_in_process, reduced
from shotwatch.commands import reduce_dask


@pytest.fixture(scope="module")
def recs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return several.standard_set(tmp_path_factory.mktemp("dask"))


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a running TLS cluster whose credentials Dask's configuration holds."""
    sec = Security.temporary()
    tls = {"distributed.comm.require-encryption": True, "distributed.comm.tls.ca-file": sec.tls_ca_file,
           "distributed.comm.tls.client.cert": sec.tls_client_cert,
           "distributed.comm.tls.client.key": sec.tls_client_key}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", protocol="tls://",
                      security=sec, dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                      silence_logs=logging.CRITICAL) as cluster, \
            dask.config.set(tls):
        yield cluster.scheduler_address


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return partial(main_in_process, capsys)


def test_workers_2_equal_one_process_on_a_cluster_only_this_run_can_join(cli: Cli, recs: dict[str, Path],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The local cluster listens on loopback, TLS only, and refuses a client whose key is not
    this run's even when that client trusts the cluster's certificate (mutual TLS)."""
    one = reduced(cli, recs["r1"], recs["r2"])
    made: list[Security] = []
    seen: list[str] = []
    temporary, connect = reduce_dask._temporary_security, reduce_dask.connect

    def keep(*args: Any) -> Any:
        made.append(temporary(*args))
        return made[-1]

    @contextlib.contextmanager
    def watched(**kwargs: Any) -> Iterator[Client]:
        with connect(**kwargs) as client:
            info = client.scheduler_info()
            seen.extend([info["address"], *info["workers"]])
            stranger = Security.temporary()  # another account's key, the cluster's CA trusted
            trusting = Security(tls_ca_file=made[0].tls_ca_file, tls_client_cert=stranger.tls_client_cert,
                                tls_client_key=stranger.tls_client_key, require_encryption=True)
            with pytest.raises((OSError, TimeoutError)):
                Client(info["address"], security=trusting, timeout="3s", set_as_default=False).close()
            yield client

    monkeypatch.setattr(reduce_dask, "_temporary_security", keep)
    monkeypatch.setattr(reduce_dask, "connect", watched)
    assert_close(reduced(cli, recs["r1"], recs["r2"], "--workers", "2"), one)
    assert len(seen) == 3 and all(a.startswith("tls://127.0.0.1:") for a in seen), seen


def test_differing_analyses_are_refused_before_a_cluster_starts(cli: Cli, recs: dict[str, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cluster(**kwargs: Any) -> Any:
        raise AssertionError(f"a cluster was asked for: {kwargs}")

    monkeypatch.setattr(reduce_dask, "connect", no_cluster)
    for flag in (["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:1"]):
        code, out, err = cli("reduce", recs["r1"], recs["r2"], recs["r3"], "--json", *flag)
        assert (code, out, err.count("\n")) == (2, "", 1), err
        assert err.startswith(f"shotwatch: error: {recs['r3']}: analysis version 2: expected the analysis of ")
        assert err.rstrip().endswith("found differing i0.min")


def test_scheduler_equals_one_process(cli: Cli, recs: dict[str, Path], scheduler: str, tmp_path: Path) -> None:
    cfg = several.config_file(tmp_path)
    for argv in ([recs["r1"], recs["r2"], recs["r3"], "-c", cfg], [recs["r1"], "--tags", "1400:"], [recs["r2"]]):
        assert_close(reduced(cli, *argv, "--scheduler", scheduler), reduced(cli, *argv))
    code, rows, err = cli("reduce", recs["r1"], recs["r2"], "--per-shot", "--scheduler", scheduler)
    assert (code, err) == (0, "") and rows == cli("reduce", recs["r1"], recs["r2"], "--per-shot")[1]


def test_progress_bar_on_a_terminal_only(cli: Cli, recs: dict[str, Path], scheduler: str,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    code, _, err = cli("reduce", recs["r1"], recs["r2"], "--scheduler", scheduler)
    last = err.split("\r")[-1]
    assert code == 0 and last.startswith("[" + "#" * 30 + "] 100 % 16,000/16,000 shots, 5/5 tasks, ")
    assert last.endswith(" s\n")


def test_a_worker_killed_mid_reduce_changes_nothing(cli: Cli, recs: dict[str, Path], scheduler: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    expected = reduced(cli, recs["r1"], recs["r2"])
    killed: list[int] = []
    done = reduce_dask._Bar.done

    def kill_a_busy_worker(bar: Any, index: int) -> None:
        if not killed:  # after the first task, while the others run: kill a worker holding work
            with Client(scheduler, set_as_default=False) as c:
                pids = c.run(os.getpid)
                busy = [w for w, keys in c.processing().items() if keys] or list(pids)
                killed.append(pids[busy[0]])
                os.kill(killed[0], signal.SIGKILL)
        done(bar, index)

    monkeypatch.setattr(reduce_dask._Bar, "done", kill_a_busy_worker)
    assert_close(reduced(cli, recs["r1"], recs["r2"], "--scheduler", scheduler), expected)
    assert killed and not _alive(killed[0])


class DieOnReduce(WorkerPlugin):
    """A worker that starts reducing a range dies on the spot (like a node lost mid-task)."""

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "executing" and "shotwatch-reduce" in str(key):
            os._exit(1)


def test_a_range_whose_workers_keep_dying_is_one_line_exit_1(cli: Cli, recs: dict[str, Path]) -> None:
    with dask.config.set({"distributed.scheduler.allowed-failures": 0, "distributed.comm.require-encryption": False}), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                         scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster, set_as_default=False) as c:
        c.register_plugin(DieOnReduce())
        code, out, err = cli("reduce", recs["r2"], "--scheduler", cluster.scheduler_address)
    assert (code, out, err.count("\n")) == (1, "", 1)
    assert err.startswith("shotwatch: error: reduce: expected Dask workers to finish a task, found each worker that "
                          "ran it killed (")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_scheduler_that_answers_nothing_is_one_line_and_bounded(cli: Cli, recs: dict[str, Path]) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts, never says a word
    plain = {"distributed.comm.timeouts.connect": "1s", "distributed.comm.require-encryption": False}
    with closed, silent, dask.config.set(plain):
        for sock in (closed, silent):
            address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
            t0 = time.monotonic()
            code, out, err = cli("reduce", recs["r2"], "--scheduler", address)
            assert time.monotonic() - t0 < 30  # not a speed test: it must not hang
            assert (code, out, err.count("\n")) == (1, "", 1)
            assert err.startswith(f"shotwatch: error: --scheduler {address}: expected a Dask scheduler answering "
                                  "within 1 s, found none (")
    with dask.config.set({"distributed.comm.require-encryption": True}):
        code, _, err = cli("reduce", recs["r2"], "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and err.count("\n") == 1 and "expected an address Dask's configuration allows, found: " in err


def test_bad_flags(cli: Cli, recs: dict[str, Path]) -> None:
    for address in ("nohost", "http://h:8786", "tcp://h:99999", "tcp://a b:1"):
        code, out, err = cli("reduce", recs["r2"], "--scheduler", address)
        assert (code, out) == (2, "") and err == (f"shotwatch: error: --scheduler: expected a Dask scheduler address "
                                                  f"such as tcp://host:8786 or tls://host:8786, found {address!r}\n")
    code, _, err = cli("reduce", recs["r2"], "--workers", "0")
    assert code == 2 and "--workers: expected a whole number of worker processes >= 1, found 0" in err
    code, _, err = cli("reduce", recs["r2"], "--workers", "2", "--scheduler", "tcp://h:1")
    assert code == 2 and "not allowed with argument" in err and err.count("\n") == 1
