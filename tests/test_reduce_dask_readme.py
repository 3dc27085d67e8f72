"""README's recipe for a cluster of one's own (Offline reduction, "A cluster"): the key, the
certificate and ``distributed.yaml`` made by its shell lines, a scheduler secured with
``Security()`` read from them, and ``reduce --scheduler`` through it equal to one process.

SLURM itself cannot run here: the cluster is a LocalCluster on loopback with the same
``protocol="tls://", security=Security()`` the README passes to ``SLURMCluster``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import dask
import pytest
import yaml
from distributed import Client, LocalCluster
from distributed.security import Security

import several
from several import assert_close, main_in_process

README = Path(__file__).resolve().parent.parent / "README.md"


def recipe() -> str:
    """The README's shell block that makes the key and the configuration, without its pip line."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    block = next(b for b in blocks if "distributed.yaml" in b and "openssl" in b)
    return "\n".join(line for line in block.splitlines() if not line.startswith("pip install"))


def make_key(home: Path) -> None:
    """Run the recipe as its user would: a login shell has HOME and USER."""
    env = {**os.environ, "HOME": str(home), "USER": os.environ.get("USER", "shotwatch")}
    done = subprocess.run(["bash", "-euc", recipe()], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def dotted(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested configuration as dask.config.set's dotted keys (leaves only: defaults stay)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run(*argv: object, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return main_in_process(capsys, *argv)


def test_the_readme_tls_recipe_secures_a_cluster_reduce_can_use(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    make_key(home)
    conf = home / ".config" / "dask"
    assert {p.name: p.stat().st_mode & 0o777 for p in conf.iterdir()} == {
        "dask.key": 0o600, "dask.pem": 0o600, "distributed.yaml": 0o600}  # umask 077: only its owner reads
    settings = dotted(yaml.safe_load((conf / "distributed.yaml").read_text()))
    assert settings["distributed.comm.tls.client.key"] == str(conf / "dask.key")
    rec = several.write(tmp_path / "r.zarr", seed=5, shots=4000, bragg=[(0, several.A), (2000, several.B)])
    code, out, err = run("reduce", rec, "--json", capsys=capsys)
    assert (code, err) == (0, "")
    one = json.loads(out)
    with dask.config.set(settings), \
            LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", protocol="tls://",
                         security=Security(), dashboard_address=None,
                         scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                         silence_logs=logging.CRITICAL) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        code, out, err = run("reduce", rec, "--json", "--scheduler", address, capsys=capsys)
        assert (code, err) == (0, ""), err
        assert_close(json.loads(out), one)
        stranger = Security.temporary()  # someone else's key, trusting this cluster's certificate
        trusting = Security(tls_ca_file=str(conf / "dask.pem"), tls_client_cert=stranger.tls_client_cert,
                            tls_client_key=stranger.tls_client_key, require_encryption=True)
        with pytest.raises((OSError, TimeoutError)):
            Client(address, security=trusting, timeout="3s", set_as_default=False).close()


def test_the_readme_slurm_cluster_call_makes_tls_worker_jobs(tmp_path: Path) -> None:
    """README's SLURMCluster call, as written, under the recipe's configuration: a TLS scheduler
    and worker jobs in the partition asked for, 16 one-thread processes each, TLS too. Only the
    job script is looked at: ``cluster.scale`` would call sbatch, which is not here."""
    home = tmp_path / "home"
    home.mkdir()
    make_key(home)
    settings = dotted(yaml.safe_load((home / ".config" / "dask" / "distributed.yaml").read_text()))
    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
                 if "SLURMCluster(" in b)
    code = "\n".join(line for line in block.splitlines() if not line.startswith(("cluster.scale", "print(")))
    scope: dict[str, Any] = {}
    with dask.config.set(settings):
        exec(compile(code, "README.md", "exec"), scope)  # our own README's lines, nothing from outside
        cluster = scope["cluster"]
        try:
            script = cluster.job_script()
            assert cluster.scheduler_address.startswith("tls://")
        finally:
            cluster.close()
    assert "#SBATCH -p upex" in script and "#SBATCH -t 04:00:00" in script
    assert "--nworkers 16" in script and "--nthreads 1" in script and "--protocol tls://" in script
    assert "--tls-key" in script and "--local-directory /scratch" in script
