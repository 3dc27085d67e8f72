"""docs/recording-format.md lists exactly what the writer writes (attribute keys, dark layout).

A recording with a dark version and analysis version 2 (``several.write``) and a dark file
are written for real; the keys found on disk are compared with the doc's tables, so a key
added to (or dropped from) the writer without the doc fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import zarr

import several
from shotwatch.recording import encode_name
from shotwatch.recording._lock import LOCK_NAME
from shotwatch.recording.darkfile import write_dark_file
from shotwatch.schemas import DarkFrame

DOC = Path(__file__).resolve().parent.parent / "docs" / "recording-format.md"


def _table(heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after ``heading`` (header and rule left out)."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split(" | ")])
        elif rows:
            break
    return rows[2:]


def _first_column_keys(heading: str) -> set[str]:
    return {m.group(1) for row in _table(heading) if (m := re.fullmatch(r"`([a-z_]+)`", row[0]))}


def _row(heading: str, first: str) -> str:
    rows = [r for r in _table(heading) if r[0] == first]
    assert rows, f"no row {first} under {heading}"
    return " | ".join(rows[0])


def _attrs(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())["attributes"])


def test_the_doc_lists_every_attribute_the_writer_writes(tmp_path: Path) -> None:
    rec = several.write(tmp_path / "r.zarr", seed=3, shots=1000, bragg=[(0, ((4, 12), (4, 12)))])
    root = _attrs(rec / "zarr.json")["shotwatch"]
    assert set(root) == _first_column_keys("## Root group attributes")
    entries = root["analysis"]
    assert [e["version"] for e in entries] == [1, 2]  # the fixture sets a second version
    for entry in entries:
        assert set(entry) == _first_column_keys("### Entries of `analysis`")
    assert entries[1]["config"]["calibration"]["dark"] == {several.DET: 1}

    group = rec / "dark" / encode_name(several.DET) / "v1"
    documented = _row("Group attributes:", "`dark/<det>/v<k>`")
    assert set(_attrs(group / "zarr.json")) == set(re.findall(r"`([a-z_]+)`", documented))
    for which in ("mean", "std"):
        meta = json.loads((group / which / "zarr.json").read_text())
        assert (meta["data_type"], tuple(meta["shape"]), meta["dimension_names"]) == ("float32", several.SHAPE, ["y", "x"])
        assert np.asarray(zarr.open_array(group / which, mode="r")[...]).shape == several.SHAPE
        assert "float32" in _row("## Arrays and groups", f"`dark/<det>/v<k>/{which}`")
    assert (rec / LOCK_NAME).is_file() and f"<name>.zarr/{LOCK_NAME}" in DOC.read_text(encoding="utf-8")


def test_the_doc_lists_the_dark_file_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    frame = DarkFrame(rng.normal(100, 2, (6, 4)).astype(np.float32), rng.gamma(4, 0.6, (6, 4)).astype(np.float32),
                      7, 10, 22)
    path = tmp_path / "d.zarr"
    write_dark_file(path, {"MPCCD/1": frame}, source={"kind": "sim"})
    root = _attrs(path / "zarr.json")["shotwatch"]
    row = _row("## Dark files (`shotwatch dark -o DARK`)", 'root attribute `"shotwatch"`')
    assert set(root) == set(re.findall(r'"([a-z_]+)":', row))
    assert (root["format"], root["version"]) == ("shotwatch.dark", 1)
    group = path / "MPCCD%2F1"
    det_row = _row("## Dark files (`shotwatch dark -o DARK`)", "`<det>` (group)")
    assert set(_attrs(group / "zarr.json")) == set(re.findall(r"`([a-z_]+)`", det_row))
    for which in ("mean", "std"):
        meta = json.loads((group / which / "zarr.json").read_text())
        assert (meta["data_type"], meta["dimension_names"]) == ("float32", ["y", "x"])
        data = zarr.open_array(group / which, mode="r")[...]
        assert np.array_equal(data, frame.mean if which == "mean" else frame.std)
