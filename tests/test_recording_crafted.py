"""Crafted recordings (hardening issue item 6): sizes checked before allocation, regular files only.

Reported: ``committed`` = 4e8 made ``info`` use 6.7 GB for 36 s before refusing; a chunk that
is a symlink to ``/dev/zero`` was read without bound; a chunk that is a FIFO hung ``info``
forever; ``scan.edges.count = 2e9`` in a recording's config printed a MemoryError traceback.

Each case runs the real command in a child process limited to 1 GiB of address space, with a
timeout that only catches a hang: the answer must be one line, never a traceback; exit 2 for
what someone put there (a symlink, a FIFO, sizes the files cannot hold), 1 for a chunk that
is a regular file of plausible size but does not decode (damaged).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import synth
from shotwatch.recording import RecordingReader
from shotwatch.schemas import RecordingError, Scan
from test_recording import new_writer, versioned_blocks, write_plan
from test_recording_hostile import edit_json, edit_root

_LIMIT = 1 << 30
_HANG_S = 60


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_LIMIT, _LIMIT))


def shotwatch(*argv: str) -> tuple[int, str, str]:
    """The command in a child process with 1 GiB of address space; a hang fails the test."""
    proc = subprocess.run([sys.executable, "-m", "shotwatch", *argv], capture_output=True, text=True,
                          timeout=_HANG_S, preexec_fn=_limited, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def one_line(result: tuple[int, str, str], code: int, *contains: str) -> None:
    rc, out, err = result
    assert (rc, out) == (code, ""), (rc, out, err)
    assert err.count("\n") == 1 and err.startswith("shotwatch: error: ") and "Traceback" not in err, err
    for c in contains:
        assert c in err, (c, err)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    blocks = versioned_blocks(8, [300, 200, 100, 60])
    path = tmp_path_factory.mktemp("crafted") / "rec.zarr"
    with new_writer(path, blocks, commit_seconds=0.0) as writer:
        write_plan(writer, blocks)
    return path


@pytest.fixture
def rec(original: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(original, tmp_path / "rec.zarr"))


def chunk(array_dir: Path, index: int = 0) -> Path:
    return sorted(f for f in array_dir.iterdir() if f.name.startswith("c."))[index]


def each_array(rec: Path, fn: Callable[[dict[str, Any]], object]) -> None:
    for meta in rec.rglob("zarr.json"):
        m = json.loads(meta.read_text())
        if m.get("node_type") == "array":
            fn(m)
            meta.write_text(json.dumps(m))


# --- the four reported -------------------------------------------------------------------------


def test_committed_4e8_is_refused_from_the_chunk_files_before_anything_that_size_is_allocated(rec: Path) -> None:
    edit_root(rec, committed=400_000_000)

    def claim(m: dict[str, Any]) -> None:  # every per-shot array claims as much, so lengths agree
        if m["dimension_names"][0] == "shot":
            m["shape"][0] = 400_000_000
    each_array(rec, claim)
    expected = "tag: expected 97657 chunk file(s) for 400000000 committed shots, found 1 (chunk files missing?)"
    for argv in (["info", str(rec)], ["reduce", str(rec), "--json"], ["repair", str(rec)]):
        one_line(shotwatch(*argv), 2, str(rec), expected)


def test_a_chunk_that_is_a_symlink_to_dev_zero_is_never_read(rec: Path) -> None:
    target = chunk(rec / "time")
    target.unlink()
    target.symlink_to("/dev/zero")
    one_line(shotwatch("reduce", str(rec), "--json"), 2, "time: expected a regular file of at most",
             f"as chunk {target.name}, found a symbolic link")
    with pytest.raises(RecordingError, match="found a symbolic link"):
        list(RecordingReader(rec).blocks())


def test_a_chunk_that_is_a_fifo_does_not_hang_info(rec: Path) -> None:
    target = chunk(rec / "tag")
    target.unlink()
    os.mkfifo(target)
    for argv in (["info", str(rec)], ["repair", str(rec)]):
        one_line(shotwatch(*argv), 2, "tag: expected a regular file", f"chunk {target.name}, found a FIFO")


def test_scan_edges_count_2e9_in_a_recordings_config_is_one_line(rec: Path) -> None:
    scan = {"name": synth.SCAN, "scale": 1.0, "offset": 0.0, "unit": "",
            "edges": {"start": 0.0, "stop": 1.0, "count": 2_000_000_000}}

    def crafted(m: dict[str, Any]) -> None:
        m["attributes"]["shotwatch"]["config"]["scan"] = scan
        for v in m["attributes"]["shotwatch"].get("analysis", []):
            v["config"]["scan"] = scan
    edit_json(rec / "zarr.json", crafted)
    one_line(shotwatch("reduce", str(rec), "--json"), 2,
             f"{rec}: attribute config.scan.edges.count: expected less than or equal to 100000, found 2000000000")


def test_scan_bins_are_capped_in_the_model() -> None:
    Scan(name="x", edges={"start": 0, "stop": 1, "count": 100_000})
    Scan(name="x", edges=[float(i) for i in range(100_001)])
    with pytest.raises(ValueError, match="less than or equal to 100000"):
        Scan(name="x", edges={"start": 0, "stop": 1, "count": 100_001})
    with pytest.raises(ValueError, match="expected at most 100001 edges, found 100002"):
        Scan(name="x", edges=[float(i) for i in range(100_002)])


# --- the same family: what else a crafted recording could try ------------------------------------


def test_a_chunk_shape_of_more_than_256_MiB_is_refused_before_reading(rec: Path) -> None:
    edit_json(rec / "time" / "zarr.json",
              lambda m: m["chunk_grid"]["configuration"].update(chunk_shape=[1 << 31]))
    one_line(shotwatch("reduce", str(rec), "--json"), 2, "time: expected chunks of at most 256 MiB",
             "found chunks of [2147483648] float64")


def test_a_chunk_file_larger_than_its_chunk_can_be_is_not_read(rec: Path) -> None:
    target = chunk(rec / "roi" / "a" / "v1" / "pixels")
    with open(target, "wb") as f:
        f.truncate(200 << 20)  # sparse: 200 MiB claimed, nothing on disk
    one_line(shotwatch("reduce", str(rec), "--json"), 2, "roi/a/v1/pixels: expected a regular file of at most",
             f"as chunk {target.name}, found {200 << 20} bytes, more than the")


def test_a_blosc_header_claiming_more_than_one_chunk_is_damaged(rec: Path) -> None:
    target = chunk(rec / "roi" / "a" / "v1" / "pixels")
    data = bytearray(target.read_bytes())
    data[4:8] = (2**31 - 1).to_bytes(4, "little")  # nbytes: blosc would allocate 2 GiB for it
    target.write_bytes(bytes(data))
    one_line(shotwatch("reduce", str(rec), "--json"), 1, f"roi/a/v1/pixels: expected a readable chunk {target.name}",
             "found it damaged (ValueError: a blosc header for 2147483647 bytes")


@pytest.mark.parametrize("kind", ["fifo", "symlink", "huge"])
def test_a_metadata_file_that_is_not_a_small_regular_file_is_refused(rec: Path, kind: str) -> None:
    meta = rec / "roi" / "a" / "v1" / "zarr.json"
    if kind == "huge":
        with open(meta, "ab") as f:
            f.truncate(64 << 20)
        found = f"found {64 << 20} bytes, more than the"
    else:
        text = meta.read_text()
        meta.unlink()
        if kind == "fifo":
            os.mkfifo(meta)
            found = "found a FIFO"
        else:
            (rec.parent / "elsewhere.json").write_text(text)
            meta.symlink_to(rec.parent / "elsewhere.json")
            found = "found a symbolic link"
    for argv in (["info", str(rec)], ["repair", str(rec)]):
        one_line(shotwatch(*argv), 2, f"{meta}: expected a regular file", found)


def test_frames_claiming_a_trillion_entries_read_only_what_is_on_disk(rec: Path) -> None:
    det = next(d for d in (rec / "frame").iterdir() if d.is_dir())
    frames = RecordingReader(rec).info()["frames"]
    edit_json(det / "shot" / "zarr.json", lambda m: m.update(shape=[10**12]))
    edit_json(det / "pixels" / "zarr.json", lambda m: m["shape"].__setitem__(0, 10**12))
    rc, out, err = shotwatch("info", str(rec), "--json")
    assert rc == 0, err
    assert json.loads(out)["frames"] == frames


def test_unknown_codecs_are_refused(rec: Path) -> None:
    edit_json(rec / "time" / "zarr.json", lambda m: m["codecs"].insert(0, {"name": "transpose",
                                                                            "configuration": {"order": [0]}}))
    one_line(shotwatch("info", str(rec)), 2, "time: expected the codecs bytes and at most one of blosc, zstd, gzip",
             "found TransposeCodec, BytesCodec, BloscCodec")
