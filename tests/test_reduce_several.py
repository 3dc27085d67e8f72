"""``reduce REC [REC …]`` in one process: one stream, merged and kept-apart ROI keys, the analysis.

Several recordings must reduce as if concatenated (INTERFACE.md): each merged number is
checked against the recordings reduced one by one (counts exactly, sums to 1e-9), which
also shows that each recording kept its own dark. The shot ranges and the merge tree that
``--workers`` uses are checked here too, in-process: any split of the shots into ranges,
merged in a tree, gives the one-process result.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import several
from several import Cli, assert_close, main_in_process, reduced
from shotwatch.commands.reduce_plan import make_plan, merge_roi_keys
from shotwatch.commands.reduce_tasks import Task, make_tasks, merge_states, reduce_here, reduce_task, tree
from shotwatch.reducers import SummaryReducer
from shotwatch.schemas import RoiVersion


@pytest.fixture(scope="module")
def recs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return several.standard_set(tmp_path_factory.mktemp("several"))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return partial(main_in_process, capsys)


def added(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """count and sum of several ROI entries (or scan-bin lists) added up."""
    return {"count": sum(p["count"] for p in parts), "sum": sum(p["sum"] for p in parts)}


def test_merged_and_separate_keys_add_up_to_the_recordings_alone(cli: Cli, recs: dict[str, Path]) -> None:
    one, two = reduced(cli, recs["r1"]), reduced(cli, recs["r2"])
    both = reduced(cli, recs["r1"], recs["r2"])
    assert list(one["rois"]) == ["bg", "bragg/v1", "bragg/v2", "bragg/v3"] and list(two["rois"]) == ["bg", "bragg"]
    # r1's A before and after B, and r2's A: one key; r1's B: its own, named by position
    assert list(both["rois"]) == ["bg", "bragg", "bragg@1"]
    assert_close(added([both["rois"]["bragg"]]),
                 added([one["rois"]["bragg/v1"], one["rois"]["bragg/v3"], two["rois"]["bragg"]]))
    assert_close(both["rois"]["bragg@1"], one["rois"]["bragg/v2"])
    assert_close(added([both["rois"]["bg"]]), added([one["rois"]["bg"], two["rois"]["bg"]]))
    assert_close(added([both["channels"]["net"]]), added([one["channels"]["net"], two["channels"]["net"]]))
    for key in ("total", "accepted"):
        assert both["shots"][key] == one["shots"][key] + two["shots"][key]
    assert both["shots"]["vetoed"] == {k: v + two["shots"]["vetoed"][k] for k, v in one["shots"]["vetoed"].items()}
    assert both["scan"]["rois"]["bragg"]["count"] == [
        a + b + c for a, b, c in zip(one["scan"]["rois"]["bragg/v1"]["count"], one["scan"]["rois"]["bragg/v3"]["count"],
                                     two["scan"]["rois"]["bragg"]["count"], strict=True)]
    assert both["scan"]["outside"] == one["scan"]["outside"] + two["scan"]["outside"]
    assert both["analysis_version"] == 2  # both newest versions are number 2


def test_tags_select_in_every_recording(cli: Cli, recs: dict[str, Path]) -> None:
    tags = "1400:5000"  # tags repeat across recordings: the range applies to each
    one, two = reduced(cli, recs["r1"], "--tags", tags), reduced(cli, recs["r2"], "--tags", tags)
    both = reduced(cli, recs["r1"], recs["r2"], "--tags", tags)
    assert both["shots"]["total"] == one["shots"]["total"] + two["shots"]["total"] == 2 * 1800
    assert_close(added([both["rois"]["bragg@1"]]), added([one["rois"]["bragg/v2"]]))


def test_per_shot_is_the_recordings_rows_one_after_the_other(cli: Cli, recs: dict[str, Path]) -> None:
    one, two = (cli("reduce", recs[r], "--per-shot")[1].splitlines(keepends=True) for r in ("r1", "r2"))
    code, both, _ = cli("reduce", recs["r1"], recs["r2"], "--per-shot")
    assert code == 0 and one[0] == two[0] == "tag,time,i0,accepted,scan,laser_on,bg,bragg,i0sum,net\n"
    assert both == "".join(one + two[1:])


def test_differing_analyses_are_refused_naming_the_keys_unless_c(cli: Cli, recs: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    code, out, err = cli("reduce", recs["r1"], recs["r2"], recs["r3"], "--json")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith(f"shotwatch: error: {recs['r3']}: analysis version 2: expected the analysis of {recs['r1']}")
    assert err.rstrip().endswith("found differing i0.min")
    code, out, err = cli("reduce", recs["r1"], recs["r2"], "--analysis-version", "1")
    assert code == 2 and "--analysis-version: expected one recording" in err
    cfg = several.config_file(tmp_path)
    r = reduced(cli, recs["r1"], recs["r2"], recs["r3"], "-c", cfg)
    assert r["analysis_version"] is None and list(r["rois"]) == ["bg", "bragg", "bragg@1", "bragg@3"]
    alone = reduced(cli, recs["r3"], "-c", cfg)
    assert_close(r["rois"]["bragg@3"], alone["rois"]["bragg"])


def test_analysis_keys_that_differ_are_dotted_and_darks_do_not_count() -> None:
    from shotwatch.commands.reduce_plan import differing_keys
    from shotwatch.schemas import parse_config

    base = parse_config(several.SECTIONS, origin="a")
    other = parse_config(several.sections(veto=[{"name": several.BEAM, "min": 0.5, "max": 2.0}, {"name": "x"}],
                                          calibration={**several.SECTIONS["calibration"], "dark": {several.DET: 3}}),
                         origin="b")
    assert differing_keys(base, other) == ["veto[0].max", "veto[1].max", "veto[1].min", "veto[1].name"]
    assert differing_keys(base, base) == []


def test_roi_keys_of_several_recordings() -> None:
    def v(name: str, k: int, x: tuple[int, int], det: str = "D") -> RoiVersion:
        return RoiVersion(name, k, det, x, (0, 4), first_shot=0, first_tag=0)

    keys = merge_roi_keys([[v("a", 1, (0, 4)), v("a", 2, (4, 8)), v("b", 1, (0, 4))],
                           [v("a", 1, (4, 8)), v("a", 2, (0, 4), det="E"), v("b", 1, (0, 4))]])
    assert keys.keys == [{"a/v1": "a/v1", "a/v2": "a/v2", "b/v1": "b/v1"},
                         {"a/v1": "a/v2", "a/v2": "a/v3", "b/v1": "b/v1"}]
    assert keys.labels == {"a/v1": ("a@1", 1, 1), "a/v2": ("a", 0, 1), "b/v1": ("b", 0, 1), "a/v3": ("a@2", 2, 2)}
    assert keys.versions[1]["a/v3"].detector == "E" and keys.versions[1]["a/v3"].version == 3
    alone = merge_roi_keys([[v("a", 1, (0, 4)), v("a", 2, (4, 8))]])
    assert alone.labels is None and alone.keys == [{"a/v1": "a/v1", "a/v2": "a/v2"}]


# --- the ranges and the tree --workers uses, run in this process ------------------------------


def test_tasks_cover_every_shot_once_aligned_to_chunks(recs: dict[str, Path]) -> None:
    plan = make_plan([str(recs["r1"]), str(recs["r2"])], None, tags=(1200, None))
    tasks = make_tasks(plan, workers=2, token="t")
    for part, view in zip(plan.parts, plan.views, strict=True):
        mine = [t for t in tasks if t.part == part]
        tags = view.tags()
        assert sum(t.shots for t in mine) == len(view)
        assert [t.tags[0] for t in mine][0] == tags[0] and mine[-1].tags[1] == tags[-1] + 1
        starts = np.searchsorted(tags, [t.tags[0] for t in mine]) + view.shots[0]
        assert all(s % view.chunk_shots == 0 for s in starts[1:])  # every range but the first
        assert all(a.tags[1] == b.tags[0] for a, b in zip(mine, mine[1:], strict=False))


def test_tree_keeps_order() -> None:
    assert tree(list("abcdefg"), lambda a, b: a + b) == "abcdefg"
    assert tree(["x"], lambda a, b: a + b) == "x"
    with pytest.raises(ValueError, match="at least one"):
        tree([], lambda a, b: a + b)


@pytest.fixture(scope="module")
def sequential(recs: dict[str, Path]) -> tuple[Any, dict[str, Any]]:
    plan = make_plan([str(recs["r1"]), str(recs["r2"])], None)
    return plan, SummaryReducer(plan.analyses[0]).result(reduce_here(plan))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, 15_999), max_size=8, unique=True), data=st.data())
def test_any_split_merged_in_a_tree_equals_one_pass(sequential: tuple[Any, dict[str, Any]], cuts: list[int],
                                                    data: st.DataObject) -> None:
    plan, expected = sequential
    bounds = [0, *sorted(cuts), plan.shots]
    tasks = []
    offset = 0
    for part, view in zip(plan.parts, plan.views, strict=True):
        tags = view.tags()
        inside = sorted({min(max(b - offset, 0), len(view)) for b in bounds})
        for lo, hi in zip(inside, inside[1:], strict=False):
            if hi > lo:
                upper = int(tags[hi]) if hi < len(view) else int(tags[-1]) + 1
                tasks.append(Task(part, (int(tags[lo]), upper), hi - lo, "any"))
        offset += len(view)
    states = [reduce_task(t) for t in tasks]
    # a random tree: merge a random adjacent pair until one state is left
    while len(states) > 1:
        i = data.draw(st.integers(0, len(states) - 2))
        states[i:i + 2] = [merge_states(states[i], states[i + 1])]
    assert_close(SummaryReducer(plan.analyses[0]).result(states[0]), expected)
