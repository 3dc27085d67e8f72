"""A console's numbers equal `shotwatch reduce --tags` over the tag ranges it received.

End to end: a real recorder (simulator, real recording) behind the real service, a console's
model fed by the real network client that joins mid-run, and `reduce --tags A:B` run on the
recording afterwards.
"""

from __future__ import annotations

import json
import threading
import time
import tomllib
from pathlib import Path

from shotwatch.console.model import LiveModel
from shotwatch.link.messages import BlockMsg, RoisMsg
from shotwatch.link.netfeed import NetFeed
from shotwatch.recorder.acquire import Recorder
from shotwatch.recorder.service import Service
from shotwatch.schemas import parse_config
from test_record_reduce import assert_same_summary, fast_config_text, run_cli


def test_console_numbers_equal_reduce_over_received_tags(tmp_path: Path) -> None:
    text = fast_config_text(seed=11, rate=60.0, frames_every=60)  # the demo, as at the beamline
    config = parse_config(tomllib.loads(text), origin="test")
    rec = tmp_path / "live.zarr"
    recorder = Recorder(config, out=str(rec))
    with Service(recorder, publish="auto", control="auto") as service:
        thread = threading.Thread(target=recorder.run, kwargs={"seconds": 6.0}, daemon=True)
        thread.start()
        time.sleep(1.5)  # the console joins mid-run: its first tag is not the recording's
        with NetFeed(service.addresses["control"], max_blocks=10_000) as feed:
            hello = feed.hello(timeout=5.0)
            assert hello is not None
            model = LiveModel(hello)
            while thread.is_alive():
                for msg in feed.poll(timeout=0.1):
                    if isinstance(msg, (BlockMsg, RoisMsg)):
                        model.apply(msg)
            for msg in feed.poll(timeout=0.5):
                if isinstance(msg, (BlockMsg, RoisMsg)):
                    model.apply(msg)
        thread.join(10)
    snap = model.snapshot()
    assert len(snap.tag_ranges) == 1, f"the console skipped blocks: {snap.tag_ranges}"
    (first, stop), = snap.tag_ranges
    info = json.loads(run_cli("info", str(rec), "--json").stdout)
    assert first > info["tags"]["first"], "the console should have joined after the start"
    assert snap.summary["shots"]["total"] > 100
    proc = run_cli("reduce", str(rec), "--json", "--tags", f"{first}:{stop}")
    assert proc.returncode == 0, proc.stderr
    assert_same_summary(snap.summary, json.loads(proc.stdout))
