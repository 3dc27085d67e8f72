"""Result files: where `make bench` and the soak keep their JSON lines, and what was measured.

Every run writes ``benchmarks/results/<UTC start>-<short commit>[-soak].jsonl``, one JSON object
per line, each carrying its provenance:

- ``kind``: ``"result"`` (a benchmark's row, as the script printed it, plus ``script``),
  ``"script"`` (a script finished: exit status, rows, seconds, load average before and after)
  or ``"run"`` (the run finished: command, start and end, versions);
- ``run``: the UTC start time (``20261207T221500Z``), the same in every line of one file;
- ``commit``: ``git rev-parse HEAD`` at the start;
- ``dirty``: whether the measured files differed from that commit;
- ``fingerprint``: a hash of the measured files as they were (below).

The fingerprint hashes the git blob ids of every file under ``src/``, ``benchmarks/`` and
``fixtures/`` (tracked or not, as git lists them, ignored files left out) except the result
files themselves and the report generator, which change no figure. A commit that only adds
result files or edits BENCHMARKS.md keeps it; any change to the code or a benchmark does not.

Nothing here imports shotwatch: the report and its test use this module on any checkout.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path("benchmarks") / "results"
MEASURED = ("src", "benchmarks", "fixtures")
NOT_MEASURED = ("benchmarks/results/", "benchmarks/report.py")
PROVENANCE = ("run", "commit", "dirty", "fingerprint")


class ResultsError(ValueError):
    """A result file that is not what this module writes (one line says where and what)."""


@dataclass(frozen=True)
class Provenance:
    """What a run measured: the commit checked out, whether the files differed, their hash."""

    commit: str
    dirty: bool
    fingerprint: str

    @property
    def short(self) -> str:
        return self.commit[:7]


# --- the fingerprint ------------------------------------------------------------------------


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=True, timeout=60).stdout


def _measured(path: str) -> bool:
    return not any(path == p or path.startswith(p) for p in NOT_MEASURED)


def _blob_id(data: bytes) -> str:
    """Git's blob id of ``data`` (what ``git hash-object`` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _digest(blobs: dict[str, str]) -> str:
    h = hashlib.sha256()
    for path in sorted(blobs):
        h.update(f"{path}\0{blobs[path]}\n".encode())
    return h.hexdigest()[:16]


def worktree_fingerprint(root: Path = ROOT) -> str:
    """The fingerprint of the measured files as they are on disk now."""
    try:
        listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *MEASURED)
        paths = sorted({p for p in listed.decode().split("\0") if p})
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but caches
        paths = sorted(str(p.relative_to(root)) for d in MEASURED if (root / d).is_dir()
                       for p in (root / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    blobs = {p: _blob_id((root / p).read_bytes()) for p in paths if _measured(p) and (root / p).is_file()}
    return _digest(blobs)


def commit_fingerprint(root: Path, commit: str) -> str:
    """The fingerprint of the measured files as ``commit`` holds them."""
    listed = _git(root, "ls-tree", "-r", "-z", commit, "--", *MEASURED).decode()
    blobs = {}
    for entry in filter(None, listed.split("\0")):
        meta, path = entry.split("\t", 1)
        if meta.split()[1] == "blob" and _measured(path):
            blobs[path] = meta.split()[2]
    return _digest(blobs)


def provenance(root: Path = ROOT) -> Provenance:
    """Commit, dirty and fingerprint of the tree at ``root`` now."""
    fp = worktree_fingerprint(root)
    try:
        commit = _git(root, "rev-parse", "HEAD").decode().strip()
    except (OSError, subprocess.CalledProcessError):
        return Provenance("unknown", True, fp)
    return Provenance(commit, fp != commit_fingerprint(root, commit), fp)


# --- writing --------------------------------------------------------------------------------


def utc_stamp(t: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if t is None else t))


def _finite(value: Any) -> Any:
    """NaN and infinities as null: result files are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class ResultsWriter:
    """Appends provenance-stamped lines to a new result file under ``root/benchmarks/results``.

    The run's name and provenance are fixed when the writer is made (before measuring); the
    file appears with its first line, so an interrupted run leaves nothing or whole lines.

    Args:
        root: the checkout.
        prov: what is being measured.
        suffix: appended to the file name (``"-soak"``).
    """

    def __init__(self, root: Path, prov: Provenance, *, suffix: str = "") -> None:
        self.prov = prov
        # Runs are named and ordered by their start second: a second run in the same second waits.
        while any((root / RESULTS).glob(f"{utc_stamp()}-*")):
            time.sleep(1.0 - time.time() % 1.0)
        self.started = time.time()
        self.run = utc_stamp(self.started)
        self.path = root / RESULTS / f"{self.run}-{prov.short}{suffix}.jsonl"
        self._file: TextIO | None = None

    def write(self, kind: str, fields: dict[str, Any]) -> None:
        """One line: ``fields`` with ``kind`` first and the provenance last."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "x", encoding="utf-8")
        line = {"kind": kind, **{k: v for k, v in fields.items() if k != "kind" and k not in PROVENANCE},
                "run": self.run, "commit": self.prov.commit, "dirty": self.prov.dirty,
                "fingerprint": self.prov.fingerprint}
        self._file.write(json.dumps(_finite(line), allow_nan=False, separators=(",", ":")) + "\n")
        self._file.flush()

    def script(self, script: str, rows: list[dict[str, Any]], *, exit: int | None, seconds: float,
               load: tuple[float, float]) -> None:
        """A script's rows, then the line that says it finished (the report uses only finished scripts)."""
        for row in rows:
            self.write("result", {**row, "script": script})
        self.write("script", {"script": script, "exit": exit, "rows": len(rows), "seconds": round(seconds, 1),
                              "load1_start": round(load[0], 2), "load1_end": round(load[1], 2)})

    def finish(self, command: str, failed: list[str]) -> None:
        """The run line (command, start, end, environment); closes the file."""
        self.write("run", {"command": command, "started": self.run, "ended": utc_stamp(),
                           "seconds": round(time.time() - self.started, 1), "failed": failed, **environment()})
        if self._file is not None:
            self._file.close()


def environment() -> dict[str, Any]:
    """Interpreter, machine and the versions of the libraries the figures depend on."""
    from importlib import metadata

    versions = {}
    for name in ("numpy", "zarr", "numcodecs", "pyzmq", "textual", "pydantic"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": sys.version.split()[0], "platform": sys.platform, "cores": os.cpu_count(),
            "packages": versions}


# --- reading --------------------------------------------------------------------------------


@dataclass
class ScriptRun:
    """One script's complete run: its rows and the line that says it finished."""

    script: str
    run: str
    file: Path
    commit: str
    dirty: bool
    fingerprint: str
    exit: int | None
    seconds: float | None
    load: tuple[float | None, float | None]
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunInfo:
    """A result file: its run line (None if the run was interrupted) and its scripts."""

    file: Path
    run: str
    commit: str
    dirty: bool
    fingerprint: str
    summary: dict[str, Any] | None
    scripts: list[ScriptRun] = field(default_factory=list)


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            line = json.loads(text)
        except ValueError:
            raise ResultsError(f"{path}:{n}: expected a JSON object, found {text[:60]!r}") from None
        if not isinstance(line, dict) or line.get("kind") not in ("result", "script", "run") or any(
                k not in line for k in PROVENANCE):
            raise ResultsError(f"{path}:{n}: expected a result line with kind, run, commit, dirty and "
                               f"fingerprint, found {text[:80]!r}")
        out.append(line)
    return out


def read_file(path: Path) -> RunInfo:
    """A result file; ResultsError if a line is not one this module writes."""
    lines = _lines(path)
    if not lines:
        raise ResultsError(f"{path}: expected result lines, found an empty file")
    first = lines[0]
    info = RunInfo(path, first["run"], first["commit"], bool(first["dirty"]), first["fingerprint"],
                   next((ln for ln in lines if ln["kind"] == "run"), None))
    rows: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if line["kind"] == "result":
            rows.setdefault(str(line.get("script")), []).append(line)
        elif line["kind"] == "script":
            name = str(line["script"])
            info.scripts.append(ScriptRun(name, info.run, path, info.commit, info.dirty, info.fingerprint,
                                          line.get("exit"), line.get("seconds"),
                                          (line.get("load1_start"), line.get("load1_end")), rows.pop(name, [])))
    return info


def read_all(root: Path = ROOT) -> list[RunInfo]:
    """Every result file under ``root/benchmarks/results``, oldest first."""
    directory = root / RESULTS
    files = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    return sorted((read_file(p) for p in files), key=lambda r: (r.run, r.file.name))


def latest(runs: list[RunInfo]) -> dict[str, ScriptRun]:
    """The newest complete run of each script."""
    out: dict[str, ScriptRun] = {}
    for info in runs:
        for sr in info.scripts:
            out[sr.script] = sr
    return out
