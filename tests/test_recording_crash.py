"""Crash safety: a writer SIGKILLed at random moments never loses or corrupts a commit.

The child (this file run as a script) writes a deterministic stream of blocks, creating the
recording or appending to it, with frequent commits, ROI version changes and frames. The
parent kills it at random moments, checks after each kill that the reader sees exactly a
committed prefix of the stream, and lets the next child append. Then ``repair`` and plain
zarr/xarray readers, and a last child that finishes and closes.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

HERE = Path(__file__).resolve().parent
SEED = 11
N_BLOCKS = 90
KILLS = 8


def sizes() -> list[int]:
    rng = random.Random(SEED)
    return [rng.choice([1, 20, 60, 150, 400]) for _ in range(N_BLOCKS)]


def child(path: Path) -> None:
    """Write the stream to ``path`` (create or append), from the block after the last commit."""
    from shotwatch.recording import RecordingWriter
    from shotwatch.schemas import Config
    from test_recording import POINTS, new_writer, source_info, versioned_blocks, write_plan

    blocks = versioned_blocks(SEED, sizes())
    if path.exists():
        writer = RecordingWriter.append(path, config=Config(), source=source_info(), points=POINTS,
                                        commit_seconds=0.03)
    else:
        writer = new_writer(path, blocks, commit_seconds=0.03)
    ends = np.cumsum([len(b) for b in blocks]).tolist()
    start = 0 if writer.committed == 0 else ends.index(writer.committed) + 1
    print("ready", start, flush=True)
    for i in range(start, len(blocks)):
        write_plan(writer, blocks[: i + 1], start=i)
        time.sleep(0.03)  # slow enough that every kill lands mid-stream
    writer.close()
    print("done", flush=True)


def _spawn(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=HERE.parent, env=None)


def _check_prefix(path: Path, blocks: list) -> int:
    from shotwatch.recording import RecordingReader
    from shotwatch.schemas import ShotBlock
    from test_recording import assert_same

    reader = RecordingReader(path)
    ends = [0, *np.cumsum([len(b) for b in blocks]).tolist()]
    assert reader.committed in ends, f"committed {reader.committed} is not a block boundary"
    k = ends.index(reader.committed)
    if k:
        assert_same(list(reader.blocks(size=500, frames=True)), ShotBlock.concat(blocks[:k]))
    return reader.committed


@pytest.mark.timeout(120)
def test_sigkill_at_random_moments_then_repair_and_append(tmp_path: Path) -> None:
    from shotwatch.recording import RecordingReader, repair
    from test_recording import per_shot_lengths, versioned_blocks

    blocks = versioned_blocks(SEED, sizes())
    path = tmp_path / "crash.zarr"
    rng = random.Random(2019)
    history = []
    for _ in range(KILLS):
        proc = _spawn(path)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), line
        time.sleep(rng.uniform(0.0, 0.35))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        history.append(_check_prefix(path, blocks))
    print("committed after each kill:", history)
    assert history == sorted(history) and history[-1] > 0, history
    assert len(set(history)) > 2, f"the kills hit too few distinct commits: {history}"

    done = repair(path)
    assert done["committed"] == history[-1] and not done["was_closed"]
    lengths = per_shot_lengths(path)
    assert set(lengths.values()) == {history[-1]}, lengths
    assert not list(path.rglob("*.partial"))
    xr = pytest.importorskip("xarray")
    tree = xr.open_datatree(path, engine="zarr", consolidated=False)
    assert tree["tag"].shape == (history[-1],)
    assert tree["roi/a/v1/pixels"].dims == ("shot", "y", "x")
    frame_shot = np.asarray(zarr.open_group(path, mode="r")["frame"][synth_det()]["shot"][:])
    assert ((frame_shot >= 0) & (frame_shot < history[-1])).all()

    proc = _spawn(path)
    out, _ = proc.communicate(timeout=60)
    assert out.strip().endswith("done"), out
    reader = RecordingReader(path)
    assert reader.closed and reader.committed == sum(sizes())
    _check_prefix(path, blocks)
    assert set(per_shot_lengths(path).values()) == {sum(sizes())}


def synth_det() -> str:
    import synth

    return synth.DET


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    child(Path(sys.argv[1]))
