"""BENCHMARKS.md describes this tree: its tables are what benchmarks/report.py writes from the
result files of `make bench`, and a figure measured on other code says which commit it is from.

The first test checks the real checkout. The others build a small git repository (code,
a benchmark script, a result file, BENCHMARKS.md) and change it, so the real tree is never
touched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import report  # noqa: E402
from _results import ResultsWriter, provenance, read_all, worktree_fingerprint  # noqa: E402

MD = f"""# Benchmarks

Written prose stays as it is.

{report.BEGIN.format("results")}
{report.END.format("results")}

More prose.

{report.BEGIN.format("soak")}
{report.END.format("soak")}
"""


def test_benchmarks_md_describes_this_tree() -> None:
    problems = report.check(ROOT)
    assert not problems, "\n".join([*problems, f"to fix: {report.FIX}"])


# --- a repository of our own ------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@localhost",
                           "-c", "commit.gpgsign=false", *args], capture_output=True, text=True, check=True).stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def row(value: float, **extra: object) -> dict[str, object]:
    return {"bench": "x_rate", "metric": "shots_per_s", "value": value, "unit": "shots/s", "baseline": "numpy",
            "baseline_value": 2 * value, "ratio": 0.5, "gate": ">= 10", "ok": value >= 10, **extra}


def measure(repo: Path, *rows: dict[str, object], script: str = "bench_x") -> Path:
    """What `make bench` leaves: a result file of the tree as it is, and regenerated tables."""
    writer = ResultsWriter(repo, provenance(repo))
    writer.script(script, list(rows), exit=0, seconds=1.0, load=(0.5, 0.7))
    writer.finish("benchmarks/run_all.py", [])
    assert report.main([], root=repo) == 0
    return writer.path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "core.py").write_text("SPEED = 1\n")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "bench_x.py").write_text('"""How fast x is."""\n')
    (tmp_path / "BENCHMARKS.md").write_text(MD)
    git(tmp_path, "init", "-q")
    commit_all(tmp_path, "code")
    return tmp_path


def table_rows(repo: Path) -> list[str]:
    return [ln for ln in report.generated((repo / "BENCHMARKS.md").read_text(), "results").splitlines()
            if ln.startswith("| `")]


def test_a_run_on_this_tree_passes_and_its_commit_keeps_it_valid(repo: Path) -> None:
    path = measure(repo, row(42.0, runs=[41.0, 42.0, 45.0]))
    assert report.check(repo) == []
    text = (repo / "BENCHMARKS.md").read_text()
    assert "Written prose stays as it is." in text and "More prose." in text
    assert "| `x_rate` | shots_per_s | 42 shots/s (runs 41 / 42 / 45) | numpy: 84 | 0.5 | >= 10 | yes |" in text
    commit_all(repo, "results")  # adds only result files and BENCHMARKS.md: the figures stay valid
    assert report.check(repo) == []
    line = json.loads(path.read_text().splitlines()[0])
    assert line["fingerprint"] == worktree_fingerprint(repo) and line["dirty"] is False


def test_a_code_change_after_the_run_fails_until_rows_name_their_commit(repo: Path) -> None:
    path = measure(repo, row(42.0))
    commit_all(repo, "results")
    measured_on = json.loads(path.read_text().splitlines()[0])["commit"][:7]
    (repo / "src" / "pkg" / "core.py").write_text("SPEED = 2\n")
    problems = report.check(repo)  # uncommitted: the tree on disk is what counts
    assert any("does not say 'older tree'" in p and measured_on in p for p in problems), problems
    commit_all(repo, "faster")
    assert any("does not say 'older tree'" in p for p in report.check(repo))
    assert report.main([], root=repo) == 0  # `make bench-report`: the rows now say where they come from
    assert report.check(repo) == []
    assert all(f"`{measured_on}`, older tree" in r for r in table_rows(repo))


def test_a_changed_benchmark_script_also_invalidates_the_figures(repo: Path) -> None:
    measure(repo, row(42.0))
    commit_all(repo, "results")
    (repo / "benchmarks" / "bench_x.py").write_text('"""How fast x is, measured differently."""\n')
    assert report.check(repo) != []


def test_a_figure_edited_by_hand_is_found_in_no_result_file(repo: Path) -> None:
    measure(repo, row(42.0))
    md = repo / "BENCHMARKS.md"
    md.write_text(md.read_text().replace("| 42 shots/s |", "| 52 shots/s |"))
    problems = report.check(repo)
    assert any("`x_rate` shots_per_s: the figures" in p and "in no result file" in p for p in problems), problems


def test_a_newer_run_replaces_the_rows_and_a_failed_gate_shows(repo: Path) -> None:
    measure(repo, row(42.0))
    measure(repo, row(3.0))  # a later run of the same script; its gate fails
    rows = table_rows(repo)
    assert len(rows) == 1 and "| 3 shots/s |" in rows[0] and "**FAIL**" in rows[0]
    assert report.check(repo) == []


def test_a_script_without_a_run_says_so(repo: Path) -> None:
    measure(repo, row(42.0))
    (repo / "benchmarks" / "bench_y.py").write_text('"""Y."""\n')
    assert report.main([], root=repo) == 0
    assert any(r.startswith("| `bench_y.py` |") and "not run yet" in r for r in table_rows(repo))


def test_a_clean_result_file_must_carry_its_commits_fingerprint(repo: Path) -> None:
    path = measure(repo, row(42.0))
    lines = [json.loads(t) for t in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**ln, "fingerprint": "0" * 16}) + "\n" for ln in lines))  # injected
    problems = report.check(repo)
    assert any(path.name in p and "expected fingerprint" in p for p in problems), problems


def test_broken_inputs_are_one_line_errors(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = measure(repo, row(42.0))
    path.write_text(path.read_text() + "not json\n")
    (problem,) = report.check(repo)
    assert f"{path.name}:4: expected a JSON object" in problem
    path.unlink()
    (repo / "BENCHMARKS.md").write_text("# Benchmarks\n")
    (problem,) = report.check(repo)
    assert "expected the markers" in problem and "'results'" in problem
    capsys.readouterr()
    assert report.main([], root=repo) == 2
    assert capsys.readouterr().err.startswith("report: error: BENCHMARKS.md: expected the markers")


def test_result_files_hold_what_was_measured(repo: Path) -> None:
    path = measure(repo, row(42.0), row(43.0, metric="other"))
    (info,) = read_all(repo)
    assert info.file == path and path.name == f"{info.run}-{info.commit[:7]}.jsonl"
    assert [r["value"] for r in info.scripts[0].rows] == [42.0, 43.0]
    assert info.summary is not None and info.summary["command"] == "benchmarks/run_all.py"
    assert path.stat().st_size < 4000
