#!/usr/bin/env python3
"""Build an offline wheelhouse: every wheel shotwatch[karabo] needs, an install script, a README.

Beamline analysis servers often have no route to PyPI. Run this where the network is, copy the
folder, and run its ``install.sh`` there::

    python tools/wheelhouse.py                        # this interpreter and platform
    python tools/wheelhouse.py --python-version 3.11 --platform manylinux2014_x86_64
    scp -r wheelhouse anapc: && ssh anapc ./wheelhouse/install.sh ~/shotwatch-venv

Our own wheel comes from ``pip wheel --no-deps <project>``. Third-party wheels come from
``pip wheel`` (this interpreter: sdists are built into wheels) or, for another Python or
platform, ``pip download --only-binary=:all: --python-version X.Y --platform TAG`` (binary
wheels only; an sdist-only dependency is an error). A ``manylinux_2_N`` platform also admits
every older manylinux (``_2_17`` ... ``_2_N``, ``manylinux2014``), as pip itself would on such
a machine. Environment markers are evaluated by pip for the running interpreter, so for
another Python version run this with that version if any dependency has version markers.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import sysconfig
import tomllib
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["build", "expand_platforms", "main", "requirements"]

ROOT = Path(__file__).resolve().parent.parent
MANYLINUX = re.compile(r"^manylinux_2_(\d+)_(\w+)$")
LEGACY = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}

INSTALL_SH = """#!/bin/sh
# Offline install of shotwatch {version} (with karabo-bridge) from this folder; no network used.
#   ./install.sh              install into the current environment ($PYTHON, default python3)
#   ./install.sh VENV_DIR     create the virtual environment VENV_DIR first, then install into it
# Built for Python {python}, platform {platform}.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${{PYTHON:-python3}}"
if [ "$#" -ge 1 ]; then
    "$PYTHON" -m venv "$1"
    PYTHON="$1/bin/python"
fi
PIP_NO_INDEX=1 "$PYTHON" -m pip install --disable-pip-version-check --no-index \\
    --find-links "$HERE" "shotwatch[{extras}]=={version}"
echo "shotwatch {version} installed: $("$PYTHON" -c 'import sys; print(sys.prefix)')/bin/shotwatch"
"""

README = """shotwatch {version} offline wheelhouse
=====================================

Every wheel needed to install shotwatch[{extras}] without network access.
Built {when} with: {command}
Target: Python {python}, platform {platform}

Install
-------
    ./install.sh ~/shotwatch-venv        # creates the venv, installs into it
    ~/shotwatch-venv/bin/shotwatch config example > my.toml

or, into an existing environment:

    python -m pip install --no-index --find-links /path/to/this/folder 'shotwatch[{extras}]=={version}'

Wheels (sha256)
---------------
{listing}
"""


def expand_platforms(platforms: list[str]) -> list[str]:
    """Each platform tag plus the older manylinux tags a machine of that glibc also runs.

    >>> expand_platforms(["manylinux_2_19_x86_64"])
    ['manylinux_2_19_x86_64', 'manylinux_2_18_x86_64', 'manylinux_2_17_x86_64', 'manylinux2014_x86_64']
    """
    out: list[str] = []
    for tag in platforms:
        out.append(tag)
        legacy, _, arch = tag.partition("_")
        if (m := MANYLINUX.match(tag)) is not None:
            glibc, arch = int(m.group(1)), m.group(2)
        elif legacy in LEGACY:
            glibc = LEGACY[legacy]
        else:
            continue
        out += [f"manylinux_2_{n}_{arch}" for n in range(glibc, 16, -1)]
        if glibc >= 17:
            out.append(f"manylinux2014_{arch}")  # pip adds manylinux2010/1 to this one itself
    return list(dict.fromkeys(out))


def requirements(project: Path, extras: list[str]) -> tuple[str, list[str]]:
    """(version, third-party requirements of shotwatch[extras]) from ``pyproject.toml``."""
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = list(meta.get("dependencies", []))
    optional = meta.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"wheelhouse: --extras: expected one of {sorted(optional)}, found {extra!r}")
        reqs += optional[extra]
    return str(meta["version"]), list(dict.fromkeys(reqs))


def _pip(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build(out: Path, *, project: Path = ROOT, python_version: str | None = None,
          platforms: list[str] | None = None, extras: list[str] | None = None) -> Path:
    """Fill ``out`` with wheels, ``install.sh`` and ``README.txt``; returns ``out``.

    Args:
        out: the wheelhouse folder (created; wheels already there are reused by pip).
        project: the shotwatch source tree.
        python_version: target ``X.Y``; None = this interpreter.
        platforms: target platform tags; None = this machine.
        extras: shotwatch extras to include (default ``["karabo"]``).
    """
    extras = extras if extras is not None else ["karabo"]
    out.mkdir(parents=True, exist_ok=True)
    version, reqs = requirements(project, extras)
    _pip(["wheel", "--no-deps", "-w", str(out), str(project)])
    if python_version is None and not platforms:
        _pip(["wheel", "-w", str(out), *reqs])
    else:
        target = ["--only-binary=:all:"]
        if python_version:
            target += ["--python-version", python_version]
        for tag in expand_platforms(platforms or []):
            target += ["--platform", tag]
        _pip(["download", "-d", str(out), *target, *reqs])
    stray = sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.endswith(".whl")
                   and p.name not in ("install.sh", "README.txt"))
    if stray:
        raise SystemExit(f"wheelhouse: {out}: expected only wheels, found {', '.join(stray)}")
    python = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    platform = ", ".join(platforms) if platforms else sysconfig.get_platform()
    fields = {"version": version, "python": python, "platform": platform, "extras": ",".join(extras)}
    script = out / "install.sh"
    script.write_text(INSTALL_SH.format(**fields), encoding="utf-8")
    script.chmod(0o755)
    wheels = sorted(out.glob("*.whl"))
    listing = "\n".join(f"{_sha256(w)}  {w.name}" for w in wheels)
    command = " ".join(["python", "tools/wheelhouse.py", *sys.argv[1:]]) if sys.argv[0].endswith("wheelhouse.py") \
        else "tools.wheelhouse.build()"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    (out / "README.txt").write_text(README.format(**fields, when=when, command=command, listing=listing),
                                    encoding="utf-8")
    print(f"wheelhouse: {len(wheels)} wheels in {out} (install: {script})", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python tools/wheelhouse.py [-o DIR] [--python-version X.Y] [--platform TAG]...``."""
    ap = argparse.ArgumentParser(prog="wheelhouse.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "wheelhouse", help="output folder (default: wheelhouse/)")
    ap.add_argument("--python-version", help="target Python X.Y (default: this interpreter)")
    ap.add_argument("--platform", action="append", help="target platform tag, repeatable (default: this machine)")
    ap.add_argument("--extras", default="karabo", help="comma-separated shotwatch extras (default: karabo)")
    ap.add_argument("--project", type=Path, default=ROOT, help="shotwatch source tree (default: this one)")
    args = ap.parse_args(argv)
    if args.python_version and not re.fullmatch(r"3\.\d+", args.python_version):
        ap.error(f"--python-version: expected X.Y such as 3.11, found {args.python_version!r}")
    extras = [e for e in args.extras.split(",") if e]
    try:
        build(args.out, project=args.project, python_version=args.python_version,
              platforms=args.platform, extras=extras)
    except subprocess.CalledProcessError as exc:
        print(f"wheelhouse: pip failed (exit {exc.returncode}); see its output above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
