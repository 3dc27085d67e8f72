"""`make wheelhouse`: build the wheels for this interpreter, then install them with no index.

The build uses the package registries (and pip's cache); the install runs with every pip
setting of this machine switched off (no config files, no find-links, ``--no-index``, a dead
proxy), so only the wheelhouse can satisfy it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "wheelhouse.py"


def _tool() -> object:
    spec = importlib.util.spec_from_file_location("wheelhouse_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def offline_env() -> dict[str, str]:
    """This environment without any pip setting, plus everything that forbids the network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", PYTHON=sys.executable)
    return env


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run([sys.executable, str(TOOL), "-o", str(out)], check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="module")
def venv(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("offline") / "venv"
    done = subprocess.run(["sh", str(wheelhouse / "install.sh"), str(target)], env=offline_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def test_expand_platforms() -> None:
    expand = _tool().expand_platforms  # type: ignore[attr-defined]
    assert expand(["manylinux2014_x86_64"]) == ["manylinux2014_x86_64", "manylinux_2_17_x86_64"]
    assert expand(["manylinux_2_28_x86_64"])[:2] == ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64"]
    assert expand(["manylinux_2_28_x86_64"])[-2:] == ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    assert expand(["macosx_11_0_arm64"]) == ["macosx_11_0_arm64"]


def test_requirements_follow_pyproject() -> None:
    version, reqs = _tool().requirements(ROOT, ["karabo"])  # type: ignore[attr-defined]
    assert version and any(r.startswith("karabo-bridge") for r in reqs) and any(r.startswith("numpy") for r in reqs)
    with pytest.raises(SystemExit, match="--extras: expected one of"):
        _tool().requirements(ROOT, ["nope"])  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheelhouse_holds_only_wheels_and_an_installer(wheelhouse: Path) -> None:
    names = sorted(p.name for p in wheelhouse.iterdir())
    assert "install.sh" in names and "README.txt" in names
    assert os.access(wheelhouse / "install.sh", os.X_OK)
    wheels = [n for n in names if n.endswith(".whl")]
    assert len(wheels) == len(names) - 2
    for project in ("shotwatch-", "karabo_bridge-", "numpy-", "pyzmq-", "zarr-", "textual-"):
        assert any(w.startswith(project) for w in wheels), project
    readme = (wheelhouse / "README.txt").read_text()
    assert all(w in readme for w in wheels)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_offline_install_runs(venv: Path, tmp_path: Path) -> None:
    bin_ = venv / "bin"
    demo = tmp_path / "demo.toml"
    example = subprocess.run([bin_ / "shotwatch", "config", "example"], capture_output=True, text=True, check=True)
    demo.write_text(example.stdout)
    check = subprocess.run([bin_ / "shotwatch", "config", "check", demo], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    imports = subprocess.run([bin_ / "python", "-c", "import karabo_bridge, zmq, zarr, shotwatch.sources"],
                             capture_output=True, text=True)
    assert imports.returncode == 0, imports.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_offline_install_records(venv: Path, tmp_path: Path) -> None:
    bin_ = venv / "bin"
    out = tmp_path / "rec.zarr"
    done = subprocess.run([bin_ / "shotwatch", "record", "--shots", "50", "-o", out], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    info = subprocess.run([bin_ / "shotwatch", "info", out, "--json"], capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["committed"] == 50


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cross_target_takes_only_binary_wheels_for_that_target(tmp_path: Path) -> None:
    out = tmp_path / "wh312"
    subprocess.run([sys.executable, str(TOOL), "-o", str(out), "--python-version", "3.12",
                    "--platform", "manylinux2014_x86_64"], check=True, timeout=300, stdout=subprocess.DEVNULL)
    wheels = [p.name for p in out.glob("*.whl")]
    numpy = [w for w in wheels if w.startswith("numpy-")]
    assert len(numpy) == 1 and "-cp312-cp312-" in numpy[0] and "manylinux" in numpy[0]
    assert not [w for w in wheels if "-cp311-" in w]
    assert "Target: Python 3.12, platform manylinux2014_x86_64" in (out / "README.txt").read_text()
