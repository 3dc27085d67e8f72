"""The benchmark harness fails loudly: `make bench` exits 1 when a gate fails, a script crashes,
hangs, prints a malformed row or nothing; the soak's reconciliation of what the source produced
with what was committed balances only when every missing shot is named by a loss counter.

Scripts here are tiny stand-ins written to a temporary directory; nothing is measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import run_all  # noqa: E402
from _results import read_all  # noqa: E402

GOOD = {"bench": "x", "metric": "rate", "value": 12.0, "unit": "1/s", "gate": ">= 10", "ok": True}
SCRIPTS = {
    "good": f"print({json.dumps(json.dumps(GOOD))})",
    "gate": f"print({json.dumps(json.dumps({**GOOD, 'value': 3.0, 'ok': False}))})",
    "crash": f"print({json.dumps(json.dumps(GOOD))}); raise SystemExit(3)",
    "silent": "import sys; print('progress, not a row', file=sys.stderr)",
    "chatty": "print('warming up'); print('{\"bench\": \"x\", \"value\": 1')",
    "report_only": f"print({json.dumps(json.dumps({**GOOD, 'gate': None, 'ok': None}))})",
    "hang": "import time; time.sleep(60)",
}


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    d = tmp_path / "benchmarks"
    d.mkdir()
    for name, code in SCRIPTS.items():
        (d / f"bench_{name}.py").write_text(code + "\n")
    return d


def run(bench_dir: Path, *names: str, save: bool = False) -> int:
    argv = [*names, "--timeout", "5"] + ([] if save else ["--no-save"])
    return run_all.main(argv, here=bench_dir, root=bench_dir.parent)


@pytest.mark.parametrize(("names", "code"), [
    (["bench_good"], 0),
    (["bench_report_only"], 0),
    (["bench_good", "bench_gate"], 1),
    (["bench_crash"], 1),
    (["bench_silent"], 1),
    (["bench_chatty"], 1),
])
def test_exit_status(bench_dir: Path, names: list[str], code: int) -> None:
    assert run(bench_dir, *names) == code


def test_every_failure_is_a_failing_row(bench_dir: Path) -> None:
    got = {n: run_all.run_script(bench_dir / f"bench_{n}.py", timeout=5, echo=False)
           for n in ("crash", "silent", "chatty")}
    assert [(r["metric"], r["value"], r["ok"]) for r in got["crash"].rows] == [("rate", 12.0, True),
                                                                                ("exit status", 3, False)]
    assert [(r["metric"], r["ok"]) for r in got["silent"].rows] == [("rows printed", False)]
    (bad,) = got["chatty"].rows
    assert bad["metric"] == "malformed row" and bad["ok"] is False and "expected a JSON object" in bad["why"]


def test_a_hung_script_is_killed_and_fails(bench_dir: Path) -> None:
    out = run_all.run_script(bench_dir / "bench_hang.py", timeout=1, echo=False)
    assert [(r["metric"], r["ok"]) for r in out.rows] == [("seconds until killed", False)]
    assert out.seconds < 15


def test_an_unknown_name_is_refused(bench_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(bench_dir, "bench_good", "bench_nope") == 2
    err = capsys.readouterr().err
    assert "run_all: error: ONLY: expected benchmark names among bench_chatty" in err and "found bench_nope" in err


def test_a_subset_is_saved_with_its_provenance(bench_dir: Path) -> None:
    assert run(bench_dir, "bench_good.py", "bench_gate", save=True) == 1
    (info,) = read_all(bench_dir.parent)
    assert [s.script for s in info.scripts] == ["bench_good", "bench_gate"]
    assert info.summary is not None and info.summary["failed"] == ["x"] and info.commit == "unknown"
    assert info.summary["command"] == "benchmarks/run_all.py bench_good.py bench_gate"
    assert all(r["fingerprint"] == info.fingerprint for s in info.scripts for r in s.rows)


def test_run_all_selects_by_name(bench_dir: Path) -> None:
    assert [p.stem for p in run_all.select(["bench_good", "bench_crash.py"], bench_dir)] == ["bench_good", "bench_crash"]


# --- the soak's reconciliation ---------------------------------------------------------------

soak = pytest.importorskip("soak")


def test_reconcile_balances_only_with_named_losses() -> None:
    produced = np.arange(100, 120, 2)
    committed = np.delete(produced, [3, 7])
    r = soak.reconcile(produced, committed, {"shots lost (reader late)": 2, "publish dropped": 5})
    assert r == {"produced": 10, "committed": 8, "lost": {"shots lost (reader late)": 2}, "missing": 2,
                 "foreign": 0, "unexplained": 0}
    assert soak.reconcile(produced, committed, {"publish dropped": 5})["unexplained"] == 2
    foreign = soak.reconcile(produced, np.append(produced, 121), {})
    assert foreign["foreign"] == 1 and foreign["unexplained"] == -1


def test_the_simulator_read_again_lists_what_the_paced_one_produced() -> None:
    """The soak's ground truth: tags depend on the seed, not on the rate or the reading."""
    import time
    import tomllib

    from _common import config_text
    from shotwatch.schemas import parse_config
    from shotwatch.sources import open_source

    source = open_source(parse_config(tomllib.loads(config_text(rate=60.0, seed=2019)), origin="test"))
    source.open()
    paced, t0 = [np.empty(0, np.int64)], time.monotonic()
    while sum(map(len, paced)) < 12 and time.monotonic() - t0 < 10:
        block = source.read(timeout=0.2)
        if block is not None:
            paced.append(block.tags)
    source.close()
    tags = np.concatenate(paced)
    assert len(tags) >= 10 and np.array_equal(soak.source_tags(2019, int(tags[-1])), tags)
    assert soak.source_tags(2019, int(tags[0]) - 1).size == 0
