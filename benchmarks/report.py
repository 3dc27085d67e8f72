"""BENCHMARKS.md's tables, regenerated from benchmarks/results/ (``make bench-report``), or checked.

    benchmarks/report.py            # rewrite the generated parts of BENCHMARKS.md
    benchmarks/report.py --check    # exit 1 and say why if they do not describe this tree

BENCHMARKS.md holds written prose and generated parts, each between
``<!-- generated: NAME ... -->`` and ``<!-- end generated: NAME -->``. ``results`` shows the newest
complete run of every ``benchmarks/bench_*.py``; ``soak`` the newest ``benchmarks/soak.py``.
Every row gives the measured value, the same-run baseline and ratio, the gate, ok, and its run;
a row measured on other files than the ones here (its fingerprint differs, see _results.py)
also names its commit and says ``older tree``.

This file is not part of the fingerprint: editing it changes no figure.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from _results import (
    ROOT,
    ResultsError,
    RunInfo,
    ScriptRun,
    commit_fingerprint,
    latest,
    read_all,
    worktree_fingerprint,
)

DOC = "BENCHMARKS.md"
BEGIN = "<!-- generated: {} (benchmarks/report.py from benchmarks/results/; make bench-report rewrites it) -->"
END = "<!-- end generated: {} -->"
OLDER = "older tree"
FIX = ("run `make bench` on this commit (~13 min; a subset: make bench ONLY=...) and commit benchmarks/results/ and "
       f"{DOC}, or `make bench-report` to mark each row with the commit it comes from")
HEADER = ("| bench | metric | measured | same-run baseline | ratio | gate | ok | run |\n"
          "|---|---|---|---|---|---|---|---|")


class ReportError(ValueError):
    """BENCHMARKS.md lacks the markers of a generated part (one line)."""


# --- formatting -----------------------------------------------------------------------------


def fmt(x: Any) -> str:
    """A figure as the tables print it: thousands separated, else 3 significant digits."""
    if x is None:
        return "n/a"
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def run_label(run: str) -> str:
    """``20261207T221503Z`` -> ``2026-12-07 22:15:03``."""
    return f"{run[0:4]}-{run[4:6]}-{run[6:8]} {run[9:11]}:{run[11:13]}:{run[13:15]}"


def provenance_label(sr: ScriptRun | RunInfo, current: str) -> str:
    """Where a figure comes from: the run, plus its commit if its files differ from these."""
    label = run_label(sr.run)
    if sr.fingerprint != current:
        label += f", `{sr.commit[:7]}`{' (dirty)' if sr.dirty else ''}, {OLDER}"
    return label


def figure_cells(row: dict[str, Any]) -> tuple[str, str, str]:
    """(measured, same-run baseline, ratio) of a result row, as the tables print them."""
    measured = f"{fmt(row.get('value'))} {row.get('unit', '')}".strip()
    extra = []
    if isinstance(row.get("runs"), list):
        extra.append("runs " + " / ".join(fmt(v) for v in row["runs"]))
    if row.get("note"):
        extra.append(str(row["note"]))
    if extra:
        measured += f" ({'; '.join(extra)})"
    baseline = "—" if row.get("baseline") is None else f"{row['baseline']}: {fmt(row.get('baseline_value'))}"
    return measured, baseline, fmt(row.get("ratio")) if row.get("ratio") is not None else "—"


def row_line(row: dict[str, Any], where: str) -> str:
    ok = {True: "yes", False: "**FAIL**", None: "—"}[row.get("ok")]
    cells = [f"`{row['bench']}`", str(row["metric"]), *figure_cells(row), row.get("gate") or "report only",
             ok, where]
    return "| " + " | ".join(cell(c) for c in cells) + " |"


# --- the generated parts --------------------------------------------------------------------


def scripts(root: Path) -> dict[str, str]:
    """Every benchmark script (``bench_*.py``) and the first line of its docstring."""
    out = {}
    for path in sorted((root / "benchmarks").glob("bench_*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        out[path.stem] = doc.strip().splitlines()[0] if doc.strip() else ""
    return out


def runs_table(used: list[ScriptRun], infos: list[RunInfo], current: str) -> str:
    lines = ["| run (UTC) | command | commit | measured files | scripts | load average (1 min) |",
             "|---|---|---|---|---|---|"]
    for info in sorted(infos, key=lambda i: i.run, reverse=True):
        mine = [sr for sr in used if sr.file == info.file]
        if not mine:
            continue
        summary = info.summary or {}
        span = run_label(info.run) + (f" – {run_label(summary['ended'])[11:]}" if summary.get("ended") else "")
        command = f"`{summary['command']}`" if summary.get("command") else "interrupted before its end"
        tree = "this tree" if info.fingerprint == current else OLDER
        tree += f", {'dirty' if info.dirty else 'clean'} (`{info.fingerprint}`)"
        loads = [x for sr in mine for x in sr.load if x is not None]
        load = f"{min(loads):.2f}–{max(loads):.2f}" if loads else "n/a"
        cores = summary.get("cores")
        lines.append("| " + " | ".join(cell(c) for c in (
            span, command, f"`{info.commit[:7]}`", tree, ", ".join(sr.script for sr in mine),
            load + (f" on {cores} cores" if cores else ""))) + " |")
    return "\n".join(lines)


def render(names: dict[str, str], infos: list[RunInfo], current: str) -> str:
    """One generated part: the runs it draws on, then one row per result (or per missing script)."""
    newest = latest(infos)
    used = [newest[n] for n in names if n in newest]
    parts = [runs_table(used, infos, current) if used else "No result file yet.", "", HEADER]
    for name in names:
        sr = newest.get(name)
        if sr is None:
            parts.append(f"| `{name}.py` | — | not run yet | — | — | — | — | — |")
            continue
        parts.extend(row_line(row, provenance_label(sr, current)) for row in sr.rows)
    described = [f"- `{n}.py`: {d}" for n, d in names.items() if d]
    if described:
        parts += ["", *described]
    return "\n".join(parts)


def generate(root: Path, infos: list[RunInfo], current: str) -> dict[str, str]:
    """The text of each generated part of BENCHMARKS.md."""
    return {"results": render(scripts(root), infos, current),
            "soak": render({"soak": ""}, infos, current)}


def _span(text: str, name: str) -> tuple[int, int]:
    begin, end = BEGIN.format(name), END.format(name)
    a, b = text.find(begin), text.find(end)
    if a < 0 or b < a:
        raise ReportError(f"{DOC}: expected the markers {begin!r} and {end!r} around the '{name}' table, "
                          "found them missing or out of order")
    return a + len(begin), b


def splice(text: str, parts: dict[str, str]) -> str:
    for name, body in parts.items():
        a, b = _span(text, name)
        text = text[:a] + "\n" + body + "\n" + text[b:]
    return text


def generated(text: str, name: str) -> str:
    a, b = _span(text, name)
    return text[a:b].strip("\n")


# --- the check ------------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def check_figures(part: str, infos: list[RunInfo], current: str) -> list[str]:
    """Every row of a generated table against the result files, without the generator's choices:
    its figures must be those of a result line of the run it names, and a row from files other
    than these must name the commit and say so."""
    problems = []
    for cells in (_cells(ln) for ln in part.splitlines() if ln.startswith("| `")):
        if len(cells) != 8 or cells[2] == "not run yet":
            continue
        bench, metric, where = cells[0].strip("`"), cells[1], cells[7]
        found = [(info, line) for info in infos for sr in info.scripts for line in sr.rows
                 if line["bench"] == bench and str(line["metric"]) == metric and where.startswith(run_label(info.run))
                 and figure_cells(line) == tuple(cells[2:5])]
        if not found:
            problems.append(f"{DOC}: `{bench}` {metric}: the figures {cells[2:5]} (run {where}) are in no result file "
                            "of that run")
            continue
        info = found[0][0]
        if info.fingerprint != current and (OLDER not in where or f"`{info.commit[:7]}`" not in where):
            problems.append(f"{DOC}: `{bench}` {metric}: measured on {info.commit[:7]}{' (dirty)' if info.dirty else ''}, "
                            f"whose src/, benchmarks/ or fixtures/ differ from this tree, but the row does not say "
                            f"'{OLDER}' with that commit")
    return problems


def check_files(root: Path, infos: list[RunInfo]) -> list[str]:
    """A file that says it measured a clean commit must have that commit's fingerprint."""
    problems, seen = [], {}
    for info in infos:
        if info.dirty or info.commit == "unknown":
            continue
        if info.commit not in seen:
            try:
                seen[info.commit] = commit_fingerprint(root, info.commit)
            except (OSError, subprocess.CalledProcessError):  # a commit this clone lacks: nothing to compare
                seen[info.commit] = info.fingerprint
        if seen[info.commit] != info.fingerprint:
            problems.append(f"{info.file.relative_to(root)}: expected fingerprint {seen[info.commit]} of clean "
                            f"commit {info.commit[:7]}, found {info.fingerprint}")
    return problems


def check(root: Path = ROOT) -> list[str]:
    """What is wrong with BENCHMARKS.md's generated parts at ``root`` (nothing: an empty list)."""
    try:
        infos = read_all(root)
        text = (root / DOC).read_text(encoding="utf-8")
        current = worktree_fingerprint(root)
        problems = check_files(root, infos)
        for name, body in generate(root, infos, current).items():
            part = generated(text, name)
            problems += check_figures(part, infos, current)
            if part != body:
                problems.append(f"{DOC}: the generated '{name}' part is not what benchmarks/report.py writes from "
                                "benchmarks/results/ for this tree")
    except (ResultsError, ReportError, OSError) as exc:
        return [str(exc)]
    return problems


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if the tables are stale")
    args = ap.parse_args(argv)
    if args.check:
        problems = check(root)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print(f"to fix: {FIX}", file=sys.stderr)
        return 1 if problems else 0
    try:
        infos = read_all(root)
        path = root / DOC
        path.write_text(splice(path.read_text(encoding="utf-8"), generate(root, infos, worktree_fingerprint(root))),
                        encoding="utf-8")
    except (ResultsError, ReportError, OSError) as exc:
        print(f"report: error: {exc}", file=sys.stderr)
        return 2
    print(f"{DOC}: tables regenerated from {len(infos)} result file(s) in benchmarks/results/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
