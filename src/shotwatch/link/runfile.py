"""The run file: how a console finds a running recorder and earns the right to change it.

A running recorder writes one JSON file (control and publish addresses, pid, recording,
a random control token, start time) into a directory only its user can enter:
``$XDG_RUNTIME_DIR/shotwatch/`` or else ``/tmp/shotwatch-<uid>/`` (mode 0700, file 0600,
written atomically). ``console`` without an address takes the newest file whose recorder is
still alive; files left behind by a killed recorder are ignored and removed. "Alive" means
a process with that pid exists *and* started when the recorder did (``pid_start``, the
kernel's start time of the process): a pid reused by another process after a crash does not
make a stale file look alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..schemas import ShotwatchRuntimeError

__all__ = ["RunFile", "find_runfile", "new_token", "pid_alive", "process_start", "read_runfile", "remove_runfile",
           "runtime_dir", "write_runfile"]


@dataclass(frozen=True)
class RunFile:
    """The contents of one run file (and where it lives)."""

    control: str
    publish: str
    pid: int
    token: str
    started: float
    recording: str | None = None
    path: Path | None = None
    pid_start: int | None = None
    """When process ``pid`` started (clock ticks since boot, /proc); None where unknown."""

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["path"]
        return out


def new_token() -> str:
    """A random control token (128 bits, hex)."""
    return secrets.token_hex(16)


def runtime_dir(base: str | os.PathLike[str] | None = None) -> Path:
    """The run-file directory, created 0700 if needed.

    Raises:
        ShotwatchRuntimeError: the directory exists but is not ours, or not a directory:
            a token placed there could be read or faked by someone else.
    """
    if base is not None:
        path = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "shotwatch"
    else:
        path = Path("/tmp") / f"shotwatch-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ShotwatchRuntimeError(f"{path}: expected a directory owned by uid {os.getuid()}, "
                                    f"found {'a link or file' if not stat.S_ISDIR(st.st_mode) else f'uid {st.st_uid}'}")
    if st.st_mode & 0o077:
        path.chmod(0o700)  # /tmp directories may come from a umask we did not choose
    return path


def write_runfile(*, control: str, publish: str, token: str, recording: str | None = None,
                  directory: str | os.PathLike[str] | None = None, path: Path | None = None,
                  started: float | None = None) -> RunFile:
    """Write (or, given ``path`` and ``started``, rewrite) a run file atomically with mode 0600."""
    if path is None:
        path = runtime_dir(directory) / f"recorder-{os.getpid()}-{secrets.token_hex(4)}.json"
    info = RunFile(control, publish, os.getpid(), token, time.time() if started is None else started,
                   recording, path, process_start(os.getpid()))
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(info.as_json(), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return info


def read_runfile(path: str | os.PathLike[str]) -> RunFile:
    """Parse one run file.

    Raises:
        OSError: it cannot be read.
        ValueError: it is not a run file.
    """
    path = Path(path)
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}")
    try:
        info = RunFile(
            control=str(data["control"]), publish=str(data["publish"]), pid=int(data["pid"]),
            token=str(data["token"]), started=float(data["started"]),
            recording=None if data.get("recording") is None else str(data["recording"]), path=path,
            pid_start=None if data.get("pid_start") is None else int(data["pid_start"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: expected control, publish, pid, token, started; found {exc!r}") from None
    return info


def remove_runfile(path: str | os.PathLike[str] | None) -> None:
    """Remove a run file; a missing one is fine."""
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot; None if unknown (not Linux, gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat_line = fh.read()
        # the command name (field 2) may hold spaces and parentheses: count from its end
        return int(stat_line[stat_line.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_alive(pid: int, start: int | None = None) -> bool:
    """True if a process ``pid`` exists (ours or not) and, given ``start``, started then."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start is None:
        return True  # a run file of an older version, or no /proc: the pid is all we know
    now = process_start(pid)
    return now is None or now == start


def _alive(info: RunFile) -> bool:
    return pid_alive(info.pid, info.pid_start)


def find_runfile(directory: str | os.PathLike[str] | None = None) -> RunFile | None:
    """The newest run file whose recorder process is alive (stale ones are removed)."""
    try:
        folder = runtime_dir(directory)
    except (OSError, ShotwatchRuntimeError):
        return None
    found: list[RunFile] = []
    for path in folder.glob("recorder-*.json"):
        try:
            info = read_runfile(path)
        except (OSError, ValueError):
            continue  # half-written by someone else, or not ours to judge
        if _alive(info):
            found.append(info)
        else:
            remove_runfile(path)  # left behind by a killed recorder
    return max(found, key=lambda r: r.started, default=None)


def runfile_for(control: str, directory: str | os.PathLike[str] | None = None) -> RunFile | None:
    """The live run file for the recorder at ``control`` (to read its token), if any."""
    try:
        folder = runtime_dir(directory)
    except (OSError, ShotwatchRuntimeError):
        return None
    for path in folder.glob("recorder-*.json"):
        try:
            info = read_runfile(path)
        except (OSError, ValueError):
            continue
        if info.control == control and _alive(info):
            return info
    return None
